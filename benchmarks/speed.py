"""Benchmark 3 (BENCHMARK.md): speed and memory, each as a ratio to its physical floor in the same run.

    python -m benchmarks.speed --budget small --device auto --out results/

- ingest: frames/s of `aloe ingest` (ALOHA HDF5) against reading the same arrays with h5py and
  writing them with pyarrow directly, and ingest's peak memory at 1x and 10x the data
  (`benchmarks.bench_ingest`, child processes, so each peak RSS is its own).
- critic training: samples/s of a full `fit_critic` step (ALOE's policy bootstrap, K cached
  policy chunks per bootstrap state; the steady rate between its first and last metric lines)
  against the same step (`critic_loss` with its target, backward, AdamW, Polyak) on one batch
  already on the device: the difference is the data path (drawing chunk starts, building
  windows, gathering states, chunks and cached policy chunks). Also shown: the bare
  forward + backward of the network alone (no target, no optimiser).
- scoring: chunks/s of `score_chunks` (streaming the store, Q of the logged chunk and V from
  K policy chunks) against the bare batched forward pass over the same (state, chunk) pairs
  already in memory; and the Q-only variant (no policy). Both sides are timed in wall time, in
  the same process with the same torch threads (`score_chunks` also reads files, which CPU time
  would not count); critic training compares process CPU time on a CPU, wall time on a GPU.
- scoring memory: peak RSS of `score_chunks` in a child process at 1x and 10x the store.
- camera frames (`benchmarks.bench_images`' measurement): samples/s of the same critic step
  (chunked SARSA, so each sample also gathers its next frame) with a 64x64 camera against state
  only, the frames' share of an image step (indexing and random shift: decoding happens once, at
  load), PNG decoding frames/s, and what decoding every step would add to an image step.

The synthetic store has Meta-World's sizes (state 39, action 4), 150-frame episodes; the
evaluated policy draws Gaussian chunks (its cost is not the toolkit's). Writes
OUT/speed-<budget>.json and .png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import common as B

REPO = Path(__file__).resolve().parents[1]
H = 5


@dataclass(frozen=True)
class Budget:
    """Sizes of one speed run."""

    ingest_episodes: int  # ALOHA episodes at 1x (the larger run has `scale` times as many)
    ingest_frames: int  # frames per ALOHA episode
    scale: int  # the larger size as a multiple of the smaller
    store_episodes: int  # 150-frame episodes of the synthetic store for training and scoring (1x)
    critic_steps: int  # fit_critic steps timed
    floor_steps: int  # steps of the in-memory floors
    image_episodes: int  # episodes of the 64x64-camera store (bench_images)
    image_length: int  # frames per episode of the camera store
    image_steps: int  # critic steps timed with and without the camera (after 3 warm-up steps)
    image_batch: int  # chunks per critic step in the camera comparison


BUDGETS = {
    "smoke": Budget(ingest_episodes=3, ingest_frames=40, scale=2, store_episodes=8, critic_steps=20, floor_steps=10,
                    image_episodes=4, image_length=20, image_steps=3, image_batch=32),
    "small": Budget(ingest_episodes=50, ingest_frames=400, scale=10, store_episodes=100, critic_steps=400,
                    floor_steps=200, image_episodes=40, image_length=50, image_steps=30, image_batch=256),
    "full": Budget(ingest_episodes=100, ingest_frames=400, scale=10, store_episodes=300, critic_steps=2000,
                   floor_steps=500, image_episodes=40, image_length=50, image_steps=100, image_batch=256),
}


class GaussianChunks:
    """A stand-in policy whose sampling costs almost nothing: N(0, 0.5^2) chunks."""

    action_dim = 4

    def __init__(self, chunk_size: int = H, seed: int = 0):
        self.chunk_size = int(chunk_size)
        self.rng = np.random.default_rng(seed)

    def sample(self, observations: dict, num_samples: int) -> np.ndarray:
        B_ = len(observations["observation.state"])
        return (0.5 * self.rng.standard_normal((B_, num_samples, self.chunk_size, 4))).astype(np.float32)


def gaussian_chunks(chunk_size: int = H, seed: int = 0) -> GaussianChunks:
    """Plugin factory (``--policy benchmarks.speed:gaussian_chunks``)."""
    return GaussianChunks(chunk_size, seed)


POLICY = "benchmarks.speed:gaussian_chunks"


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- ingest
def ingest(budget: Budget, work: Path) -> dict:
    from .bench_ingest import measure

    rows = [measure(work, budget.ingest_episodes, budget.ingest_frames),
            measure(work, budget.ingest_episodes * budget.scale, budget.ingest_frames)]
    return {"rows": rows, "ratio_1x": rows[0]["ratio"], "ratio_10x": rows[1]["ratio"],
            "memory_growth": rows[1]["ingest_peak_rss_mib"] / rows[0]["ingest_peak_rss_mib"]}


# --------------------------------------------------------------------------- critic training
def steady_rate(metrics_path: Path, batch: int, cpu: bool = False) -> float:
    """Samples/s between the first and the last metric line (the first window holds the warm-up);
    with `cpu`, per second of the process's CPU time (`time/cpu_s`: on a CPU with one torch
    thread, what other jobs on the machine do not change), else per second of wall time."""
    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "time/samples_per_s" in r]
    a, ra = rows[0]["step"], rows[0]["time/samples_per_s"]
    b, rb = rows[-1]["step"], rows[-1]["time/samples_per_s"]
    if b <= a:
        return float(rb)
    if cpu:
        return float((b - a) * batch / max(rows[-1]["time/cpu_s"] - rows[0]["time/cpu_s"], 1e-9))
    ta, tb = a * batch / ra, b * batch / rb
    return float((b - a) * batch / max(tb - ta, 1e-9))


def critic_training(store_path: Path, work: Path, budget: Budget, device: str) -> dict:
    import copy

    import torch

    from aloe_cli.critic import CriticConfig, fit_critic
    from aloe_cli.critic.data import PolicySamples, load_chunk_data
    from aloe_cli.critic.net import CriticNet
    from aloe_cli.critic.train import Batcher, _polyak, critic_loss, select_episodes
    from aloe_cli.rewards import RewardSpec, resolve_rewards
    from aloe_cli.store import Store

    steps = budget.critic_steps
    config = CriticConfig(bootstrap="policy", chunk_size=H, steps=steps, val_every=steps, device=device,
                          log_every=max(1, min(100, steps // 4)))
    out = work / "critic"
    t0 = time.perf_counter()
    summary = fit_critic(store_path, out, config, policy_spec=POLICY, policy_args={"chunk_size": H})
    fit_wall = time.perf_counter() - t0
    cpu = torch.device(device).type == "cpu"  # time by process CPU time on a CPU (see steady_rate)
    full = steady_rate(out / "metrics.jsonl", config.batch_size, cpu=cpu)

    # ---- the floors: the same network and loss on one batch already on the device
    store = Store.open(store_path)
    episodes = select_episodes(store, None)
    reward = resolve_rewards(RewardSpec(), episodes)
    data = load_chunk_data(store, episodes, H, config.gamma, reward)
    rng = np.random.default_rng(0)
    samples = PolicySamples(np.arange(data.num_frames),
                            rng.normal(0, 0.5, (data.num_frames, config.samples, H, 4)).astype(np.float32))
    dev = torch.device(device)
    batcher = Batcher(data, config, samples, dev)
    usable = np.flatnonzero(data.usable)
    batch = batcher(usable[rng.integers(0, len(usable), config.batch_size)], rng)
    torch.manual_seed(0)
    net = CriticNet(data.state.shape[1], data.action.shape[1], H, config.ensemble, config.hidden, config.layers,
                    config.head, config.bins, config.chunk_encoder).to(dev)
    target = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                            **({"fused": True} if _fused_ok(dev) else {}))

    def same_step():
        loss, _ = critic_loss(net, target, batch, config)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _polyak(target, net, config.tau)

    def bare_step():
        q = net(batch["state"], batch["chunk"])[:, 0, :, 0]
        loss = ((q - batch["R"][:, None]) ** 2).mean()
        net.zero_grad(set_to_none=True)
        loss.backward()

    floor_same = _rate(same_step, budget.floor_steps, config.batch_size, dev)
    floor_bare = _rate(bare_step, budget.floor_steps, config.batch_size, dev)
    # The data path alone: building a batch (indices, chunk windows, padding fill, gathers, cached
    # policy chunks) for fresh random chunk starts, per step, against the step's compute.
    starts = [usable[rng.integers(0, len(usable), config.batch_size)] for _ in range(budget.floor_steps)]
    it = iter(starts * 2)
    batch_rate = _rate(lambda: batcher(next(it), rng), budget.floor_steps, config.batch_size, dev)
    return {"full_samples_per_s": full, "floor_samples_per_s": floor_same, "bare_fwd_bwd_samples_per_s": floor_bare,
            "overhead_vs_floor": floor_same / full - 1.0, "ratio_to_floor": full / floor_same,
            "timing": "process CPU time" if cpu else "wall time",
            "batch_build_ms": 1000 * config.batch_size / batch_rate,
            "step_compute_ms": 1000 * config.batch_size / floor_same,
            "batch_build_share": floor_same / batch_rate,
            "ratio_to_bare_fwd_bwd": full / floor_bare, "steps": steps, "batch_size": config.batch_size,
            "samples_K": config.samples, "fit_wall_s": fit_wall, "fit_seconds_loop": summary["seconds"],
            "critic_dir": str(out)}


def fqe_comparison(store_path: Path, work: Path, budget: Budget, device: str, d3rlpy_python: str | None) -> dict:
    """aloe's one-step FQE in d3rlpy FQE's shape (H = 1, K = 1, one scalar head, the same batch, steps
    and gamma) against d3rlpy's own FQE on the same store, each timed over its whole training step
    (replay sampling, update, target update). d3rlpy's MLP gets as many hidden layers of the same
    width as aloe's observation encoder and head together; both networks' parameter counts are
    reported. d3rlpy runs in its own interpreter (`benchmarks.d3rlpy_fqe`); without one, only the
    aloe side is measured."""
    import torch

    from aloe_cli.critic import CriticConfig, fit_critic, load_critic

    from .d3rlpy_fqe import run_job

    steps = budget.critic_steps
    config = CriticConfig(bootstrap="policy", chunk_size=1, samples=1, ensemble=1, head="scalar", steps=steps,
                          val_every=steps, device=device, log_every=max(1, min(100, steps // 4)))
    out = work / "critic-fqe"
    fit_critic(store_path, out, config, policy_spec=POLICY, policy_args={"chunk_size": 1})
    cpu = torch.device(device).type == "cpu"
    aloe = steady_rate(out / "metrics.jsonl", config.batch_size, cpu=cpu)
    critic = load_critic(out, device="cpu")
    params = sum(p.numel() for p in critic.net.parameters())
    result = {"aloe_fqe_samples_per_s": aloe, "aloe_fqe_parameters": int(params), "steps": steps,
              "batch_size": config.batch_size, "hidden": config.hidden, "d3rlpy_layers": 2 * config.layers,
              "d3rlpy": None}
    if not d3rlpy_python:
        result["d3rlpy_error"] = "not run: no --d3rlpy-python"
        return result
    reward = critic.config["reward"]  # the reward spec fit_critic resolved on this store
    d3 = run_job(d3rlpy_python, {"mode": "speed", "store": str(store_path), "reward": reward, "gamma": config.gamma,
                                 "steps": steps, "warmup": max(3, steps // 10), "batch_size": config.batch_size,
                                 "hidden": config.hidden, "layers": 2 * config.layers, "seed": 0, "device": device,
                                 "threads": torch.get_num_threads()}, work)
    if "error" in d3:
        result["d3rlpy_error"] = d3["error"]
        return result
    result["d3rlpy"] = d3
    result["aloe_fqe_over_d3rlpy"] = aloe / d3["samples_per_s"]
    return result


def _fused_ok(dev) -> bool:
    import torch

    try:
        torch.optim.AdamW([torch.zeros(1, device=dev, requires_grad=True)], fused=True)
        return True
    except (RuntimeError, TypeError):
        return False


def _rate(step, n: int, batch: int, dev, clock=None) -> float:
    """Samples/s of `step`: per second of process CPU time on a CPU (as `steady_rate(cpu=True)`),
    of wall time (synchronised) on a GPU; `clock` (e.g. time.perf_counter) overrides the choice,
    to time a floor on the clock of the figure it is compared with."""
    clock = clock or (time.process_time if dev.type == "cpu" else time.perf_counter)
    for _ in range(max(3, n // 10)):  # warm-up
        step()
    _sync(dev)
    t0 = clock()
    for _ in range(n):
        step()
    _sync(dev)
    return n * batch / max(clock() - t0, 1e-9)


# --------------------------------------------------------------------------- scoring
SCORING_CLOCK = "wall time"  # score_chunks and its floor alike (`scoring`)


def scoring(store_path: Path, critic_dir: Path, device: str, repeats: int = 1, clock=time.perf_counter) -> dict:
    """score_chunks' chunks/s and its floor's, both timed on `clock` (wall time; `SCORING_CLOCK`)."""
    import torch

    from aloe_cli import schema as S
    from aloe_cli.critic import load_critic
    from aloe_cli.scoring import score_chunks
    from aloe_cli.store import Store

    critic = load_critic(critic_dir, device=device)
    K = int(critic.config["config"]["samples"])
    store = Store.open(store_path)
    n = int(store.episodes[S.LENGTH].sum())
    policy = GaussianChunks(H)
    out = {"chunks": n, "K": K, "timing": SCORING_CLOCK, "torch_threads": torch.get_num_threads()}
    for label, pol in (("with_policy", policy), ("q_only", None)):
        score_chunks(store, critic, policy=pol, q_only=pol is None)  # warm-up (file cache, CUDA kernels)
        t0 = clock()
        for _ in range(repeats):
            score_chunks(store, critic, policy=pol, q_only=pol is None)
        out[f"{label}_chunks_per_s"] = repeats * n / (clock() - t0)

    # the floor: the same batched forward passes on tensors already on the device (batch 1024)
    dev = torch.device(device)
    rng = np.random.default_rng(0)
    st = torch.as_tensor(rng.normal(size=(1024, store.state_dim)).astype(np.float32), device=dev)
    one = torch.as_tensor(rng.normal(size=(1024, 1, H, store.action_dim)).astype(np.float32), device=dev)
    many = torch.as_tensor(rng.normal(size=(1024, K, H, store.action_dim)).astype(np.float32), device=dev)
    net = critic.net
    with torch.no_grad():
        for label, fn in (("with_policy", lambda: (net.q_heads(st, one), net.q_heads(st, many))),
                          ("q_only", lambda: net.q_heads(st, one))):
            out[f"{label}_floor_chunks_per_s"] = _rate(fn, max(10, -(-n // 1024)), 1024, dev, clock=clock)
            out[f"{label}_ratio_to_floor"] = out[f"{label}_chunks_per_s"] / out[f"{label}_floor_chunks_per_s"]
    return out


# --------------------------------------------------------------------------- camera frames
def images(budget: Budget, work: Path) -> dict:
    """Critic samples/s with a 64x64 camera vs state only (`bench_images.time_critic`, CPU), the frames'
    share of an image step, and PNG decoding (once at load; what decoding every step would add)."""
    from .bench_images import synthetic_store as camera_store, time_critic, time_decode

    store = camera_store(work / "store-images", budget.image_episodes, budget.image_length)
    state = time_critic(store, "state", budget.image_steps, budget.image_batch)
    image = time_critic(store, "state,images.cam", budget.image_steps, budget.image_batch)
    decode = time_decode(store)
    # a step gathers each sample's frame and its next frame: 2 x batch frames to decode per step
    decode_step_s = 2 * budget.image_batch / decode["decode_frames_per_s"]
    return {"size": 64, "frames": image["frames"], "steps": budget.image_steps, "batch_size": budget.image_batch,
            "state_samples_per_s": state["samples_per_s"], "image_samples_per_s": image["samples_per_s"],
            "image_over_state": image["samples_per_s"] / state["samples_per_s"],
            "frames_share_of_image_step": image["batch_share"], "image_load_s": image["load_s"],
            "decode_frames_per_s": decode["decode_frames_per_s"],
            "decode_every_step_would_add": decode_step_s / (image["step_ms"] / 1e3)}


SCORE_CHILD = r"""
import sys, resource
from aloe_cli.critic import load_critic
from aloe_cli.scoring import score_chunks
from benchmarks.speed import GaussianChunks
critic = load_critic(sys.argv[2], device=sys.argv[3])
df = score_chunks(sys.argv[1], critic, policy=GaussianChunks())
print(len(df), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def scoring_memory(stores: list[Path], critic_dir: Path, device: str) -> list[dict]:
    rows = []
    for store in stores:
        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
        proc = subprocess.run([sys.executable, "-c", SCORE_CHILD, str(store), str(critic_dir), device], env=env,
                              capture_output=True, text=True, cwd=str(REPO))
        if proc.returncode != 0:
            raise RuntimeError(f"scoring child failed: {proc.stderr.strip().splitlines()[-1:]}")
        chunks, rss_kib = proc.stdout.split()[-2:]
        rows.append({"chunks": int(chunks), "peak_rss_mib": int(rss_kib) / 1024.0})
    return rows


# --------------------------------------------------------------------------- the run
def run(budget_name: str, device: str, threads: int | None = None, progress=print,
        d3rlpy_python: str | None = None) -> dict:
    import torch

    from .bench_policy import synthetic_store

    if threads:
        torch.set_num_threads(threads)
    budget = BUDGETS[budget_name]
    device = B.resolve_device(device)
    machine = B.machine_info(device)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        progress(f"[speed] ingest at 1x and {budget.scale}x")
        ing = ingest(budget, work)
        progress("[speed] critic training")
        s1 = work / "store-1x"
        synthetic_store(s1, budget.store_episodes, 150, 39, 4)
        crit = critic_training(s1, work, budget, device)
        progress("[speed] one-step FQE: aloe vs d3rlpy" + ("" if d3rlpy_python else " (no --d3rlpy-python: aloe only)"))
        fqe = fqe_comparison(s1, work, budget, device, d3rlpy_python)
        progress("[speed] scoring")
        sc = scoring(s1, Path(crit["critic_dir"]), device)
        s10 = work / f"store-{budget.scale}x"
        synthetic_store(s10, budget.store_episodes * budget.scale, 150, 39, 4)
        progress(f"[speed] scoring memory at 1x and {budget.scale}x")
        mem = scoring_memory([s1, s10], Path(crit["critic_dir"]), device)
        progress("[speed] critic with a 64x64 camera vs state only (CPU)")
        img = images(budget, work)
    crit.pop("critic_dir")
    result = {
        "benchmark": "speed",
        "budget": budget_name,
        "budget_settings": dataclasses.asdict(budget),
        "machine": machine,
        "ingest": ing,
        "critic_training": crit,
        "fqe_vs_d3rlpy": fqe,
        "scoring": sc,
        "scoring_memory": {"rows": mem, "memory_growth": mem[1]["peak_rss_mib"] / mem[0]["peak_rss_mib"]},
        "images": img,
        "wall_seconds": time.perf_counter() - t0,
    }
    result["targets"] = {
        "data_path_overhead<=15%": bool(crit["overhead_vs_floor"] <= 0.15),
        "ingest>=0.5x_floor": bool(min(ing["ratio_1x"], ing["ratio_10x"]) >= 0.5),
        "ingest_memory_flat(<=1.25x)": bool(ing["memory_growth"] <= 1.25),
        "scoring_memory_flat(<=1.25x)": bool(result["scoring_memory"]["memory_growth"] <= 1.25),
    }
    return result


def print_report(r: dict) -> None:
    print(f"speed benchmark, budget {r['budget']}; {B.machine_line(r['machine'])}")
    ing, c, s = r["ingest"], r["critic_training"], r["scoring"]
    rows = []
    for row in ing["rows"]:
        rows.append([f"ingest {row['frames']} frames", f"{row['ingest_fps']:.0f} frames/s",
                     f"{row['floor_fps']:.0f} (h5py+pyarrow)", f"{row['ratio']:.2f}x"])
    full = f"{c['full_samples_per_s']:.0f} samples/s"
    rows.append([f"critic step (batch {c['batch_size']}, K {c['samples_K']}; {c.get('timing', 'wall time')})", full,
                 f"{c['floor_samples_per_s']:.0f} (same step, batch in memory)", f"{c['ratio_to_floor']:.2f}x"])
    rows.append(["", "", f"{c['bare_fwd_bwd_samples_per_s']:.0f} (bare forward+backward)",
                 f"{c['ratio_to_bare_fwd_bwd']:.2f}x"])
    f = r.get("fqe_vs_d3rlpy")
    if f:
        d3 = f.get("d3rlpy")
        if d3:
            ref = (f"{d3['samples_per_s']:.0f} (d3rlpy {d3['d3rlpy']} FQE, {f['d3rlpy_layers']}x{f['hidden']} MLP, "
                   f"{d3['parameters']:,} params)")
        else:
            ref = f"d3rlpy FQE {f.get('d3rlpy_error', 'not run')}"
        rows.append([f"one-step FQE step (H 1, 1 scalar head, {f['aloe_fqe_parameters']:,} params)",
                     f"{f['aloe_fqe_samples_per_s']:.0f} samples/s", ref,
                     f"{f['aloe_fqe_over_d3rlpy']:.2f}x" if d3 else "-"])
        if d3:
            rows.append([f"ALOE critic step (H {H}, K {c['samples_K']}) vs d3rlpy FQE", full,
                         f"{d3['samples_per_s']:.0f} (d3rlpy FQE, H 1)",
                         f"{c['full_samples_per_s'] / d3['samples_per_s']:.2f}x"])
    clock = f"{s.get('timing', 'wall time; floor in CPU time')}, {s.get('torch_threads', '?')} threads"
    rows.append([f"score_chunks (K {s['K']}; {clock})", f"{s['with_policy_chunks_per_s']:.0f} chunks/s",
                 f"{s['with_policy_floor_chunks_per_s']:.0f} (batched forward)",
                 f"{s['with_policy_ratio_to_floor']:.2f}x"])
    rows.append([f"score_chunks (Q only; {clock})", f"{s['q_only_chunks_per_s']:.0f} chunks/s",
                 f"{s['q_only_floor_chunks_per_s']:.0f} (batched forward)", f"{s['q_only_ratio_to_floor']:.2f}x"])
    im = r["images"]
    rows.append([f"critic step, 64x64 camera (batch {im['batch_size']}, CPU)",
                 f"{im['image_samples_per_s']:.0f} samples/s", f"{im['state_samples_per_s']:.0f} (state only)",
                 f"{im['image_over_state']:.3f}x"])
    print(B.format_table(["what", "aloe", "floor", "ratio"], rows))
    print()
    m = r["scoring_memory"]["rows"]
    print(f"peak RSS: ingest {ing['rows'][0]['ingest_peak_rss_mib']:.0f} -> "
          f"{ing['rows'][1]['ingest_peak_rss_mib']:.0f} MiB ({ing['memory_growth']:.2f}x at "
          f"{r['budget_settings']['scale']}x the data); score_chunks {m[0]['peak_rss_mib']:.0f} -> "
          f"{m[1]['peak_rss_mib']:.0f} MiB ({r['scoring_memory']['memory_growth']:.2f}x)")
    nan = float("nan")
    print(f"data-path overhead of a critic step: {100 * c['overhead_vs_floor']:.1f}% over the same step on a batch "
          f"in memory ({c.get('timing', 'wall time')}); building a batch alone: {c.get('batch_build_ms', nan):.2f} ms "
          f"per step, {100 * c.get('batch_build_share', nan):.1f}% of the step's "
          f"{c.get('step_compute_ms', nan):.1f} ms")
    print(f"camera frames: indexing + random shift {100 * im['frames_share_of_image_step']:.1f}% of an image step; "
          f"PNG decode {im['decode_frames_per_s']:.0f} frames/s, once at load ({im['image_load_s']:.2f} s for "
          f"{im['frames']} frames); decoding every step would add "
          f"{100 * im['decode_every_step_would_add']:.1f}%")
    print("targets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["targets"].items()))


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c, s, ing = r["critic_training"], r["scoring"], r["ingest"]
    labels = ["ingest 1x", f"ingest {r['budget_settings']['scale']}x", "critic step", "score (K)", "score (Q only)"]
    vals = [ing["ratio_1x"], ing["ratio_10x"], c["ratio_to_floor"], s["with_policy_ratio_to_floor"],
            s["q_only_ratio_to_floor"]]
    colours = ["#4c72b0"] * 2 + ["#55a868"] + ["#c44e52"] * 2
    fqe = (r.get("fqe_vs_d3rlpy") or {}).get("aloe_fqe_over_d3rlpy")
    if fqe is not None:  # a reference, not a floor: aloe's one-step FQE over d3rlpy's
        labels.append("FQE / d3rlpy")
        vals.append(fqe)
        colours.append("#8172b2")
    fig, ax = plt.subplots(figsize=(6.5 + 1.1 * (fqe is not None), 3.2))
    ax.bar(labels, vals, color=colours)
    ax.axhline(1.0, color="0.5", lw=1)
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("throughput / floor" + (" or reference" if fqe is not None else ""))
    m = r["machine"]
    ax.set_title(f"aloe speed vs floors ({m['date'][:10]}, {m['cpu_count']} cores, {m['gpu'] or 'CPU'})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.splitlines()[0])
    ap.add_argument("--budget", choices=list(BUDGETS), default="small")
    ap.add_argument("--device", default="auto", help="cpu | cuda | auto (critic training and scoring)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0, help="unused beyond the fixed seeds; recorded")
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--d3rlpy-python", default=os.environ.get("ALOE_D3RLPY_PYTHON"),
                    help="a Python with d3rlpy installed (default $ALOE_D3RLPY_PYTHON); unset: d3rlpy's FQE is skipped")
    args = ap.parse_args(argv)
    result = run(args.budget, args.device, args.threads, progress=lambda m: print(m, file=sys.stderr, flush=True),
                 d3rlpy_python=args.d3rlpy_python)
    result["seed"] = args.seed
    B.write_json(args.out / f"speed-{args.budget}.json", result)
    plot(result, args.out / f"speed-{args.budget}.png")
    print_report(result)
    print(f"wrote {args.out / f'speed-{args.budget}.json'} and .png")
    return result


if __name__ == "__main__":
    main()
