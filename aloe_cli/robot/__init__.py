"""Robots that `aloe rollout` drives: one interface, shaped like LeRobot's ``Robot``.

A driver is any object with the attributes and methods of `Robot` below (a Protocol:
no base class to inherit). Three ship with aloe, chosen by a ``--robot SPEC``:

- ``sim:<metaworld-task>`` (`aloe_cli.robot.sim`): Meta-World v3 on MuJoCo; the default.
- ``remote:ws://host:port`` (`aloe_cli.robot.remote`): a robot served by another process,
  over websocket + msgpack-numpy; ``aloe_cli.robot.remote:serve(robot, host, port)`` serves
  any `Robot` with one call.
- ``lerobot:<robot-type>`` (`aloe_cli.robot.lerobot_driver`): LeRobot's Robot and
  Teleoperator classes (SO-100/101, Koch, ...), where the ``lerobot`` package is installed.

A third-party driver is a module with a factory; ``--robot package.module:factory`` loads it
(the factory gets the same keyword arguments as the built-in drivers, see `load_robot`).

Features use the store's own names, so what a robot declares is what the store holds::

    observation_features = {"observation.state": {"dtype": "float32", "shape": [39], "names": None},
                            "task": {"dtype": "string", "shape": None, "names": None}}
    action_features = {"action": {"dtype": "float32", "shape": [4], "names": [...],
                                  "low": [...], "high": [...], "max_delta": [...] or None}}

``low``/``high`` are the bounds every sent action is clipped to, and ``max_delta`` the
largest change per control step (None: no limit); the rollout loop enforces both before it
calls ``send_action``, and records what ``send_action`` returns (the driver may clip further).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import BadInput

__all__ = ["EpisodeStatus", "Robot", "Teleoperator", "ROBOTS", "load_robot", "action_limits", "state_dim",
           "action_dim"]


@dataclass(frozen=True)
class EpisodeStatus:
    """What a robot knows about the current episode, read after every sent action."""

    done: bool = False  # the robot ended the episode (the simulator: success or its time limit)
    success: bool | None = None  # the outcome when done; None: the robot does not know
    reward: float | None = None  # reward of the last action, where the robot has one (the simulator)
    progress: float | None = None  # a scalar that grows as the task advances (stall detection)


@runtime_checkable
class Robot(Protocol):
    """The driver interface: LeRobot's Robot plus episode control (reset, hold, status)."""

    name: str  # the spec it was made from, e.g. "sim:drawer-open-v3"
    fps: float  # control rate in Hz
    realtime: bool  # True for hardware: the loop paces itself at `fps`; False for a simulator
    task: str | None  # task text recorded with each episode
    observation_features: dict  # {"observation.state": {...}, "task": {...}, "observation.images.<cam>": {...}}
    action_features: dict  # {"action": {"dtype", "shape", "names", "low", "high", "max_delta"}}
    teleop: "Teleoperator | None"  # the robot's own teleoperation device, if it has one

    @property
    def is_connected(self) -> bool: ...

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def reset(self) -> None:
        """Begin a new episode (the simulator resets; hardware may wait for the scene to be reset)."""
        ...

    def get_observation(self) -> dict:
        """{"observation.state": (D,) float32, "task": str, optional "observation.images.<cam>": (H, W, 3) uint8}."""
        ...

    def send_action(self, action: np.ndarray) -> np.ndarray:
        """Send one (A,) action; return the action actually sent (possibly clipped)."""
        ...

    def hold(self) -> None:
        """Stop moving and keep the current pose. Safe to call at any time, repeatedly."""
        ...

    def status(self) -> EpisodeStatus:
        """The episode's status after the last sent action."""
        ...


@runtime_checkable
class Teleoperator(Protocol):
    """A person (or a scripted stand-in) who can take over from the policy.

    The loop asks `wants_control` before every step; while it is True, `get_action`'s actions
    are sent and recorded with ``is_intervention = True``, and the policy resumes with a fresh
    chunk when it turns False.
    """

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def reset(self) -> None:
        """A new episode begins."""
        ...

    def wants_control(self, observation: dict, status: EpisodeStatus) -> bool: ...

    def get_action(self, observation: dict) -> np.ndarray:
        """The teleoperator's (A,) action now (a device ignores `observation`; a scripted expert uses it)."""
        ...


# --robot prefix -> "module:factory"; each factory takes (target, **kw).
ROBOTS: dict[str, str] = {
    "sim": "aloe_cli.robot.sim:make_sim_robot",
    "remote": "aloe_cli.robot.remote:RemoteRobot",
    "lerobot": "aloe_cli.robot.lerobot_driver:make_lerobot_robot",
}


def load_robot(spec: str, **kw) -> Robot:
    """Make a driver from a SPEC: ``sim:<task>``, ``remote:ws://host:port``, ``lerobot:<type>``,
    or ``package.module:factory``. Keyword arguments go to the driver (e.g. ``seed``,
    ``max_steps`` for the simulator; ``port`` for a LeRobot arm). The robot is not connected yet.
    """
    prefix, sep, target = spec.partition(":")
    if not sep or not target:
        raise BadInput(f"expected {', '.join(p + ':...' for p in ROBOTS)} or package.module:factory, got {spec!r}",
                       field="--robot")
    if prefix in ROBOTS:
        module_name, _, attr = ROBOTS[prefix].partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        return factory(target, **kw)
    try:
        module = importlib.import_module(prefix)
    except ImportError as e:
        raise BadInput(f"unknown driver {prefix!r} (choose {', '.join(ROBOTS)} or package.module:factory): {e}",
                       spec, "--robot") from None
    factory = getattr(module, target, None)
    if not callable(factory):
        raise BadInput(f"module {prefix!r} has no factory {target!r}", spec, "--robot")
    return factory(**kw)


def state_dim(robot: Robot) -> int:
    return int(robot.observation_features["observation.state"]["shape"][0])


def action_dim(robot: Robot) -> int:
    return int(robot.action_features["action"]["shape"][0])


def action_limits(robot: Robot):
    """The driver's declared safety limits as a `SafetyLimits`."""
    from .safety import SafetyLimits

    f = robot.action_features["action"]
    a = int(f["shape"][0])

    def vec(key, default):
        v = f.get(key)
        if v is None:
            return None if default is None else np.full(a, default, dtype=np.float32)
        return np.broadcast_to(np.asarray(v, dtype=np.float32), (a,)).copy()

    low, high, max_delta = vec("low", -np.inf), vec("high", np.inf), vec("max_delta", None)
    where = f"{getattr(robot, 'name', 'robot')}: action_features"
    if np.isnan(low).any() or np.isnan(high).any() or (low > high).any():
        raise BadInput(f"expected low <= high in every dimension, got low {low.tolist()}, high {high.tolist()}",
                       where, "low/high")
    if max_delta is not None and not (max_delta > 0).all():  # NaN would pass NaN on, a negative move backwards
        raise BadInput(f"must be > 0 in every dimension (inf: no limit), got {max_delta.tolist()}", where,
                       "max_delta")
    return SafetyLimits(low=low, high=high, max_delta=max_delta)
