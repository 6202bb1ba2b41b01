"""A critic that must look at the camera: the state is constant, the outcome is visible only in the image."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aloe_cli import schema as S
from aloe_cli.critic import CriticConfig, fit_critic, load_critic
from aloe_cli.episode import Episode
from aloe_cli.errors import BadInput
from aloe_cli.formats._images import encode_frames
from aloe_cli.store import Store

CAM = "observation.images.cam"
SIZE = 32


def square_frames(left: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One frame per entry: a randomly coloured 6x6 square on the left (x in 2..8) or right (18..24) half."""
    n = len(left)
    img = np.full((n, SIZE, SIZE, 3), 40, dtype=np.uint8)
    xs = np.where(left, rng.integers(2, 9, n), rng.integers(18, 25, n))
    ys = rng.integers(2, SIZE - 8, n)
    colours = rng.integers(120, 256, (n, 3))
    for i in range(n):
        img[i, ys[i]:ys[i] + 6, xs[i]:xs[i] + 6] = colours[i]
    return img


def left_right_store(path, episodes=40, T=8, seed=0):
    """Success iff the square is on the left; the state and the actions are the same everywhere."""
    rng = np.random.default_rng(seed)
    store = Store.open(path, create=True)
    with store.writer("synthetic", "test") as w:
        for i in range(episodes):
            left = bool(i % 2)
            w.add(Episode(state=np.zeros((T, 2), np.float32), action=np.zeros((T, 1), np.float32),
                          source_key=f"ep{i}", success=left,
                          images={CAM: encode_frames(square_frames(np.full(T, left), rng))}))
        w.commit()
    return Store.open(path)


def fit(store, out, obs):
    cfg = CriticConfig(chunk_size=2, bootstrap="mc", reward="sparse", gamma=1.0, steps=250, batch_size=64,
                       hidden=64, ensemble=1, val_every=250, log_every=50, checkpoint_every=10_000, obs=obs,
                       val_fraction=0.1)
    return fit_critic(store, out, cfg)


def test_image_critic_sees_what_the_state_hides(tmp_path):
    import torch

    torch.set_num_threads(1)
    store = left_right_store(tmp_path / "s")
    fit(store, tmp_path / "img", "state,images.cam")
    fit(store, tmp_path / "state", "state")
    meta = json.loads((tmp_path / "img" / "critic.json").read_text())
    assert meta["images"] == {CAM: [SIZE, SIZE]} and meta["config"]["obs"] == "state,images.cam"

    # Fresh frames the critics never saw: the truth is 1 on the left, 0 on the right.
    rng = np.random.default_rng(123)
    left = np.arange(64) % 2 == 0
    frames = square_frames(left, rng)
    state, chunks = np.zeros((64, 2), np.float32), np.zeros((64, 1, 2, 1), np.float32)
    q_img = load_critic(tmp_path / "img").q(state, chunks, {CAM: frames})[:, 0]
    q_state = load_critic(tmp_path / "state").q(state, chunks)[:, 0]
    corr = np.corrcoef(q_img, left.astype(float))[0, 1]
    assert corr > 0.9, corr
    assert q_img[left].min() > q_img[~left].max()  # every left frame valued above every right frame
    assert abs(q_img[left].mean() - 1.0) < 0.25 and abs(q_img[~left].mean()) < 0.25
    assert np.ptp(q_state) < 1e-4  # the state-only critic cannot tell them apart: one value for all
    # Encoded bytes work as well as decoded frames.
    q_bytes = load_critic(tmp_path / "img").q(state[:4], chunks[:4], {CAM: encode_frames(frames[:4])})[:, 0]
    np.testing.assert_allclose(q_bytes, q_img[:4], rtol=1e-5, atol=1e-6)


def test_scoring_passes_the_frames(tmp_path):
    from aloe_cli.scoring import score_chunks

    store = left_right_store(tmp_path / "s", episodes=6, T=5)
    fit(store, tmp_path / "c", "images.cam")
    df = score_chunks(store, load_critic(tmp_path / "c"))
    assert len(df) == 30 and np.isfinite(df[S.Q]).all()


def test_obs_naming_a_missing_camera_is_bad_input(cli, tmp_path):
    store = left_right_store(tmp_path / "s", episodes=4, T=5)
    r = cli("fit-critic", store.root, "--out", tmp_path / "c", "--bootstrap", "mc", "--chunk-size", "2",
            "--obs", "state,images.wrist")
    assert r.exit_code == 2
    assert r.stderr.strip() == f"Error: {store.root}: --obs: the store has no camera 'wrist' (cameras: images.cam)"
    assert not (tmp_path / "c").exists()


def image_config(**kw) -> CriticConfig:
    """A tiny TD fit (the target networks see the next frames too) on the left/right camera store."""
    return CriticConfig(**{**dict(chunk_size=2, bootstrap="data", reward="sparse", gamma=0.9, steps=60,
                                  batch_size=32, hidden=32, ensemble=2, val_every=30, log_every=10,
                                  checkpoint_every=20, obs="state,images.cam", device="cpu"), **kw})


def test_resume_with_images_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    """Stopped after step 50 (last checkpoint at 40) and resumed: the same weights, bit for bit, and the
    same metric lines: the random shifts of the frames are drawn from (seed, rank, step) too."""
    import torch
    from safetensors.numpy import load_file

    from aloe_cli.critic import train

    torch.set_num_threads(1)
    store = left_right_store(tmp_path / "s", episodes=8, T=8)
    fit_critic(store, tmp_path / "whole", image_config())

    class Stop(Exception):
        pass

    def stop_after_50(step: int) -> None:
        if step == 50:
            raise Stop

    monkeypatch.setattr(train, "_crashpoint", stop_after_50)
    with pytest.raises(Stop):
        fit_critic(store, tmp_path / "cut", image_config())
    monkeypatch.undo()
    assert not (tmp_path / "cut" / "critic.json").exists()
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == 40
    fit_critic(store, tmp_path / "cut", image_config(), resume=True)

    a, b = load_file(str(tmp_path / "whole" / "critic.safetensors")), load_file(
        str(tmp_path / "cut" / "critic.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("vision.") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    strip = lambda p: [{k: v for k, v in json.loads(x).items() if not k.startswith("time/")}  # noqa: E731
                       for x in p.read_text().splitlines()]
    assert strip(tmp_path / "whole" / "metrics.jsonl") == strip(tmp_path / "cut" / "metrics.jsonl")
    assert [x["step"] for x in strip(tmp_path / "cut" / "metrics.jsonl")] == [10, 20, 30, 40, 50, 60]
    # Resuming without the camera is refused: the checkpoint was made with other inputs.
    with pytest.raises(BadInput, match="the checkpoint was made with a different obs"):
        fit_critic(store, tmp_path / "cut", image_config(obs="state"), resume=True)


def test_torchrun_two_gloo_processes_with_images(tmp_path):
    """DDP on CPU (2 processes, gloo) with a camera: each process decodes the frames and trains its
    share; rank 0 writes a critic that loads and values frames."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    store = left_right_store(tmp_path / "s", episodes=8, T=8)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "aloe_cli", "fit-critic", str(store.root), "--out", str(tmp_path / "ddp"), "--bootstrap", "data",
           "--chunk-size", "2", "--reward", "sparse", "--gamma", "0.9", "--steps", "20", "--batch-size", "32",
           "--hidden", "32", "--obs", "state,images.cam", "--device", "cpu", "--json"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["steps"] == 20  # only rank 0 prints
    meta = json.loads((tmp_path / "ddp" / "critic.json").read_text())
    assert meta["world_size"] == 2 and meta["images"] == {CAM: [SIZE, SIZE]}
    critic = load_critic(tmp_path / "ddp")
    frames = square_frames(np.arange(4) % 2 == 0, np.random.default_rng(1))
    q = critic.q(np.zeros((4, 2), np.float32), np.zeros((4, 1, 2, 1), np.float32), {CAM: frames})
    assert q.shape == (4, 1) and np.isfinite(q).all()
