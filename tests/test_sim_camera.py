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


def _centroid(frame: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(row, column) of the mask's centre as fractions of the frame's height and width."""
    rows, cols = np.nonzero(mask)
    assert len(rows) > 20, "too few pixels to locate"
    return rows.mean() / frame.shape[0], cols.mean() / frame.shape[1]


def _arm_and_table(frame: np.ndarray):
    """Masks of the red Sawyer arm and of the brown wooden table top."""
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    arm = (r > 110) & (g < 70) & (b < 70)
    table = (r > g + 10) & (g > b + 5) & (r < 200) & (r - b > 30) & ~arm
    return arm, table


@pytest.mark.parametrize("camera", ["corner", "topview"])
def test_frames_are_upright_and_not_mirrored(camera):
    """Pins the orientation: corner looks from the front-left, so the table lies below the middle and
    the arm stands on the right (MuJoCo renders corner upside down: table above, arm on the left);
    topview looks down with the arm at the front, the bottom of the frame."""
    bot = make_sim_robot("drawer-open-v3", max_steps=5, camera=camera, image_size=64)
    try:
        bot.connect()
    except BadInput as e:
        pytest.skip(f"no offscreen GL backend works here: {e}")
    try:
        bot.reset()
        frame = bot.get_observation()[f"observation.images.{camera}"]
        assert bot.rotate_180 == (camera == "corner")
    finally:
        bot.disconnect()
    arm, table = _arm_and_table(frame)
    if camera == "corner":
        assert _centroid(frame, table)[0] > 0.6  # upright: the table top is in the lower part
        assert _centroid(frame, arm)[1] > 0.6  # not mirrored: the arm is on the right
    else:
        assert _centroid(frame, arm)[0] > 0.6  # the arm at the front edge of the table, at the bottom
        assert _centroid(frame, table)[0] < 0.5


def test_only_the_corner_cameras_are_turned():
    import gymnasium as gym

    from aloe_cli.robot.sim import upside_down

    env = gym.make("Meta-World/MT1", env_name="drawer-open-v3", seed=0, disable_env_checker=True)
    m = env.unwrapped.model
    turned = {m.camera(i).name for i in range(m.ncam) if upside_down(m, m.camera(i).name)}
    env.close()
    assert turned == {"corner", "corner2", "corner3", "corner4"}
