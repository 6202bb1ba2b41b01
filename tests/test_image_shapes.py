"""aloe.json records a camera's frame size ([height, width, 3]) when all its frames share one, else null."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aloe_cli.episode import Episode
from aloe_cli.formats._images import encode_frames
from aloe_cli.store import Store
from conftest import write_aloha_episode

CAM = "observation.images.cam"
NAMES = ["height", "width", "channels"]


def features(path) -> dict:
    return json.loads((path / "aloe.json").read_text())["features"]


def episode(key: str, h: int, w: int, T: int = 3) -> Episode:
    frames = np.random.default_rng(len(key)).integers(0, 255, (T, h, w, 3), dtype=np.uint8)
    return Episode(state=np.zeros((T, 2), np.float32), action=np.zeros((T, 1), np.float32), source_key=key,
                   images={CAM: encode_frames(frames)})


def write(path, *episodes):
    store = Store.open(path, create=True)
    with store.writer("synthetic", "test") as w:
        for ep in episodes:
            w.add(ep)
        w.commit()


def test_one_size_is_recorded_and_a_new_size_sets_null(tmp_path):
    write(tmp_path / "s", episode("a", 12, 16), episode("b", 12, 16))
    assert features(tmp_path / "s")[CAM] == {"dtype": "image", "shape": [12, 16, 3], "names": NAMES}
    write(tmp_path / "s", episode("c", 12, 16))  # appending the same size keeps it
    assert features(tmp_path / "s")[CAM]["shape"] == [12, 16, 3]
    write(tmp_path / "s", episode("d", 16, 12))  # another size: null, never the wrong one
    assert features(tmp_path / "s")[CAM] == {"dtype": "image", "shape": None, "names": None}
    write(tmp_path / "s", episode("e", 12, 16))  # null stays null: the store still holds both sizes
    assert features(tmp_path / "s")[CAM]["shape"] is None


def test_sizes_that_differ_in_one_commit_are_null(tmp_path):
    write(tmp_path / "s", episode("a", 8, 8), episode("b", 8, 9))
    assert features(tmp_path / "s")[CAM]["shape"] is None


def test_an_aborted_append_leaves_the_record(tmp_path):
    write(tmp_path / "s", episode("a", 8, 8))
    store = Store.open(tmp_path / "s")
    with store.writer("synthetic", "test") as w:
        w.add(episode("b", 4, 4))  # never committed
    assert features(tmp_path / "s")[CAM]["shape"] == [8, 8, 3]


def test_ingest_records_the_size_and_image_size_changes_it(cli, tmp_path):
    for seed, name in enumerate("ab"):
        (tmp_path / name).mkdir()
        write_aloha_episode(tmp_path / name / "episode_0.hdf5", T=5, seed=seed, image_hw=(12, 16))
    assert cli("ingest", tmp_path / "s", tmp_path / "a").exit_code == 0
    top = "observation.images.top"
    assert features(tmp_path / "s")[top] == {"dtype": "image", "shape": [12, 16, 3], "names": NAMES}
    # --image-size WxH: the frames stored are H x W.
    assert cli("ingest", tmp_path / "small", tmp_path / "a", "--image-size", "8x6").exit_code == 0
    assert features(tmp_path / "small")[top]["shape"] == [6, 8, 3]
    # Appending frames of another size to a store: null.
    assert cli("ingest", tmp_path / "s", tmp_path / "b", "--image-size", "8x6").exit_code == 0
    assert features(tmp_path / "s")[top] == {"dtype": "image", "shape": None, "names": None}


def test_rollouts_record_the_sim_camera_size(tmp_path):
    pytest.importorskip("metaworld")
    from aloe_cli.errors import BadInput
    from aloe_cli.robot.sim import make_sim_robot
    from aloe_cli.rollout import RolloutConfig, run_rollouts
    from rollout_plugins import constant

    cam = "observation.images.corner"
    for size in (24, 24, 16):
        bot = make_sim_robot("drawer-open-v3", max_steps=3, camera="corner", image_size=size)
        try:
            run_rollouts(bot, constant(0.0), tmp_path / "s", RolloutConfig(episodes=1, max_steps=3))
        except BadInput as e:  # no EGL/OSMesa on this machine
            pytest.skip(f"no offscreen GL backend works here: {e}")
        f = features(tmp_path / "s")[cam]
        if size == 24:
            assert f == {"dtype": "image", "shape": [24, 24, 3], "names": NAMES}
        else:
            assert f == {"dtype": "image", "shape": None, "names": None}
    assert len(Store.open(tmp_path / "s").episodes) == 3
