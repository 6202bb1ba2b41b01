"""The lerobot: driver, where the lerobot package installs (it needs Python >= 3.12).

A small arm written against LeRobot's own Robot base class and config registry stands in for
hardware: its send_action limits each joint's move to 0.1 per step (as LeRobot's
max_relative_target does) and returns the goal actually sent, which is what aloe must record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

lerobot = pytest.importorskip("lerobot")

from lerobot.robots import Robot as LeRobotBase, RobotConfig  # noqa: E402

from aloe_cli import schema as S  # noqa: E402
from aloe_cli.robot import load_robot  # noqa: E402
from aloe_cli.rollout import RolloutConfig, run_rollouts  # noqa: E402
from aloe_cli.store import Store  # noqa: E402
from rollout_plugins import constant  # noqa: E402


@RobotConfig.register_subclass("aloe_test_arm")
@dataclass
class AloeTestArmConfig(RobotConfig):
    joints: int = 3


class AloeTestArm(LeRobotBase):
    config_class = AloeTestArmConfig
    name = "aloe_test_arm"

    def __init__(self, config: AloeTestArmConfig):
        super().__init__(config)
        self.config = config
        self.pos = np.zeros(config.joints)
        self._connected = False

    @property
    def observation_features(self) -> dict:
        return {f"j{i}.pos": float for i in range(self.config.joints)}

    @property
    def action_features(self) -> dict:
        return {f"j{i}.pos": float for i in range(self.config.joints)}

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self, calibrate: bool = True) -> None:
        self._connected = True

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def get_observation(self) -> dict:
        return {f"j{i}.pos": float(p) for i, p in enumerate(self.pos)}

    def send_action(self, action: dict) -> dict:
        goal = {k: float(np.clip(v, self.pos[i] - 0.1, self.pos[i] + 0.1)) for i, (k, v) in enumerate(action.items())}
        self.pos = np.array(list(goal.values()))
        return goal

    def disconnect(self) -> None:
        self._connected = False


def test_lerobot_robot_is_driven_and_the_sent_actions_recorded(tmp_path):
    robot = load_robot("lerobot:aloe_test_arm", calibration_dir=str(tmp_path / "calib"), fps=500.0, task="reach")
    assert robot.observation_features["observation.state"]["names"] == ["j0.pos", "j1.pos", "j2.pos"]
    s = run_rollouts(robot, constant(1.0, action_dim=3), tmp_path / "s", RolloutConfig(episodes=1, max_steps=5))
    assert s["episodes"] == 1 and s["unknown"] == 1  # a real robot does not know its outcome
    ep = next(Store.open(tmp_path / "s").iter_episodes())
    np.testing.assert_allclose(ep.action[:, 0], [0.1, 0.2, 0.3, 0.4, 0.5], atol=1e-6)
    np.testing.assert_allclose(ep.state[:, 0], [0.0, 0.1, 0.2, 0.3, 0.4], atol=1e-6)
    assert ep.task == "reach" and not ep.is_terminated
    assert Store.open(tmp_path / "s").features[S.ACTION]["names"] == ["j0.pos", "j1.pos", "j2.pos"]


def test_real_lerobot_types_map_to_aloe_features(tmp_path):
    from aloe_cli.errors import BadInput

    with pytest.raises(BadInput) as e:
        load_robot("lerobot:no_such_arm")
    assert str(e.value).startswith("lerobot:no_such_arm: --robot: unknown LeRobot robot type 'no_such_arm'; known: ")
    assert "so101_follower" in str(e.value)
    try:  # constructing (not connecting) an SO-101 needs its motor SDK: lerobot[feetech]
        robot = load_robot("lerobot:so101_follower", port="/dev/null", id="a", calibration_dir=str(tmp_path / "c"),
                           teleop="so101_leader", teleop_port="/dev/null", teleop_id="b",
                           teleop_calibration_dir=str(tmp_path / "d"))
    except BadInput as e:
        pytest.skip(str(e))
    joints = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    assert robot.observation_features["observation.state"]["names"] == [f"{j}.pos" for j in joints]
    assert robot.action_features["action"]["names"] == [f"{j}.pos" for j in joints]
    assert robot.teleop.action_keys == robot.action_features["action"]["names"] and not robot.is_connected
    with pytest.raises(BadInput) as e:
        load_robot("lerobot:so101_follower", prt="/dev/null")
    assert "the robot config SOFollowerRobotConfig rejected the arguments ['prt']" in str(e.value)
