"""Ingest throughput and memory against its physical floor.

Floor: read the same arrays with h5py and write them with pyarrow directly (one Parquet
row group per episode, zstd), no validation, hashing or store bookkeeping. Both run as
child processes so that peak memory (ru_maxrss) is each one's own.

    python -m benchmarks.bench_ingest --episodes 50 --frames 400 --out results/

prints a table (frames/s, ratio to the floor, peak RSS at 1x and 10x the data) and writes
results/bench_ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

FLOOR = r"""
import sys, h5py, numpy as np, pyarrow as pa, pyarrow.parquet as pq
from pathlib import Path
src, out = Path(sys.argv[1]), Path(sys.argv[2])
def vec(a):
    a = np.ascontiguousarray(a, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])
writer = None
for i, f in enumerate(sorted(src.glob("episode_*.hdf5"))):
    with h5py.File(f, "r") as h:
        qpos, qvel, act = h["observations/qpos"][()], h["observations/qvel"][()], h["action"][()]
    T = len(act)
    t = pa.table({"episode_id": pa.array([str(i)] * T), "frame_index": pa.array(np.arange(T)),
                  "observation.state": vec(qpos), "action": vec(act), "observation.qvel": vec(qvel)})
    if writer is None:
        writer = pq.ParquetWriter(out / "frames.parquet", t.schema, compression="zstd")
    writer.write_table(t, row_group_size=T)
writer.close()
"""


def write_source(folder: Path, episodes: int, frames: int, seed: int = 0) -> int:
    import h5py

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(episodes):
        with h5py.File(folder / f"episode_{i}.hdf5", "w") as root:
            root.attrs["sim"] = True
            obs = root.create_group("observations")
            obs.create_dataset("qpos", data=rng.normal(size=(frames, 14)))
            obs.create_dataset("qvel", data=rng.normal(size=(frames, 14)))
            root.create_dataset("action", data=rng.normal(size=(frames, 14)))
    return episodes * frames


def run_child(args: list[str]) -> tuple[float, float]:
    """Run a child process; return (seconds, its peak RSS in MiB)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child failed: {' '.join(args)}\n{proc.stderr}")
    # ru_maxrss of RUSAGE_CHILDREN is the max over waited-for children: run each kind once per size,
    # largest last, so a later, larger reading is this child's own.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024.0


def measure(work: Path, episodes: int, frames: int) -> dict:
    src = work / f"src-{episodes}"
    n = write_source(src, episodes, frames)
    floor_out = work / f"floor-{episodes}"
    floor_out.mkdir()
    t_floor, _ = run_child(["-c", FLOOR, str(src), str(floor_out)])
    store = work / f"store-{episodes}"
    t_ingest, rss = run_child(["-m", "aloe_cli", "ingest", str(store), str(src), "--json"])
    shutil.rmtree(src)
    return {"episodes": episodes, "frames": n, "floor_s": t_floor, "ingest_s": t_ingest,
            "floor_fps": n / t_floor, "ingest_fps": n / t_ingest, "ratio": t_floor / t_ingest,
            "ingest_peak_rss_mib": rss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=50, help="episodes at 1x")
    ap.add_argument("--frames", type=int, default=400, help="frames per episode")
    ap.add_argument("--scale", type=int, default=10, help="the larger size, as a multiple of 1x")
    ap.add_argument("--out", type=Path, default=Path("results"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(Path(tmp), args.episodes, args.frames),
                measure(Path(tmp), args.episodes * args.scale, args.frames)]
    result = {
        "benchmark": "ingest",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "rows": rows,
        "memory_growth": rows[1]["ingest_peak_rss_mib"] / rows[0]["ingest_peak_rss_mib"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_ingest.json").write_text(json.dumps(result, indent=2))
    print(f"ingest benchmark ({result['machine']}, {result['date']}); ALOHA HDF5, 14-d qpos/qvel/action")
    print(f"{'frames':>9} {'floor f/s':>11} {'aloe f/s':>10} {'ratio':>6} {'peak RSS MiB':>13}")
    for r in rows:
        print(f"{r['frames']:>9} {r['floor_fps']:>11.0f} {r['ingest_fps']:>10.0f} {r['ratio']:>6.2f} "
              f"{r['ingest_peak_rss_mib']:>13.0f}")
    print(f"peak memory {args.scale}x / 1x: {result['memory_growth']:.2f}")


if __name__ == "__main__":
    main()
