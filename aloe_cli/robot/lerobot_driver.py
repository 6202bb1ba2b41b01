"""``lerobot:<robot-type>``: LeRobot's Robot (and Teleoperator) classes behind aloe's `Robot` interface.

Needs the ``lerobot`` package (``pip install lerobot``; it requires Python >= 3.12); aloe
imports it only when this driver is used. Any robot type LeRobot knows works (so100_follower,
so101_follower, koch_follower, bi_so_follower, omx_follower, ..., and third-party
``lerobot_robot_*`` plugins); the ``--robot-arg key=value`` pairs become the robot's config
fields, for example::

    aloe rollout --robot lerobot:so101_follower --robot-arg port=/dev/ttyACM0 \\
        --robot-arg id=my_arm --robot-arg fps=30 --robot-arg task="pick the cube" \\
        --robot-arg teleop=so101_leader --robot-arg teleop_port=/dev/ttyACM1 \\
        --robot-arg 'cameras={"front": {"type": "opencv", "index_or_path": 0, "width": 640, "height": 480, "fps": 30}}' \\
        --policy ws://gpu-box:8000 --intervene keyboard --label prompt --episodes 10 --into store/

Conventions:
- ``observation.state`` is the robot's scalar observation features in LeRobot's order (e.g.
  ``shoulder_pan.pos`` ... ``gripper.pos``); camera features become
  ``observation.images.<camera>`` (H, W, 3) uint8; ``action`` is the scalar action features
  in order. Bounds: none by default (give ``action_low``/``action_high``/``max_delta`` as
  robot args, or ``--max-delta``); LeRobot's own ``max_relative_target`` applies inside
  ``send_action``, whose return value (what was really sent) is what aloe records.
- ``hold()`` sends the current positions as goals where every action key is also an
  observation key (position-controlled arms such as SO-100/101 and Koch); otherwise it sends
  nothing (the motors keep their last goal).
- The robot does not know the outcome: use ``--label prompt``. ``reset()`` does nothing; give
  ``--reset-time`` seconds for a person to reset the scene between episodes.
- ``teleop=<type>`` wraps a LeRobot Teleoperator (leader arm, gamepad, keyboard): with
  ``--intervene keyboard`` a key toggles takeover and the device drives; with
  ``--intervene teleop`` the device's own intervention switch (``get_teleop_events()`` with
  ``is_intervention``, as HIL-SERL's gamepad has) decides.
"""

from __future__ import annotations

import importlib
import json

import numpy as np

from ..errors import BadInput, RobotError
from . import EpisodeStatus

# Modules whose import registers LeRobot's robot / teleoperator config types.
_ROBOT_MODULES = ("so_follower", "koch_follower", "bi_so_follower", "omx_follower", "openarm_follower",
                  "bi_openarm_follower", "hope_jr", "lekiwi", "reachy2", "earthrover_mini_plus",
                  "so100_follower", "so101_follower", "aloha")
_TELEOP_MODULES = ("so_leader", "koch_leader", "bi_so_leader", "omx_leader", "keyboard", "gamepad",
                   "homunculus", "openarm_leader", "so100_leader", "so101_leader")


def _require_lerobot(spec: str):
    try:
        import lerobot  # noqa: F401
    except ImportError as e:
        raise BadInput(f"this driver needs the lerobot package (pip install lerobot; Python >= 3.12): {e}",
                       spec, "--robot") from None


def _register(package: str, modules: tuple[str, ...]) -> None:
    for mod in modules:
        try:
            importlib.import_module(f"{package}.{mod}")
        except Exception:  # a module absent from this lerobot version, or missing its hardware SDK
            pass
    try:
        from lerobot.utils.import_utils import register_third_party_plugins

        register_third_party_plugins()
    except Exception:
        pass


def _make_config(registry, kind: str, fields: dict, spec: str, what: str):
    """A LeRobot config object of type `kind` from plain fields (cameras may be a JSON string)."""
    try:
        cls = registry.get_choice_class(kind)
    except Exception:
        known = sorted(getattr(registry, "get_known_choices", lambda: {})())
        raise BadInput(f"unknown LeRobot {what} type {kind!r}" + (f"; known: {', '.join(known)}" if known else ""),
                       spec, "--robot") from None
    fields = dict(fields)
    if isinstance(fields.get("calibration_dir"), str):
        from pathlib import Path

        fields["calibration_dir"] = Path(fields["calibration_dir"])
    cams = fields.get("cameras")
    if isinstance(cams, str):
        try:
            cams = json.loads(cams)
        except ValueError as e:
            raise BadInput(f"is not JSON: {e}", spec, "cameras") from None
    if isinstance(cams, dict):
        from lerobot.cameras import CameraConfig

        _register("lerobot.cameras", ("opencv", "realsense", "zmq", "reachy2_camera"))
        made = {}
        for name, c in cams.items():
            c = dict(c)
            kind = c.pop("type", "opencv")
            try:
                made[name] = CameraConfig.get_choice_class(kind)(**c)
            except KeyError:
                raise BadInput(f"unknown camera type {kind!r} (is its package installed? e.g. lerobot[opencv])",
                               spec, f"cameras.{name}") from None
            except TypeError as e:
                raise BadInput(f"the camera config rejected {sorted(c)}: {e}", spec, f"cameras.{name}") from None
        fields["cameras"] = made
    try:
        return cls(**fields)
    except TypeError as e:
        raise BadInput(f"the {what} config {cls.__name__} rejected the arguments {sorted(fields)}: {e}",
                       spec, "--robot-arg") from None


def make_lerobot_robot(robot_type: str, seed: int | None = None, max_steps: int | None = None,
                       teleop: str | None = None, fps: float = 30.0, task: str | None = None,
                       action_low: float | None = None, action_high: float | None = None,
                       max_delta: float | None = None, **config) -> "LeRobotRobot":
    """The ``lerobot:<robot-type>`` factory. `config` holds the robot's config fields; keys
    starting with ``teleop_`` go to the teleoperator's config (``teleop_port=/dev/ttyACM1``)."""
    spec = f"lerobot:{robot_type}"
    _require_lerobot(spec)
    from lerobot.robots import RobotConfig, make_robot_from_config

    _register("lerobot.robots", _ROBOT_MODULES)
    teleop_fields = {k[len("teleop_"):]: v for k, v in config.items() if k.startswith("teleop_")}
    robot_fields = {k: v for k, v in config.items() if not k.startswith("teleop_")}
    robot_config = _make_config(RobotConfig, robot_type, robot_fields, spec, "robot")
    try:
        robot = make_robot_from_config(robot_config)
    except ImportError as e:  # the robot's motor SDK, e.g. lerobot[feetech]
        raise BadInput(f"LeRobot cannot make it: {e}", spec, "--robot") from None
    device = None
    if teleop:
        from lerobot.teleoperators import TeleoperatorConfig, make_teleoperator_from_config

        _register("lerobot.teleoperators", _TELEOP_MODULES)
        teleop_config = _make_config(TeleoperatorConfig, teleop, teleop_fields, spec, "teleoperator")
        try:
            device = make_teleoperator_from_config(teleop_config)
        except ImportError as e:
            raise BadInput(f"LeRobot cannot make the teleoperator {teleop!r}: {e}", spec, "--robot-arg") from None
    return LeRobotRobot(robot, teleop=device, fps=fps, task=task, name=spec, action_low=action_low,
                        action_high=action_high, max_delta=max_delta)


def _is_scalar_feature(value) -> bool:
    return value is float or value is int or value is bool


class LeRobotRobot:
    """Wraps a connected-or-not LeRobot ``Robot`` (and optional ``Teleoperator``) as an aloe `Robot`."""

    realtime = True

    def __init__(self, robot, teleop=None, fps: float = 30.0, task: str | None = None, name: str | None = None,
                 action_low: float | None = None, action_high: float | None = None, max_delta: float | None = None):
        self.robot = robot
        self.name = name or f"lerobot:{getattr(robot, 'name', type(robot).__name__)}"
        self.fps = float(fps)
        self.task = task
        obs_f, act_f = robot.observation_features, robot.action_features
        self.state_keys = [k for k, v in obs_f.items() if _is_scalar_feature(v)]
        self.camera_keys = [k for k, v in obs_f.items() if isinstance(v, tuple) and len(v) == 3]
        self.action_keys = [k for k, v in act_f.items() if _is_scalar_feature(v)]
        if not self.state_keys or not self.action_keys:
            raise BadInput(f"the LeRobot robot declares {len(self.state_keys)} scalar observation and "
                           f"{len(self.action_keys)} scalar action features; need at least one of each",
                           self.name, "--robot")
        A = len(self.action_keys)
        self.observation_features = {
            "observation.state": {"dtype": "float32", "shape": [len(self.state_keys)], "names": self.state_keys},
            "task": {"dtype": "string", "shape": None, "names": None},
            **{f"observation.images.{k}": {"dtype": "image", "shape": list(obs_f[k]), "names": None}
               for k in self.camera_keys},
        }
        self.action_features = {"action": {
            "dtype": "float32", "shape": [A], "names": self.action_keys,
            "low": None if action_low is None else [float(action_low)] * A,
            "high": None if action_high is None else [float(action_high)] * A,
            "max_delta": None if max_delta is None else [float(max_delta)] * A}}
        self.teleop = LeRobotTeleop(teleop, self.action_keys) if teleop is not None else None
        self._last: dict | None = None

    @property
    def is_connected(self) -> bool:
        return bool(self.robot.is_connected)

    def connect(self) -> None:
        if not self.robot.is_connected:
            self.robot.connect()

    def disconnect(self) -> None:
        if self.robot.is_connected:
            self.robot.disconnect()

    def reset(self) -> None:
        self._last = None

    def get_observation(self) -> dict:
        raw = self.robot.get_observation()
        self._last = raw
        try:
            obs = {"observation.state": np.asarray([raw[k] for k in self.state_keys], dtype=np.float32),
                   "task": self.task}  # None when unknown, as the store records it and scoring passes it
            for k in self.camera_keys:
                obs[f"observation.images.{k}"] = np.asarray(raw[k], dtype=np.uint8)
        except KeyError as e:
            raise RobotError(f"{self.name}: get_observation() lacks the declared feature {e}") from None
        return obs

    def send_action(self, action: np.ndarray) -> np.ndarray:
        a = np.asarray(action, dtype=np.float32).reshape(-1)
        goal = {k: float(v) for k, v in zip(self.action_keys, a)}
        sent = self.robot.send_action(goal) or goal
        return np.asarray([sent.get(k, goal[k]) for k in self.action_keys], dtype=np.float32)

    def hold(self) -> None:
        last = self._last
        if last is None or not self.robot.is_connected:
            return
        if all(k in last for k in self.action_keys):
            self.robot.send_action({k: float(last[k]) for k in self.action_keys})

    def status(self) -> EpisodeStatus:
        return EpisodeStatus()


class LeRobotTeleop:
    """A LeRobot ``Teleoperator`` (leader arm, gamepad, keyboard) as an aloe `Teleoperator`."""

    def __init__(self, device, action_keys: list[str]):
        self.device = device
        self.action_keys = action_keys

    def connect(self) -> None:
        if not self.device.is_connected:
            self.device.connect()

    def disconnect(self) -> None:
        if self.device.is_connected:
            self.device.disconnect()

    def reset(self) -> None:
        pass

    def wants_control(self, observation: dict, status: EpisodeStatus) -> bool:
        events = getattr(self.device, "get_teleop_events", None)
        if events is None:
            return False
        ev = events() or {}
        for key, value in ev.items():
            if getattr(key, "value", key) == "is_intervention":
                return bool(value)
        return False

    def get_action(self, observation: dict) -> np.ndarray:
        a = self.device.get_action()
        try:
            return np.asarray([a[k] for k in self.action_keys], dtype=np.float32)
        except KeyError as e:
            raise RobotError(f"the teleoperator's action lacks the robot's action key {e}") from None
