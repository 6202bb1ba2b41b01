"""`aloe demo`: the whole loop on the simulated default robot, into one folder.

1. collect: noisy scripted experts of graded quality roll out on Meta-World (`sim:<task>`);
2. a weak chunk policy v0 is trained by behaviour cloning on them, and rolls out with the
   scripted expert taking over on stalls (recorded as interventions);
3. the ALOE critic is fitted for v0 (chunked TD, bootstrapping with v0's own chunks);
4. the store is scored: V(v0) is estimated from the logs and compared with v0's value measured
   by running it in the simulator (same reward spec and discount);
5. one improvement round (advantage-weighted, from v0) gives v1;
6. v1 is measured in the simulator: success before and after; the report is written.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import schema as S
from .errors import BadInput, check_seed
from .outdirs import check_output

SUMMARY_FILE = "demo.json"  # OUT/demo.json, written last: the summary `aloe demo --json` prints
OUTPUTS = frozenset({"store", "policies", "critic", "scores", SUMMARY_FILE})  # what OUT holds


@dataclass(frozen=True)
class DemoConfig:
    """Budgets of `aloe demo` (the defaults take a few minutes on 2 CPU cores)."""

    task: str = "drawer-open-v3"  # Meta-World v3 task
    out: str = "aloe-demo"  # folder for everything the demo writes
    seed: int = 0  # seeds the simulator, the policies and the critic
    chunk_size: int = 5  # H for the policies and the critic
    max_steps: int = 150  # episode cap in the simulator
    behaviour_noise: tuple[float, ...] = (0.5, 1.0, 2.0)  # Gaussian noise of the logged scripted experts
    episodes_per_behaviour: int = 12  # logged episodes of each noisy expert
    weak_episodes: int = 15  # logged episodes of v0 with expert takeover on stalls
    bc_steps: int = 1500  # behaviour-cloning steps for v0
    critic_steps: int = 3000  # critic gradient steps
    improve_steps: int = 1000  # fine-tuning steps for v1
    improve_method: str = "aloe"  # aloe | awr | filtered | conditioned | bc
    eval_episodes: int = 30  # simulator episodes to measure v0 and v1
    score_samples: int = 8  # K policy samples per state when scoring

    def check(self) -> None:
        """Raise BadInput naming the option of the first invalid value, before anything runs."""
        from .improve import check_method
        from .robot.sim import metaworld_tasks

        check_method(self.improve_method)
        check_seed(self.seed)
        try:
            tasks = metaworld_tasks()
        except ImportError:  # the simulator names what is missing when it starts
            tasks = None
        if tasks is not None and self.task not in tasks:
            raise BadInput(f"unknown Meta-World task {self.task!r} (e.g. drawer-open-v3; {len(tasks)} tasks)",
                           field="--task")

    @classmethod
    def quick(cls, **overrides) -> "DemoConfig":
        """A small budget (CI): every stage runs, numbers are noisy."""
        base = cls(episodes_per_behaviour=3, weak_episodes=3, bc_steps=150, critic_steps=200,
                   improve_steps=100, eval_episodes=3, score_samples=4)
        return replace(base, **overrides)


def measured_value(per_episode: list[dict], reward: dict, gamma: float, task: str) -> dict:
    """Discounted return of simulator episodes under the critic's reward spec (mean, standard error)."""
    from .chunks import discounted_return_to_go
    from .rewards import frame_rewards

    eps = pd.DataFrame({S.LENGTH: [r["length"] for r in per_episode],
                        S.SUCCESS: pd.array([r["success"] for r in per_episode], dtype="boolean"),
                        S.TASK: [task] * len(per_episode)})
    lengths = eps[S.LENGTH].to_numpy(dtype=np.int64)
    rtg = discounted_return_to_go(frame_rewards(reward, eps), lengths, gamma)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    g = rtg[starts]
    return {"mean": float(g.mean()), "stderr": float(g.std(ddof=1) / np.sqrt(len(g))) if len(g) > 1 else None,
            "episodes": int(len(g))}


def run_demo(config: DemoConfig = DemoConfig(), log: Callable[[str], None] = lambda s: None,
             force: bool = False) -> dict:
    """Run the whole loop; returns a summary (also written to OUT/demo.json). `force` replaces an
    earlier demo's OUT (and nothing else)."""
    import json

    import torch

    from .critic import CriticConfig, fit_critic
    from .improve import improve
    from .policy import load_policy
    from .report import write_report
    from .robot import load_robot
    from .robot.experts import metaworld_expert
    from .rollout import RolloutConfig, run_rollouts
    from .scoring import score

    config.check()
    out = Path(config.out)
    check_output(out, "demo", "--out", replace=force, own_entries=OUTPUTS)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.manual_seed(config.seed)
    store, v0_dir, v1_dir = out / "store", out / "policies" / "v0", out / "policies" / "v1"
    critic_dir, scores_dir = out / "critic", out / "scores"
    H, t0 = config.chunk_size, time.monotonic()
    timings: dict[str, float] = {}

    def stage(name: str, start: float) -> None:
        timings[name] = round(time.monotonic() - start, 1)

    robot = load_robot(f"sim:{config.task}", seed=config.seed, max_steps=config.max_steps)
    robot.connect()
    try:
        # 1. Logged behaviour: noisy experts of graded quality.
        t = time.monotonic()
        for i, noise in enumerate(config.behaviour_noise):
            log(f"collect: scripted expert with noise {noise} ({config.episodes_per_behaviour} episodes)")
            expert = metaworld_expert(config.task, noise=noise, chunk_size=H, seed=config.seed + i)
            run_rollouts(robot, expert, store, RolloutConfig(
                episodes=config.episodes_per_behaviour, max_steps=config.max_steps,
                policy_id=f"expert-noise{noise:g}", seed=config.seed, commit_every=config.episodes_per_behaviour))
        stage("collect_experts", t)

        # 2. A weak policy v0 by behaviour cloning, rolled out with expert takeover on stalls.
        t = time.monotonic()
        log(f"train v0: behaviour cloning, {config.bc_steps} steps")
        improve(store, v0_dir, method="bc",
                settings={"chunk_size": H, "steps": config.bc_steps, "seed": config.seed, "device": "cpu"})
        stage("train_v0", t)
        t = time.monotonic()
        v0 = load_policy(str(v0_dir))
        log(f"collect: v0 with the expert taking over on stalls ({config.weak_episodes} episodes)")
        run_rollouts(robot, v0, store, RolloutConfig(
            episodes=config.weak_episodes, max_steps=config.max_steps, policy_id="v0",
            intervene="expert-on-stall", seed=config.seed, commit_every=config.weak_episodes),
            policy_name=str(v0_dir))  # recorded with its path and weights: `aloe rounds` credits these to v0
        stage("collect_v0", t)

        # 3. The critic for v0, and 4. scores.
        t = time.monotonic()
        log(f"fit-critic: ALOE, policy bootstrap with v0, H={H}, {config.critic_steps} steps")
        fit_critic(store, critic_dir, CriticConfig(chunk_size=H, steps=config.critic_steps, seed=config.seed,
                                                   device="cpu"), policy_spec=str(v0_dir))
        stage("fit_critic", t)
        t = time.monotonic()
        log("score: values and advantages of every chunk, report")
        summary = score(store, critic_dir, scores_dir, samples=config.score_samples, device="cpu")
        write_report(scores_dir)
        stage("score", t)
        critic_cfg = json.loads((critic_dir / "critic.json").read_text())
        reward, gamma = critic_cfg["reward"], critic_cfg["config"]["gamma"]

        # The truth for v0: run it in the simulator, no takeover.
        t = time.monotonic()
        log(f"measure v0 in the simulator ({config.eval_episodes} episodes)")
        eval_cfg = RolloutConfig(episodes=config.eval_episodes, max_steps=config.max_steps, seed=config.seed)
        before = run_rollouts(robot, v0, None, replace(eval_cfg, policy_id="v0"))
        stage("measure_v0", t)

        # 5. One improvement round, 6. measured again.
        t = time.monotonic()
        log(f"improve: {config.improve_method} weights from the advantages, fine-tuning v0 ({config.improve_steps} steps)")
        improved = improve(store, v1_dir, method=config.improve_method, base=v0_dir, scores=scores_dir,
                           settings={"steps": config.improve_steps, "seed": config.seed, "device": "cpu"},
                           round_name="demo")
        stage("improve", t)
        t = time.monotonic()
        log(f"measure v1 in the simulator ({config.eval_episodes} episodes)")
        after = run_rollouts(robot, load_policy(str(v1_dir)), None, replace(eval_cfg, policy_id="v1"))
        stage("measure_v1", t)
    finally:
        robot.disconnect()

    result = {
        "out": str(out),
        "task": config.task,
        "store": str(store),
        "critic": str(critic_dir),
        "scores": str(scores_dir),
        "report": str(scores_dir / S.REPORT_FILE),
        "policies": {"v0": str(v0_dir), "v1": str(v1_dir)},
        "episodes_logged": int(summary["episodes"]),
        "policy_value_v0": {"estimated": summary["policy_value"],
                            "measured": measured_value(before["per_episode"], reward, gamma, config.task)},
        "success_v0": before["success_rate"],
        "success_v1": after["success_rate"],
        "eval_episodes": config.eval_episodes,
        "improve": {k: improved.get(k) for k in ("method", "weights") if k in improved},
        "seconds": round(time.monotonic() - t0, 1),
        "stage_seconds": timings,
        "config": asdict(config),
    }
    (out / SUMMARY_FILE).write_text(json.dumps(result, indent=2, default=str))
    return result
