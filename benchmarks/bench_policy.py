"""Benchmark the built-in chunk policy: batch sampling time and behaviour-cloning steps/s.

The issue's target: sampling N = 32 chunks for each of 256 observations on CPU "well under a
second". Uses a synthetic store with Meta-World's sizes (state 39, action 4) so it needs no
simulator; prints a table and writes JSON.

    python -m benchmarks.bench_policy [--threads 2] [--steps 200] [--out results/bench_policy.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_store(path: Path, episodes: int, length: int, state_dim: int, action_dim: int, seed: int = 0):
    from aloe_cli.episode import Episode
    from aloe_cli.store import Store

    rng = np.random.default_rng(seed)
    W = rng.normal(size=(state_dim, action_dim)).astype(np.float32) / np.sqrt(state_dim)
    store = Store.open(path, create=True)
    with store.writer("synthetic", "synthetic") as w:
        for e in range(episodes):
            state = np.cumsum(rng.normal(scale=0.1, size=(length, state_dim)), axis=0).astype(np.float32)
            action = np.tanh(state @ W) + rng.normal(scale=0.05, size=(length, action_dim)).astype(np.float32)
            w.add(Episode(state=state, action=action, source_key=f"ep{e}", source_index=e, success=True,
                          task=f"task {e % 3}", policy_id="synthetic"))
        w.commit()
    return Store.open(path)


def time_sampling(policy, batch: int, samples: int, repeats: int, deterministic: bool) -> dict:
    from aloe_cli import schema as S

    rng = np.random.default_rng(0)
    obs = {S.OBS_STATE: rng.normal(size=(batch, policy.state_dim)).astype(np.float32),
           S.TASK: [f"task {i % 3}" for i in range(batch)]}
    policy.sample(obs, samples, deterministic=deterministic)  # warm-up
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        policy.sample(obs, samples, deterministic=deterministic)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    # CPU seconds of the process as well as wall seconds: on a shared machine wall time includes
    # waiting for a core; with 1 thread, CPU seconds are what an idle core would take.
    return {"median_s": float(np.median(times)), "min_s": float(np.min(times)),
            "median_cpu_s": float(np.median(cpu)), "chunks_per_s": float(batch * samples / np.median(times))}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--steps", type=int, default=200, help="BC steps to time")
    ap.add_argument("--batch", type=int, default=256, help="observations per sampling call")
    ap.add_argument("--samples", type=int, default=32, help="chunks per observation")
    ap.add_argument("--repeats", type=int, default=5, help="timed sampling calls (median reported)")
    ap.add_argument("--state-dim", type=int, default=39)
    ap.add_argument("--action-dim", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=Path("results/bench_policy.json"))
    args = ap.parse_args(argv)

    import torch

    from aloe_cli.policy.builtin import PolicyConfig, load_builtin, train_policy

    if args.threads:
        torch.set_num_threads(args.threads)
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
               "device": args.device, "load_average_1min": os.getloadavg()[0],
               "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = synthetic_store(Path(tmp) / "store", 100, 150, args.state_dim, args.action_dim)
        configs = [("default", {}), ("smaller", {"hidden": 128}), ("deeper", {"depth": 3}),
                   ("long chunks", {"chunk_size": 50})]
        for label, overrides in configs:
            cfg = PolicyConfig(steps=args.steps, device=args.device, eval_every=10 ** 9, log_every=10 ** 9,
                               **overrides)
            name = f"{label} (hidden {cfg.hidden}, depth {cfg.depth}, H {cfg.chunk_size})"
            summary = train_policy(store, Path(tmp) / "pol", cfg, overwrite=True)
            policy = load_builtin(Path(tmp) / "pol", device=args.device)
            row = {"config": name, **{k: getattr(cfg, k) for k in ("chunk_size", "hidden", "depth", "flow_steps",
                                                                      "batch_size")},
                   "train_steps_per_s": summary["steps_per_s"],
                   "sample": time_sampling(policy, args.batch, args.samples, args.repeats, False),
                   "sample_deterministic": time_sampling(policy, args.batch, args.samples, args.repeats, True)}
            rows.append(row)
    result = {"benchmark": "policy", "batch": args.batch, "samples": args.samples, "state_dim": args.state_dim,
              "action_dim": args.action_dim, "machine": machine, "rows": rows}
    print(f"built-in chunk policy: {args.batch} observations x {args.samples} chunks per call, "
          f"{machine['cpu_count']} CPUs (load {machine['load_average_1min']:.1f}), "
          f"{machine['torch_threads']} torch threads, device {args.device}")
    head = (f"{'config':38} {'sample s':>9} {'min s':>7} {'CPU s':>7} {'det. s':>7} {'chunks/s':>9} "
            f"{'BC steps/s':>11}")
    print(head)
    print("-" * len(head))
    for r in rows:
        s = r["sample"]
        print(f"{r['config']:38} {s['median_s']:9.3f} {s['min_s']:7.3f} {s['median_cpu_s']:7.3f} "
              f"{r['sample_deterministic']['median_s']:7.3f} {s['chunks_per_s']:9.0f} {r['train_steps_per_s']:11.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
