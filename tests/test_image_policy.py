"""The built-in policy with --obs images.<cam>: the action is visible only in the image."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aloe_cli import schema as S
from aloe_cli.episode import Episode
from aloe_cli.formats._images import encode_frames
from aloe_cli.policy import load_policy
from aloe_cli.policy.builtin import PolicyConfig, train_policy
from aloe_cli.store import Store

CAM = "observation.images.cam"


def frames(left: np.ndarray, rng) -> np.ndarray:
    img = np.full((len(left), 24, 24, 3), 30, np.uint8)
    xs = np.where(left, rng.integers(1, 6, len(left)), rng.integers(14, 19, len(left)))
    for i, x in enumerate(xs):
        img[i, 8:14, x:x + 5] = 220
    return img


def test_image_policy_acts_on_what_it_sees(tmp_path):
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    store = Store.open(tmp_path / "s", create=True)
    with store.writer("synthetic", "test") as w:
        for i in range(24):
            left = bool(i % 2)  # the action is +1 when the bar is on the left, -1 on the right
            T = 6
            w.add(Episode(state=np.zeros((T, 2), np.float32), action=np.full((T, 1), 1.0 if left else -1.0, np.float32),
                          source_key=f"ep{i}", success=True, images={CAM: encode_frames(frames(np.full(T, left), rng))},
                          extras={"observation.embed": np.full((T, 3), float(i), np.float32)}))
        w.commit()
    store = Store.open(tmp_path / "s")
    cfg = PolicyConfig(chunk_size=2, hidden=64, steps=300, batch_size=64, eval_every=300, log_every=100,
                       task_embedding=False, obs="state,images.cam,embed", device="cpu")
    train_policy(store, tmp_path / "p", cfg)
    doc = json.loads((tmp_path / "p" / S.POLICY_FILE).read_text())
    assert doc["obs"] == {"spec": "state,embed,images.cam", "extras": {"observation.embed": 3},
                          "images": {CAM: [24, 24]}}
    policy = load_policy(str(tmp_path / "p"), {"deterministic": True})
    left = np.arange(20) % 2 == 0
    img = frames(left, np.random.default_rng(5))
    obs = {S.OBS_STATE: np.zeros((20, 2), np.float32), "observation.embed": np.full((20, 3), 11.0, np.float32),
           CAM: img}
    a = policy.sample(obs, 1)[:, 0, 0, 0]
    assert (np.sign(a) == np.where(left, 1.0, -1.0)).all(), a
    # Encoded frames give the same chunks as decoded ones.
    b = policy.sample({**obs, CAM: encode_frames(img)}, 1)[:, 0, 0, 0]
    np.testing.assert_allclose(a, b, atol=1e-5)


class Spy:
    """Passes every call to the wrapped policy and keeps the observations it was given."""

    def __init__(self, policy):
        self.policy, self.seen = policy, []
        self.chunk_size, self.action_dim = policy.chunk_size, policy.action_dim
        self.observation_keys = policy.observation_keys

    def sample(self, observations, num_samples):
        self.seen.append({k: np.array(v, copy=True) for k, v in observations.items() if k != S.TASK})
        return self.policy.sample(observations, num_samples)


def test_image_policy_drives_the_sim_camera(cli, tmp_path):
    """Record with a camera, train the built-in policy on state + that camera, roll it out: it is
    handed the frames the store records; a robot without the camera is refused before it starts."""
    import torch

    pytest.importorskip("metaworld")
    from aloe_cli.errors import BadInput
    from aloe_cli.robot.experts import metaworld_expert
    from aloe_cli.robot.sim import make_sim_robot
    from aloe_cli.rollout import RolloutConfig, run_rollouts
    from aloe_cli.vision import load_images

    torch.set_num_threads(1)
    cam = "observation.images.corner"
    robot = make_sim_robot("drawer-open-v3", max_steps=20, camera="corner", image_size=24)
    try:
        robot.connect()
    except BadInput as e:  # no EGL/OSMesa on this machine
        pytest.skip(f"no offscreen GL backend works here: {e}")
    try:
        run_rollouts(robot, metaworld_expert("drawer-open-v3", noise=0.5, chunk_size=4), tmp_path / "logs",
                     RolloutConfig(episodes=3, max_steps=20))
        cfg = PolicyConfig(chunk_size=4, hidden=32, steps=10, batch_size=16, eval_every=10, log_every=10,
                           obs="state,images.corner", device="cpu")
        train_policy(Store.open(tmp_path / "logs"), tmp_path / "p", cfg)
        spy = Spy(load_policy(str(tmp_path / "p"), {"deterministic": True}))
        assert cam in spy.observation_keys
        summary = run_rollouts(robot, spy, tmp_path / "evals", RolloutConfig(episodes=1, max_steps=8,
                                                                               execute_steps=2))
    finally:
        robot.disconnect()
    assert summary["frames"] == 8 and len(spy.seen) == 4  # a chunk every 2 steps
    s = Store.open(tmp_path / "evals")
    assert s.image_columns == [cam] and s.features[cam]["shape"] == [24, 24, 3]
    recorded = load_images(s, cam, s.episodes[S.EPISODE_ID])  # (8, 24, 24, 3)
    for i, obs in enumerate(spy.seen):  # the policy saw the very frames the store holds
        assert obs[cam].dtype == np.uint8 and obs[cam].shape == (1, 24, 24, 3)
        np.testing.assert_array_equal(obs[cam][0], recorded[2 * i])
    # ... and they reach its actions: a blank frame gives another chunk.
    obs = {k: v for k, v in spy.seen[0].items() if k != S.FRAME_INDEX}
    blank = {**obs, cam: np.zeros_like(obs[cam])}
    assert not np.allclose(spy.policy.sample(obs, 1), spy.policy.sample(blank, 1))

    # A robot without the camera, or with another frame size: one line, exit 2, nothing recorded.
    args = ("rollout", "--policy", tmp_path / "p", "--into", tmp_path / "none", "--episodes", "1", "--max-steps", "3")
    r = cli(*args)
    assert r.exit_code == 2
    assert r.stderr.strip() == (f"Error: {tmp_path / 'p'}: --policy: the policy reads camera 'corner' but the robot "
                                "sim:drawer-open-v3 has no camera; pass --robot-arg camera=corner")
    r = cli(*args, "--robot-arg", "camera=corner", "--robot-arg", "image_size=32")
    assert r.exit_code == 2
    assert r.stderr.strip() == (f"Error: {tmp_path / 'p'}: --policy: the policy was trained on 24x24 frames of camera "
                                "'corner' but the robot sim:drawer-open-v3 gives 32x32; pass --robot-arg image_size=24")
    assert not (tmp_path / "none").exists()
