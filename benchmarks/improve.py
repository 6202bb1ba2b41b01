"""Benchmark 2 (BENCHMARK.md): does acting on the advantages help? Improvement rounds on Meta-World.

    python -m benchmarks.improve --task drawer-open-v3 --budget small --seed 0 --out results/

1. A weak start: the built-in chunk policy cloned from a small noisy set (the expert with
   noise `--seed-noise`, default 1, a few episodes; about 20% success on drawer-open; pick-place
   needs 0.5, as noise 1 clones a policy that never succeeds).
2. Each round, for each method separately (its own store, which starts from the same seed
   data): roll the method's current policy out N episodes with the expert taking over on
   stall (`run_rollouts`, flagged interventions), fit the critic for the current policy
   (ALOE, policy bootstrap; aloe and filtered only: awr's Monte-Carlo value needs none, and takes
   the critic's reward and gamma), score the store's chunks (`aloe_cli.scoring.score`), and train
   the next policy with `aloe_cli.improve.improve(..., method=...)`, fine-tuning the current
   one; then measure success over the evaluation episodes (no takeover), with a Wilson interval
   at the effective number of episodes: MT1 starts each episode from one of the task's 50 fixed
   configurations, drawn with replacement, so episodes from the same configuration are not
   independent (`clustered_wilson`; `interval_unit` in the JSON, "episode" where the
   configurations are not known). The rounds' rollouts record their robot's seed in the store.
3. Methods compared on the same budget: aloe (advantage weights), awr (Monte-Carlo value),
   filtered (top advantages), bc (all data, DAgger-like). A method that this aloe does not
   offer is reported as skipped.
4. A ceiling for reference: BC from scratch on as many noise-free expert episodes as the weak
   start had noisy ones, measured on the same evaluation episodes (`bc_ceiling`).
5. Every policy is measured twice on the same evaluation episodes: sampling its chunks (as
   deployed by default; `success`) and deterministic, its flow integrated from zero noise
   (`--policy-arg deterministic=true`; `success_deterministic`).
6. `--policy-arg KEY=VALUE` sets how the policy is deployed *within* the rounds, for every
   method: its rollouts and the policy the round critic evaluates (bootstrap and V) get these
   arguments. `--policy-arg deterministic=true` makes the rounds collect data with, and evaluate,
   the deterministic policy. The evaluation still measures both ways.
7. `--method-set KEY=VALUE` sets an option of `aloe improve` (an `aloe_cli.improve.MethodOptions`
   field) for every compared method it applies to: `--method-set beta_scale=0.25` gives aloe and
   awr the temperature 0.25 * std(A), and leaves filtered and bc as they are.

Writes OUT/improve-<task>-<budget>-seed<seed>.json and .png.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aloe_cli.report import wilson_interval as wilson  # success rates: Wilson score intervals

from . import common as B

H = 5
METHODS = ("aloe", "awr", "filtered", "bc")
POLICY_ID = "round"


@dataclass(frozen=True)
class Budget:
    """How much one run does."""

    seed_episodes: int  # noisy-expert episodes the weak start is cloned from
    rounds: int  # improvement rounds
    episodes_per_round: int  # rollouts (with takeover on stall) added to each method's store per round
    eval_episodes: int  # evaluation episodes per policy (no takeover)
    critic_steps: int  # steps of the round's critic
    policy_steps: int  # behaviour-cloning steps of the weak start and of each improvement
    max_steps: int = 150


BUDGETS = {
    "smoke": Budget(seed_episodes=3, rounds=1, episodes_per_round=2, eval_episodes=3, critic_steps=20,
                    policy_steps=20, max_steps=60),
    "small": Budget(seed_episodes=20, rounds=4, episodes_per_round=20, eval_episodes=50, critic_steps=3000,
                    policy_steps=1500),
    "full": Budget(seed_episodes=30, rounds=5, episodes_per_round=40, eval_episodes=100, critic_steps=4000,
                   policy_steps=3000),
}


def clustered_wilson(successes, clusters=None) -> tuple[float, float, float]:
    """Wilson interval of a success rate whose episodes share start configurations (`clusters`, one
    id per episode; None: all independent): the Wilson interval at the effective number of episodes
    n_eff (`common.effective_sample_size`) with the same rate. Returns (low, high, n_eff). E.g.
    successes (1, 1, 0, 0) from configurations (a, a, b, b): n_eff 2, the interval of 1 in 2."""
    y = np.asarray(successes, dtype=np.float64)
    if y.size == 0:
        return float("nan"), float("nan"), 0.0
    n_eff = B.effective_sample_size(y, clusters)
    p = float(y.mean())
    lo, hi = wilson(p * n_eff, n_eff)
    return min(lo, p), max(hi, p), n_eff  # (p * n_eff) / n_eff may round off p by an ulp


def evaluate(task: str, policy_dir: Path, episodes: int, max_steps: int, seed: int,
             deterministic: bool = False) -> dict:
    """Success over `episodes` evaluation episodes (no takeover) with a Wilson interval clustered by
    start configuration (`clustered_wilson`); the policy samples its chunks, or with
    `deterministic` integrates its flow from zero noise."""
    from aloe_cli.policy import load_policy
    from aloe_cli.rollout import RolloutConfig, run_rollouts

    from .starts import StartRecordingSimRobot, known

    policy = load_policy(str(policy_dir), {"seed": seed, "deterministic": deterministic})
    robot = StartRecordingSimRobot(task, seed=seed, max_steps=max_steps)
    s = run_rollouts(robot, policy, None, RolloutConfig(episodes=episodes, max_steps=max_steps, seed=seed))
    if s.get("interrupted"):
        raise SystemExit(f"interrupted ({s.get('signal')})")
    k = int(s["successes"])
    outcomes = [bool(r["success"]) for r in s["per_episode"]]
    clusters = known(robot.starts) if len(robot.starts) == len(outcomes) == episodes else None
    lo, hi, n_eff = clustered_wilson(outcomes, clusters) if clusters else (*wilson(k, episodes), float(episodes))
    return {"success_rate": k / episodes, "ci_low": lo, "ci_high": hi, "episodes": episodes,
            "interval_unit": "start configuration" if clusters else "episode",
            "distinct_starts": len(set(clusters)) if clusters else None, "effective_episodes": n_eff}


def evaluate_both(task: str, policy_dir: Path, budget: Budget, seed: int) -> tuple[dict, dict]:
    """`evaluate` on `budget.eval_episodes` episodes twice: chunks sampled (as deployed), then deterministic."""
    return tuple(evaluate(task, policy_dir, budget.eval_episodes, budget.max_steps, seed, d) for d in (False, True))


def _improve(store: Path, out: Path, method: str, steps: int, seed: int, device: str, base: Path | None,
             scores: Path | None, options: dict | None = None) -> dict:
    """Call aloe_cli.improve.improve with the arguments this version of it takes."""
    from aloe_cli.improve import improve

    params = inspect.signature(improve).parameters
    kw = {"method": method, "settings": {"chunk_size": H, "steps": steps, "seed": seed, "device": device},
          "force": True, "options": options}
    if base is not None:
        kw["base" if "base" in params else "init"] = str(base)
        kw["settings"].pop("chunk_size")
    if scores is not None and "scores" in params:
        kw["scores"] = str(scores)
    return improve(str(store), str(out), **kw)


def available_methods() -> list[str]:
    from aloe_cli import improve

    return [m for m in METHODS if m in improve.METHODS]


def run(task: str, budget_name: str, seed: int, out: Path, device: str = "cpu", progress=print,
        seed_noise: float = 1.0, methods: list[str] | None = None, critic_obs: str = "state",
        critic_overrides: dict | None = None, policy_args: dict | None = None,
        method_set: dict | None = None, with_ceiling: bool = True) -> dict:
    from aloe_cli.critic import CriticConfig, fit_critic
    from aloe_cli.robot.experts import metaworld_expert
    from aloe_cli.robot.sim import SimRobot
    from aloe_cli.rollout import RolloutConfig, run_rollouts
    from aloe_cli.scoring import score

    budget = BUDGETS[budget_name]
    device = B.resolve_device(device)
    machine = B.machine_info(device)
    t0 = time.perf_counter()
    overrides = dict(critic_overrides or {})
    policy_args = dict(policy_args or {})
    method_set = dict(method_set or {})
    critic_settings = {"steps": budget.critic_steps, "chunk_size": H, "seed": seed, "device": device,
                       "obs": critic_obs, **overrides}
    work = Path(out) / stem_of(task, budget_name, seed, methods, critic_obs, overrides, policy_args, method_set)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)

    progress(f"[improve] {task}: seed data and the weak start")
    seed_store = work / "seed-store"
    expert = metaworld_expert(task, noise=seed_noise, chunk_size=H, seed=seed)
    run_rollouts(SimRobot(task, seed=seed, max_steps=budget.max_steps), expert,
                 seed_store, RolloutConfig(episodes=budget.seed_episodes, max_steps=budget.max_steps,
                                           policy_id=f"noisy-{seed_noise:g}", seed=seed,
                                           commit_every=budget.seed_episodes))
    start = work / "round0"
    _improve(seed_store, start, "bc", budget.policy_steps, seed, device, None, None)
    eval_seed = seed + 20_000
    start_eval, start_det = evaluate_both(task, start, budget, eval_seed)
    ceiling = None
    if with_ceiling:
        progress(f"[improve] {task}: the ceiling (BC on noise-free expert episodes)")
        ceiling = bc_ceiling(task, work / "ceiling", budget, seed, device, eval_seed)
    offered = available_methods()
    wanted = list(methods or METHODS)
    methods = [m for m in wanted if m in offered]
    curves = {m: [start_eval] for m in methods}
    curves_det = {m: [start_det] for m in methods}
    skipped = [m for m in wanted if m not in offered]
    round_seeds = {}  # the seed of the robot each method's round rollouts ran on
    for m in methods:
        store = work / m / "store"
        shutil.copytree(seed_store, store)
        current = start
        robot_seed = round_seeds[m] = round_robot_seed(seed, m)
        robot = SimRobot(task, seed=robot_seed, max_steps=budget.max_steps)
        robot.connect()
        try:
            for r in range(1, budget.rounds + 1):
                progress(f"[improve] {m} round {r}/{budget.rounds}")
                from aloe_cli.policy import load_policy

                run_rollouts(robot, load_policy(str(current), {**policy_args, "seed": seed + r}), store,
                             RolloutConfig(episodes=budget.episodes_per_round, max_steps=budget.max_steps,
                                           policy_id=f"{POLICY_ID}{r - 1}", intervene="expert-on-stall",
                                           seed=robot_seed, commit_every=budget.episodes_per_round))
                scores, options = None, method_options_for(m, method_set)
                if m == "awr":  # no critic: the Monte-Carlo returns under the round critics' reward and gamma
                    options.update(reward=critic_settings.get("reward"), gamma=critic_settings.get("gamma"))
                elif m != "bc":
                    critic = work / m / f"critic{r}"
                    fit_critic(store, critic, CriticConfig(**critic_settings), policy_spec=str(current),
                               policy_args=policy_args)
                    scores = work / m / f"scores{r}"
                    score(store, critic, scores, device=device)
                nxt = work / m / f"round{r}"
                _improve(store, nxt, m, budget.policy_steps, seed + r, device, current, scores, options)
                sampled, det = evaluate_both(task, nxt, budget, eval_seed)
                curves[m].append(sampled)
                curves_det[m].append(det)
                current = nxt
        finally:
            robot.disconnect()
    return {"benchmark": "improve", "task": task, "budget": budget_name, "budget_settings": dataclasses.asdict(budget),
            "seed": seed, "seed_noise": seed_noise, "machine": machine, "chunk_size": H, "critic_obs": critic_obs,
            "critic_overrides": overrides, "policy_args": policy_args, "method_set": method_set,
            "methods": methods, "skipped_methods": skipped, "success": curves,
            "success_deterministic": curves_det, "ceiling": ceiling, "round_robot_seeds": round_seeds,
            "eval_seed": eval_seed, "wall_seconds": time.perf_counter() - t0}


def round_robot_seed(seed: int, method: str) -> int:
    """The seed of the robot a method's round rollouts run on (each method its own sequence of
    initial states), recorded with the rollouts: (0, "aloe") -> 1, (0, "bc") -> 4."""
    return seed + 1 + METHODS.index(method)


def method_options_for(method: str, method_set: dict) -> dict:
    """The `--method-set` options that apply to `method` (`aloe_cli.improve.APPLIES_TO`; an option
    that names no methods applies to all): {"beta_scale": 0.25} -> the same for aloe, {} for bc."""
    from aloe_cli.improve import APPLIES_TO

    return {k: v for k, v in method_set.items() if method in APPLIES_TO.get(k, (method,))}


def parse_method_set(pairs: list[str] | None, methods: list[str]) -> dict:
    """`--method-set KEY=VALUE` pairs -> {MethodOptions field: value}, each checked by
    `aloe_cli.improve.method_options` for every method of `methods` it applies to; bad input exits
    with one line naming --method-set. An option that applies to none of `methods` is an error."""
    from aloe_cli.errors import BadInput
    from aloe_cli.improve import method_options
    from aloe_cli.policy import parse_kv

    try:
        given = {k.replace("-", "_"): v for k, v in parse_kv(pairs, "--method-set").items()}
    except BadInput as e:
        raise SystemExit(str(e)) from None
    for key in given:  # an unknown key applies to every method, so method_options below refuses it
        if not any(key in method_options_for(m, given) for m in methods):
            raise SystemExit(f"--method-set: {key} applies to none of --methods {','.join(methods)}")
    for m in methods:
        try:
            method_options(m, method_options_for(m, given))
        except BadInput as e:
            raise SystemExit(f"--method-set: {e}") from None
    return given


def bc_ceiling(task: str, work: Path, budget: Budget, seed: int, device: str, eval_seed: int) -> dict:
    """What the policy class reaches on clean data: BC (from scratch, `policy_steps`) on `seed_episodes`
    episodes of the noise-free expert, measured on the same evaluation episodes as the rounds. A
    plateau well below it comes from the data and its weighting, not from the policy's capacity."""
    from aloe_cli.robot.experts import metaworld_expert
    from aloe_cli.robot.sim import SimRobot
    from aloe_cli.rollout import RolloutConfig, run_rollouts

    store = work / "store"
    s = run_rollouts(SimRobot(task, seed=seed + 10_000, max_steps=budget.max_steps),
                     metaworld_expert(task, noise=0.0, chunk_size=H, seed=seed), store,
                     RolloutConfig(episodes=budget.seed_episodes, max_steps=budget.max_steps, policy_id="expert",
                                   seed=seed + 10_000, commit_every=budget.seed_episodes))
    _improve(store, work / "bc", "bc", budget.policy_steps, seed, device, None, None)
    sampled, det = evaluate_both(task, work / "bc", budget, eval_seed)
    return {"expert_episodes": budget.seed_episodes, "expert_success_rate": s["successes"] / budget.seed_episodes,
            "bc": sampled, "bc_deterministic": det}


def merge(results: list[dict]) -> dict:
    """One result from runs of disjoint method subsets with the same settings (e.g. two processes
    run with `--methods aloe,bc` and `--methods awr,filtered`). Their round 0 is the same weak
    start, so it must agree; wall time is the longest run's (they ran side by side). The ceiling is
    the first one measured (the others ran with `--no-ceiling`, or measured the same)."""
    same = ("task", "budget", "seed", "seed_noise", "critic_obs", "critic_overrides", "policy_args", "method_set",
            "chunk_size", "budget_settings")
    results = [{"critic_overrides": {}, "policy_args": {}, "method_set": {}, **r}
               for r in results]  # runs from before the options
    first = results[0]
    for r in results[1:]:
        for k in same:
            if r.get(k) != first.get(k):
                raise SystemExit(f"--merge: the runs differ in {k}: {first.get(k)!r} vs {r.get(k)!r}")
    starts = {json.dumps(next(iter(r["success"].values()))[0], sort_keys=True) for r in results}
    if len(starts) != 1:
        raise SystemExit("--merge: the runs' round 0 (the weak start) differ")
    methods = [m for r in results for m in r["methods"]]
    if len(set(methods)) != len(methods):
        raise SystemExit(f"--merge: a method appears in more than one run ({', '.join(methods)})")
    order = sorted(methods, key=lambda m: METHODS.index(m) if m in METHODS else len(METHODS))
    success = {m: r["success"][m] for r in results for m in r["methods"]}
    det = ({m: r["success_deterministic"][m] for r in results for m in r["methods"]}
           if all("success_deterministic" in r for r in results) else None)
    base = {k: v for k, v in first.items() if k not in ("success_deterministic", "round_robot_seeds")}
    seeds = {m: r["round_robot_seeds"][m] for r in results for m in r["methods"] if m in r.get("round_robot_seeds", {})}
    return {**base, "methods": order, "skipped_methods": sorted({m for r in results for m in r["skipped_methods"]}),
            "success": {m: success[m] for m in order},
            **({"success_deterministic": {m: det[m] for m in order}} if det is not None else {}),
            **({"round_robot_seeds": {m: seeds[m] for m in order if m in seeds}} if seeds else {}),
            "ceiling": next((r["ceiling"] for r in results if r.get("ceiling")), None),
            "wall_seconds": max(r["wall_seconds"] for r in results),
            "merged_from": [{"methods": r["methods"], "date": r["machine"]["date"], "wall_seconds": r["wall_seconds"]}
                            for r in results]}


def stem_of(task: str, budget: str, seed: int, methods: list[str] | None = None, critic_obs: str = "state",
            critic_overrides: dict | None = None, policy_args: dict | None = None,
            method_set: dict | None = None) -> str:
    """The run's file stem; a subset of the methods, another critic input, critic overrides
    (`--critic-set`), the rounds' policy arguments (`--policy-arg`, as "-policy-KEY=VALUE") or
    improvement options (`--method-set`, as "-method-KEY=VALUE") are named in it."""
    stem = f"improve-{task}-{budget}-seed{seed}"
    if methods and list(methods) != list(METHODS):
        stem += "-" + "+".join(methods)
    if critic_obs != "state":
        stem += "-obs-" + critic_obs.replace(",", "+")
    stem += B.overrides_suffix(critic_overrides)
    stem += B.overrides_suffix({f"policy_{k}": v for k, v in (policy_args or {}).items()})
    stem += B.overrides_suffix({f"method_{k}": v for k, v in (method_set or {}).items()})
    return stem


def mean_after_start(curve: list[dict]) -> float:
    """Mean success over the rounds after the weak start (round 0 left out): how high the method
    kept the policy across the rounds, not just at the last one. NaN with no round after the start."""
    rates = [e["success_rate"] for e in curve[1:]]
    return sum(rates) / len(rates) if rates else math.nan


def print_report(r: dict) -> None:
    print(f"improvement rounds: {r['task']}, budget {r['budget']}, seed {r['seed']}; {B.machine_line(r['machine'])}")
    n = max((len(v) for v in r["success"].values()), default=0)
    pargs = B.cli_pairs(r.get("policy_args"))
    if pargs:
        print("the rounds roll out, and their critics evaluate, the policy with "
              + " ".join(f"--policy-arg {p}" for p in pargs))
    ms = r.get("method_set") or {}
    for pair, key in zip(B.cli_pairs(ms), ms):
        applies = [m for m in r["methods"] if key in method_options_for(m, ms)]
        print(f"the rounds improve with --method-set {pair} (applies to {', '.join(applies) or 'none of the methods'})")
    for key, title in (("success", "chunks sampled" + ("" if pargs else " (as deployed)")),
                       ("success_deterministic", "deterministic (--policy-arg deterministic=true)")):
        if key not in r:
            continue
        print(title)
        rows = [[m] + [f"{e['success_rate']:.2f} [{e['ci_low']:.2f}, {e['ci_high']:.2f}]" for e in r[key][m]]
                + [f"{mean_after_start(r[key][m]):.3f}"] for m in r["methods"]]
        print(B.format_table(["method"] + [f"round {i}" for i in range(n)] + [f"mean 1-{n - 1}"], rows))
    print(intervals_line(r))
    c = r.get("ceiling")
    if c:
        b = c["bc"]
        d = c.get("bc_deterministic")
        print(f"ceiling: BC on {c['expert_episodes']} noise-free expert episodes ({c['expert_success_rate']:.0%} "
              f"successful): {b['success_rate']:.2f} [{b['ci_low']:.2f}, {b['ci_high']:.2f}] sampled"
              + (f", {d['success_rate']:.2f} deterministic" if d else ""))
    if r["skipped_methods"]:
        print(f"skipped (not offered by this aloe_cli.improve): {', '.join(r['skipped_methods'])}")


def intervals_line(r: dict) -> str:
    """How the Wilson intervals count the evaluation episodes; older JSON (no `interval_unit`) by episode."""
    e = next((c[0] for c in r["success"].values() if c), {})
    if e.get("interval_unit") != "start configuration":
        return "[lo, hi]: Wilson 95% intervals over episodes (repeated start configurations counted as independent)"
    return (f"[lo, hi]: Wilson 95% intervals at the effective number of episodes, clustered by start configuration "
            f"({e['distinct_starts']} distinct in {e['episodes']} evaluation episodes)")


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for m in r["methods"]:
        e = r["success"][m]
        x = np.arange(len(e))
        y = np.array([v["success_rate"] for v in e])
        line, = ax.plot(x, y, marker="o", label=m)
        ax.fill_between(x, [v["ci_low"] for v in e], [v["ci_high"] for v in e], alpha=0.15)
        if "success_deterministic" in r:
            ax.plot(x, [v["success_rate"] for v in r["success_deterministic"][m]], ls=":", marker=".",
                    color=line.get_color(), label=f"{m}, deterministic")
    if r.get("ceiling"):
        ax.axhline(r["ceiling"]["bc"]["success_rate"], color="grey", ls="--", lw=1, label="BC on the clean expert")
    ax.set_xlabel("round")
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1.03)  # room for the ceiling's line at 1.0
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    pargs, msets = B.cli_pairs(r.get("policy_args")), B.cli_pairs(r.get("method_set"))
    notes = ([f"rounds with {' '.join(pargs)}"] if pargs else []) + (
        [f"improve with {' '.join(msets)}"] if msets else [])
    notes = ",\n" + "; ".join(notes) if notes else ""
    ax.set_title(f"improvement rounds on {r['task']} ({r['budget']}{notes}, {r['machine']['date'][:10]})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.improve", description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="drawer-open-v3")
    ap.add_argument("--budget", choices=list(BUDGETS), default="small")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed-noise", type=float, default=1.0,
                    help="noise of the expert whose episodes the weak start is cloned from (pick it so round 0 "
                         "lands at 20-40%% success: 1.0 on drawer-open, 0.5 on pick-place)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated subset of {', '.join(METHODS)} (default: all)")
    ap.add_argument("--critic-obs", default="state",
                    help="the round critic's --obs (aloe and filtered), e.g. state,time")
    ap.add_argument("--critic-set", action="append", metavar="KEY=VALUE",
                    help="override a field of the round critic's CriticConfig, e.g. --critic-set ensemble=5")
    ap.add_argument("--policy-arg", action="append", metavar="KEY=VALUE",
                    help="how the policy is deployed within the rounds, for every method: its rollouts and the "
                         "policy the round critic evaluates, e.g. --policy-arg deterministic=true")
    ap.add_argument("--method-set", action="append", metavar="KEY=VALUE",
                    help="an option of aloe improve for every method it applies to, e.g. --method-set "
                         "beta_scale=0.25 (aloe and awr)")
    ap.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                    help="skip the ceiling (BC on the clean expert): for all but one process of a split run, "
                         "as --merge takes the ceiling of the run that measured it")
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                    help="instead of running: join the JSON of runs of disjoint --methods subsets into one "
                         "table, JSON and plot")
    args = ap.parse_args(argv)
    if args.merge:
        result = merge([json.loads(p.read_text()) for p in args.merge])
        return _write(result, args.out, stem_of(result["task"], result["budget"], result["seed"], result["methods"],
                                                result.get("critic_obs", "state"), result.get("critic_overrides"),
                                                result.get("policy_args"), result.get("method_set")))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise SystemExit(f"--methods: {unknown[0] if unknown else 'none given'!r} is not one of {', '.join(METHODS)}")
    overrides = B.parse_critic_overrides(args.critic_set)
    from aloe_cli.errors import BadInput
    from aloe_cli.policy import parse_kv

    try:
        policy_args = parse_kv(args.policy_arg, "--policy-arg")
    except BadInput as e:
        raise SystemExit(str(e)) from None
    method_set = parse_method_set(args.method_set, methods)
    from aloe_cli.robot.sim import metaworld_tasks

    if args.task not in metaworld_tasks():
        raise SystemExit(f"--task: unknown Meta-World task {args.task!r} (e.g. drawer-open-v3)")
    result = run(args.task, args.budget, args.seed, args.out, args.device,
                 progress=lambda m: print(m, file=sys.stderr, flush=True), seed_noise=args.seed_noise,
                 methods=methods, critic_obs=args.critic_obs, critic_overrides=overrides, policy_args=policy_args,
                 method_set=method_set, with_ceiling=args.ceiling)
    return _write(result, args.out, stem_of(args.task, args.budget, args.seed, methods, args.critic_obs, overrides,
                                            policy_args, method_set))


def _write(result: dict, out: Path, stem: str) -> dict:
    B.write_json(out / f"{stem}.json", result)
    plot(result, out / f"{stem}.png")
    print_report(result)
    print(f"wrote {out / (stem + '.json')} and .png")
    return result


if __name__ == "__main__":
    main()
