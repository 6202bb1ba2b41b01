"""A critic that must look at the camera: the state is constant, the outcome is visible only in the image."""

from __future__ import annotations

import json

import numpy as np

from aloe_cli import schema as S
from aloe_cli.critic import CriticConfig, fit_critic, load_critic
from aloe_cli.episode import Episode
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
