"""The sim: driver's camera: 64x64 RGB frames rendered offscreen, recorded by `aloe rollout`."""

from __future__ import annotations

import numpy as np
import pytest

from aloe_cli import schema as S
from aloe_cli.errors import BadInput
from aloe_cli.robot.sim import make_sim_robot
from aloe_cli.store import Store
from aloe_cli.vision import load_images

pytest.importorskip("metaworld")

CAM = "observation.images.corner"


@pytest.fixture(scope="module")
def robot():
    bot = make_sim_robot("drawer-open-v3", max_steps=5, camera="true", image_size=32)
    try:
        bot.connect()
    except BadInput as e:  # no EGL/OSMesa on this machine
        pytest.skip(f"no offscreen GL backend works here: {e}")
    yield bot
    bot.disconnect()


def test_observations_carry_camera_frames(robot):
    assert robot.observation_features[CAM]["shape"] == [32, 32, 3]
    robot.reset()
    a = robot.get_observation()[CAM]
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3) and a.std() > 5  # a scene, not a blank frame
    for _ in range(3):
        robot.send_action(np.array([1.0, 1.0, 1.0, 1.0], np.float32))
    b = robot.get_observation()[CAM]
    assert np.abs(a.astype(int) - b.astype(int)).sum() > 0  # the arm moved in the picture


def test_unknown_camera_names_the_cameras():
    bot = make_sim_robot("drawer-open-v3", max_steps=5, camera="nope")
    with pytest.raises(BadInput) as e:
        bot.connect()
    assert str(e.value) == ("sim:drawer-open-v3: camera: unknown camera 'nope' (cameras: topview, corner, "
                            "corner2, corner3, corner4, behindGripper, gripperPOV)")
    assert not bot.is_connected


def test_rollout_records_the_frames(cli, tmp_path, robot):
    store = tmp_path / "s"
    r = cli("rollout", "--policy", "aloe_cli.robot.experts:metaworld_expert", "--episodes", "1", "--max-steps", "6",
            "--into", store, "--robot-arg", "camera=corner")
    assert r.exit_code == 0, r
    s = Store.open(store)
    assert s.image_columns == [CAM] and s.features[CAM]["dtype"] == "image"
    imgs = load_images(s, CAM, s.episodes[S.EPISODE_ID])
    assert imgs.shape == (int(s.episodes[S.LENGTH].sum()), 64, 64, 3) and imgs.std() > 5
