"""Reading a store written one episode per commit, before and after `aloe compact`.

`aloe rollout` commits every finished episode, so each episode gets a frames file of its own. This
writes such a store (N commits of one episode each, Meta-World-sized frames: 39-d state, 4-d action),
then times the readers on it before and after `compact_store`, in the same run:

    python -m benchmarks.bench_store --episodes 1000 --frames 120 --out results/

`Store.load_frames` (what fit-critic and score read), plain `pd.read_parquet(STORE/frames)` and
`Store.iter_episodes`; each the best of --repeats. Prints a table and writes results/bench_store.json.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import format_table, machine_info, machine_line, write_json


def write_store(root: Path, episodes: int, frames: int, seed: int = 0) -> float:
    """A store of `episodes` commits of one episode each; returns the seconds the commits took."""
    from aloe_cli.episode import Episode
    from aloe_cli.store import Store

    rng = np.random.default_rng(seed)
    store = Store.open(root, create=True)
    t0 = time.perf_counter()
    for i in range(episodes):
        ep = Episode(state=rng.normal(size=(frames, 39)).astype(np.float32),
                     action=rng.uniform(-1, 1, size=(frames, 4)).astype(np.float32), source_key=f"episode_{i}",
                     is_intervention=np.zeros(frames, bool), success=bool(i % 2), policy_id="v0",
                     task="drawer-open-v3")
        with store.writer("rollout:sim:drawer-open-v3", "rollout") as w:
            w.add(ep, fps=80.0)
            w.commit()
    return time.perf_counter() - t0


def time_readers(root: Path, repeats: int) -> dict:
    import pandas as pd

    from aloe_cli.store import Store

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    def iterate():
        for _ in Store.open(root).iter_episodes():
            pass

    return {
        "files": len(list((root / "frames").iterdir())),
        "load_frames_s": best(lambda: Store.open(root).load_frames()),
        "read_parquet_s": best(lambda: pd.read_parquet(root / "frames", columns=["episode_id", "action"])),
        "iter_episodes_s": best(iterate),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=1000, help="commits of one episode each")
    ap.add_argument("--frames", type=int, default=120, help="frames per episode")
    ap.add_argument("--repeats", type=int, default=3, help="each reader's time is the best of this many")
    ap.add_argument("--out", type=Path, default=Path("results"))
    args = ap.parse_args(argv)
    if args.episodes < 2 or args.frames < 1 or args.repeats < 1:
        raise SystemExit("--episodes must be >= 2, --frames and --repeats >= 1")
    from aloe_cli.compact import compact_store

    work = Path(tempfile.mkdtemp(prefix="aloe-bench-store-"))
    try:
        root = work / "store"
        write_s = write_store(root, args.episodes, args.frames)
        before = time_readers(root, args.repeats)
        t = time.perf_counter()
        compacted = compact_store(root)
        compact_s = time.perf_counter() - t
        after = time_readers(root, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "benchmark": "store",
        "machine": machine_info(),
        "episodes": args.episodes,
        "frames_per_episode": args.frames,
        "frames": args.episodes * args.frames,
        "write_s": write_s,
        "commit_ms": 1000 * write_s / args.episodes,
        "compact_s": compact_s,
        "compacted": compacted,
        "before": before,
        "after": after,
        "speedup": {k: before[k] / max(after[k], 1e-9) for k in ("load_frames_s", "read_parquet_s", "iter_episodes_s")},
    }
    print(f"store benchmark: {args.episodes} episodes x {args.frames} frames, one commit each "
          f"({result['commit_ms']:.1f} ms a commit); compaction {compact_s:.2f} s")
    print(machine_line(result["machine"]))
    rows = [[name, before[key], after[key], result["speedup"][key]]
            for name, key in (("Store.load_frames", "load_frames_s"), ("pd.read_parquet(frames/)", "read_parquet_s"),
                              ("Store.iter_episodes", "iter_episodes_s"))]
    print(format_table([f"reader (s; {before['files']} files -> {after['files']})", "before", "after", "speedup"],
                       rows))
    write_json(args.out / "bench_store.json", result)
    return result


if __name__ == "__main__":
    main()
