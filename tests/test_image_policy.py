"""The built-in policy with --obs images.<cam>: the action is visible only in the image."""

from __future__ import annotations

import json

import numpy as np

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
