"""Critic convergence on a Meta-World task: the policy-value estimate against the truth, vs steps.

    PYTHONPATH=.:benchmarks python benchmarks/critic_convergence.py data  OUT --episodes 15 --sigmas 0,0.5,1,2
    PYTHONPATH=.:benchmarks python benchmarks/critic_convergence.py truth OUT --candidates 0,0.5,1,2
    PYTHONPATH=.:benchmarks python benchmarks/critic_convergence.py fit   OUT --name base --candidates 0,1 \
        --set tau=0.02 --set steps=6000

- data: logged episodes of the scripted expert with Gaussian action noise (closed loop, one
  noise level per batch of episodes), capped at --cap frames; success ends an episode, the cap
  is a failure. The initial configuration of every episode is saved.
- truth: each candidate (the noisy-expert chunk policy of `mw_chunk_policy.py`, chunks executed
  open loop) rolled out --rollouts times from every logged initial configuration; its value is
  the mean discounted return under the store's step-penalty reward (T_norm from the store).
- fit: one critic per candidate with the given CriticConfig overrides; writes the estimate of
  V^pi at the logged first frames every --val-every steps, and prints the final table:
  estimate vs truth, normalised absolute error, Spearman rank correlation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def make_env(env_name: str, seed: int, cap: int):
    import gymnasium as gym
    import metaworld  # noqa: F401  (registers the environments)

    return gym.make("Meta-World/MT1", env_name=env_name, seed=seed, max_episode_steps=cap + 10)


def cmd_data(a) -> None:
    from metaworld.policies import ENV_POLICY_MAP

    from aloe_cli.episode import Episode
    from aloe_cli.store import Store

    out = Path(a.out)
    env = make_env(a.env, a.seed, a.cap)
    u = env.unwrapped
    expert = ENV_POLICY_MAP[a.env]()
    rng = np.random.default_rng(a.seed)
    store = Store.open(out / "store", create=True)
    starts = {}
    t0 = time.time()
    with store.writer(f"metaworld:{a.env}", "benchmark") as w:
        for sigma in [float(s) for s in a.sigmas.split(",")]:
            for i in range(a.episodes):
                obs, _ = env.reset()
                vec = np.array(u._last_rand_vec, dtype=np.float64).tolist()
                states, actions, success = [], [], False
                for _ in range(a.cap):
                    act = np.clip(expert.get_action(obs) + rng.normal(0, sigma, 4), -1, 1)
                    states.append(obs)
                    actions.append(act)
                    obs, _, _, _, info = env.step(act)
                    if info["success"] > 0.5:
                        success = True
                        break
                ep = Episode(state=np.array(states, np.float32), action=np.array(actions, np.float32),
                             source_key=f"sigma{sigma}-{i}", success=success, task=a.env,
                             policy_id=f"noisy-expert-{sigma}")
                eid = w.add(ep, fps=80.0)
                if eid:
                    starts[eid] = vec
        w.commit()
    (out / "starts.json").write_text(json.dumps(starts))
    eps = Store.open(out / "store").episodes
    print(f"{len(eps)} episodes, {eps['length'].sum()} frames in {time.time() - t0:.0f} s; success by policy_id:")
    print(eps.groupby("policy_id")["success"].mean().to_string())


def reward_params(store_path: Path) -> dict:
    from aloe_cli.rewards import RewardSpec, resolve_rewards
    from aloe_cli.store import Store

    eps = Store.open(store_path).episodes
    r = resolve_rewards(RewardSpec("step-penalty"), eps)
    return {"t_norm": r["t_norm_default"], "c_fail": r["t_norm_default"]}


def rollout(env, policy, vec, cap: int, gamma: float, t_norm: float, c_fail: float, task: str):
    u = env.unwrapped
    u._last_rand_vec = np.array(vec)
    u._freeze_rand_vec = True
    obs, _ = env.reset()
    G, t = 0.0, 0
    while t < cap:
        chunk = policy.sample({"observation.state": obs[None].astype(np.float32), "task": [task]}, 1)[0, 0]
        for act in chunk:
            obs, _, _, _, info = env.step(act)
            G += gamma ** t * (-1.0 / t_norm)
            t += 1
            if info["success"] > 0.5:
                return G, True, t
            if t >= cap:
                break
    return G + gamma ** (t - 1) * (-c_fail / t_norm), False, t


def cmd_truth(a) -> None:
    import mw_chunk_policy

    out = Path(a.out)
    starts = json.loads((out / "starts.json").read_text())
    rp = reward_params(out / "store")
    env = make_env(a.env, a.seed, a.cap)
    truth = json.loads((out / "truth.json").read_text()) if (out / "truth.json").exists() else {}
    for sigma in a.candidates.split(","):
        t0 = time.time()
        pol = mw_chunk_policy.make(a.env, float(sigma), a.chunk, seed=1234)
        per_start, succ = {}, []
        for eid, vec in starts.items():
            rs = [rollout(env, pol, vec, a.cap, a.gamma, rp["t_norm"], rp["c_fail"], a.env) for _ in range(a.rollouts)]
            per_start[eid] = float(np.mean([r[0] for r in rs]))
            succ += [r[1] for r in rs]
        vals = np.array(list(per_start.values()))
        truth[sigma] = {"value": float(vals.mean()), "se": float(vals.std(ddof=1) / np.sqrt(len(vals))),
                        "success": float(np.mean(succ)), "per_start": per_start, "rollouts": a.rollouts,
                        "gamma": a.gamma, "chunk": a.chunk, **rp}
        print(f"sigma {sigma}: V {truth[sigma]['value']:.4f} +- {truth[sigma]['se']:.4f}, success "
              f"{truth[sigma]['success']:.2f} ({time.time() - t0:.0f} s)", flush=True)
        (out / "truth.json").write_text(json.dumps(truth, indent=1))


def parse_value(v: str):
    try:
        return json.loads(v)
    except ValueError:
        return v


def spearman(x, y) -> float:
    import pandas as pd

    return float(pd.Series(x).rank().corr(pd.Series(y).rank()))


def cmd_fit(a) -> None:
    import torch

    from aloe_cli.critic import CriticConfig, fit_critic, load_critic

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    truth = json.loads((out / "truth.json").read_text())
    overrides = {k: parse_value(v) for k, v in (s.split("=", 1) for s in a.set or [])}
    results_path = out / "results" / f"{a.name}.json"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for sigma in a.candidates.split(","):
        cfg = CriticConfig(**{"gamma": a.gamma, "val_every": a.val_every, "log_every": a.val_every,
                              "checkpoint_every": 10 ** 9, **overrides})
        cdir = out / "critics" / a.name / f"sigma{sigma}"
        import shutil

        shutil.rmtree(cdir, ignore_errors=True)
        t0 = time.time()
        fit_critic(out / "store", cdir, cfg, "mw_chunk_policy:make",
                   {"env_name": a.env, "sigma": float(sigma), "chunk_size": a.chunk, "seed": 0})
        secs = time.time() - t0
        metrics = [json.loads(x) for x in (cdir / "metrics.jsonl").read_text().splitlines()]
        curve = [(m["step"], m["val/v_start"]) for m in metrics if "val/v_start" in m]
        critic = load_critic(cdir)
        est = float(critic.config["result"]["val/v_start"])
        # Per start: the critic's V at each logged first frame against that start's own truth.
        rows.append({"sigma": sigma, "estimate": est, "truth": truth[sigma]["value"], "se": truth[sigma]["se"],
                     "curve": curve, "seconds": secs})
        print(f"[{a.name}] sigma {sigma}: estimate {est:.4f} truth {truth[sigma]['value']:.4f} "
              f"({secs:.0f} s) curve {[(s, round(v, 3)) for s, v in curve]}", flush=True)
    est = np.array([r["estimate"] for r in rows])
    tru = np.array([r["truth"] for r in rows])
    span = tru.max() - tru.min()
    summary = {"config": overrides, "rows": rows,
               "norm_abs_err": float(np.abs(est - tru).mean() / span) if span > 0 else None,
               "spearman": spearman(est, tru) if len(rows) > 2 else None,
               "mean_abs_err": float(np.abs(est - tru).mean())}
    results_path.write_text(json.dumps(summary, indent=1))
    print(f"[{a.name}] mean |err| {summary['mean_abs_err']:.4f}  normalised {summary['norm_abs_err']}  "
          f"spearman {summary['spearman']}")


def cmd_table(a) -> None:
    """Every fitted configuration: estimate per candidate, mean |error|, normalised error, Spearman."""
    out = Path(a.out)
    truth = json.loads((out / "truth.json").read_text())
    cands = sorted(truth, key=float)
    print("truth:", "  ".join(f"sigma {c}: {truth[c]['value']:.3f} (success {truth[c]['success']:.2f})"
                             for c in cands))
    print(f"{'run':28s} " + " ".join(f"{'s' + c:>8s}" for c in cands) + "  |err|   norm  spearman  s/fit")
    for path in sorted((out / "results").glob("*.json")):
        r = json.loads(path.read_text())
        est = {row["sigma"]: row["estimate"] for row in r["rows"]}
        secs = np.mean([row["seconds"] for row in r["rows"]])
        cells = " ".join(f"{est[c]:8.3f}" if c in est else f"{'':8s}" for c in cands)
        norm = "" if r["norm_abs_err"] is None else f"{r['norm_abs_err']:.3f}"
        sp = "" if r["spearman"] is None else f"{r['spearman']:.2f}"
        print(f"{path.stem:28s} {cells}  {r['mean_abs_err']:.3f}  {norm:>5s}  {sp:>8s}  {secs:5.0f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cmd", choices=["data", "truth", "fit", "table"])
    p.add_argument("out")
    p.add_argument("--env", default="drawer-open-v3")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cap", type=int, default=150)
    p.add_argument("--episodes", type=int, default=15, help="data: episodes per noise level")
    p.add_argument("--sigmas", default="0,0.5,1,2", help="data: behaviour noise levels")
    p.add_argument("--candidates", default="0,0.5,1,2", help="noise levels of the evaluated chunk policies")
    p.add_argument("--chunk", type=int, default=5)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--rollouts", type=int, default=3)
    p.add_argument("--name", default="run")
    p.add_argument("--set", action="append", help="CriticConfig override key=value (repeatable)")
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    {"data": cmd_data, "truth": cmd_truth, "fit": cmd_fit, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    main()
