"""Benchmark camera frames: critic training samples/s with a 64x64 camera vs state only, the share
of step time spent on frames (indexing + random shift), the one-off decode at load, and the
simulator's rendering rate. Synthetic store with Meta-World's sizes (state 39, action 4) and
random-texture 64x64 PNG frames; prints a table and writes JSON.

    python -m benchmarks.bench_images [--threads 2] [--steps 30] [--out results/bench_images.json]
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


def time_state_read(with_images, path: Path, repeats: int = 3) -> dict:
    """Why cameras live in the frames files: a state-only read of a store with a camera column
    against the same episodes stored without it (Parquet reads only the columns asked for)."""
    from aloe_cli import schema as S
    from aloe_cli.episode import Episode
    from aloe_cli.store import Store

    fa = with_images.load_frames([S.OBS_STATE, S.ACTION])
    plain = Store.open(path, create=True)
    with plain.writer("synthetic", "synthetic") as w:
        for i, (a, b) in enumerate(zip(fa.starts, fa.starts + fa.lengths)):
            w.add(Episode(state=fa.columns[S.OBS_STATE][a:b], action=fa.columns[S.ACTION][a:b], source_key=f"ep{i}"))
        w.commit()
    out = {}
    for name, store in (("with_camera", with_images), ("without", Store.open(path))):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.process_time()
            store.load_frames([S.OBS_STATE, S.ACTION])
            best = min(best, time.process_time() - t0)
        out[f"state_read_s_{name}"] = round(best, 4)
    out["ratio"] = round(out["state_read_s_with_camera"] / out["state_read_s_without"], 3)
    return out


def synthetic_store(path: Path, episodes: int, length: int, size: int = 64, seed: int = 0):
    from aloe_cli.episode import Episode
    from aloe_cli.formats._images import encode_frames
    from aloe_cli.store import Store

    rng = np.random.default_rng(seed)
    store = Store.open(path, create=True)
    with store.writer("synthetic", "synthetic") as w:
        for e in range(episodes):
            base = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
            frames = np.stack([np.kron(np.roll(base, t, 0), np.ones((8, 8, 1), np.uint8)) for t in range(length)])
            w.add(Episode(state=rng.normal(size=(length, 39)).astype(np.float32),
                          action=rng.uniform(-1, 1, (length, 4)).astype(np.float32), source_key=f"ep{e}",
                          success=bool(e % 2), images={"observation.images.cam": encode_frames(frames)}))
        w.commit()
    return Store.open(path)


def time_critic(store, obs: str, steps: int, batch: int) -> dict:
    """samples/s of fit_critic's steady-state steps, and the frames' share of a step."""
    import torch

    from aloe_cli.critic import CriticConfig
    from aloe_cli.critic.data import load_chunk_data
    from aloe_cli.critic.net import CriticNet
    from aloe_cli.critic.train import Batcher, critic_loss
    from aloe_cli.rewards import RewardSpec, resolve_rewards

    cfg = CriticConfig(chunk_size=5, bootstrap="data", steps=steps, batch_size=batch, obs=obs)
    eps = store.episodes
    reward = resolve_rewards(RewardSpec(cfg.reward, None, None), eps, str(store.root))
    t0 = time.perf_counter()
    data = load_chunk_data(store, eps, 5, cfg.gamma, reward, obs)
    load_s = time.perf_counter() - t0
    images = {c: tuple(a.shape[1:3]) for c, a in (data.images or {}).items()}
    net = CriticNet(data.features.shape[1], 4, 5, cfg.ensemble, cfg.hidden, cfg.layers, images=images)
    target = CriticNet(data.features.shape[1], 4, 5, cfg.ensemble, cfg.hidden, cfg.layers, images=images)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)
    batcher = Batcher(data, cfg, None, torch.device("cpu"))
    usable = np.flatnonzero(data.usable)
    t_batch = t_step = 0.0
    for step in range(steps + 3):
        rng = np.random.default_rng(step)
        idx = usable[rng.integers(0, len(usable), batch)]
        a = time.perf_counter()
        b = batcher(idx, rng)
        m = time.perf_counter()
        loss, _ = critic_loss(net, target, b, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        e = time.perf_counter()
        if step >= 3:  # warm-up excluded
            t_batch += m - a
            t_step += e - a
    return {"obs": obs, "samples_per_s": round(steps * batch / t_step, 1), "step_ms": round(1e3 * t_step / steps, 2),
            "batch_share": round(t_batch / t_step, 3), "load_s": round(load_s, 3), "frames": data.num_frames}


def time_decode(store) -> dict:
    from aloe_cli.vision import decode_batch

    raw = store.load_frames(["observation.images.cam"]).columns["observation.images.cam"]
    t0 = time.perf_counter()
    decode_batch(raw)
    dt = time.perf_counter() - t0
    return {"frames": len(raw), "decode_frames_per_s": round(len(raw) / dt, 1),
            "png_bytes_per_frame": round(float(np.mean([len(b) for b in raw])), 1)}


def time_render(frames: int) -> dict:
    try:
        from aloe_cli.robot.sim import make_sim_robot

        bot = make_sim_robot("drawer-open-v3", max_steps=10_000, camera="corner")
        bot.connect()
    except Exception as e:  # no simulator or no GL backend
        return {"error": str(e)}
    try:
        bot.reset()
        t0 = time.perf_counter()
        for _ in range(frames):
            bot.render()
        render = frames / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(frames):
            bot.send_action(np.zeros(4, np.float32))
            bot.get_observation()
        step = frames / (time.perf_counter() - t0)
    finally:
        bot.disconnect()
    return {"render_frames_per_s": round(render, 1), "step_and_render_per_s": round(step, 1),
            "MUJOCO_GL": os.environ.get("MUJOCO_GL")}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--length", type=int, default=50)
    ap.add_argument("--render-frames", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("results/bench_images.json"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        store = synthetic_store(Path(tmp) / "s", args.episodes, args.length)
        rows = [time_critic(store, obs, args.steps, args.batch_size) for obs in ("state", "state,images.cam")]
        decode = time_decode(store)
        read = time_state_read(store, Path(tmp) / "plain")
    render = time_render(args.render_frames)
    result = {"machine": {"cpus": os.cpu_count(), "threads": args.threads, "platform": platform.platform()},
              "critic": rows, "image_over_state": round(rows[1]["samples_per_s"] / rows[0]["samples_per_s"], 3),
              "decode": decode, "state_read": read, "render_64": render}
    print(f"{'obs':<20}{'samples/s':>12}{'step ms':>10}{'batch share':>13}{'load s':>9}")
    for r in rows:
        print(f"{r['obs']:<20}{r['samples_per_s']:>12}{r['step_ms']:>10}{r['batch_share']:>13}{r['load_s']:>9}")
    print(f"decode once at load: {decode['decode_frames_per_s']} frames/s "
          f"({decode['png_bytes_per_frame']} PNG bytes/frame); render 64x64: {render}")
    print(f"state-only read: {read['state_read_s_with_camera']} s with the camera column in the same files, "
          f"{read['state_read_s_without']} s without it ({read['ratio']}x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
