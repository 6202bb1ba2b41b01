"""``sim:<task>``: Meta-World v3 on MuJoCo as a robot (state observations, success from the simulator).

- The environment is made once, at `connect` (``gymnasium.make("Meta-World/MT1", env_name=task,
  seed=S, max_episode_steps=T)``, about 1 s) and reused for every episode. The creation seed
  fixes the sequence of initial states: episode i of a run with seed S always starts the same.
- Observation: ``{"observation.state": (39,) float32, "task": "<task>"}`` (Meta-World's own
  observation: hand position, gripper, object poses, previous frame, goal).
- Action: (4,) in [-1, 1]: end-effector position change (x, y, z; 1 = 1 cm) and gripper effort.
  The driver clips to [-1, 1] and returns the clipped action. Per-step change is not limited by
  default (a simulator cannot be damaged); pass ``max_delta`` to rehearse a real arm's limit.
- Episode end: on success (``info["success"] > 0.5``: done, success True) or after
  ``max_steps`` actions (done, success False). A time-out in the simulator is a labelled
  failure, terminal, not a truncation: the task was attempted for its whole budget and not done.
- ``hold()`` sends nothing: simulated time only advances when an action is sent, so the arm
  holds exactly while the loop waits (for a slow policy, or after a NaN). Holds are counted.
- Control rate: 80 Hz of simulated time (frame_skip 5 x 2.5 ms); ``realtime`` is False, so the
  loop runs as fast as the CPU allows unless ``--fps`` asks for pacing.
- ``report_success=False`` plays a robot that cannot judge its own outcome (the episode then
  runs to the loop's max steps and the outcome comes from ``--label``).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import BadInput, RobotError
from . import EpisodeStatus

# Meta-World's env has a hard cap of 500 steps per episode unless told otherwise.
_METAWORLD_MAX_PATH = 500


def metaworld_tasks() -> list[str]:
    """Names of the Meta-World v3 tasks (e.g. "drawer-open-v3")."""
    import metaworld

    return sorted(metaworld.ALL_V3_ENVIRONMENTS)


class SimRobot:
    """Meta-World v3 task as a `Robot`. See the module doc for the conventions."""

    realtime = False

    def __init__(self, task: str = "drawer-open-v3", seed: int = 0, max_steps: int = 150,
                 max_delta: float | None = None, report_success: bool = True):
        if max_steps < 1:
            raise BadInput(f"must be at least 1, got {max_steps}", field="--max-steps")
        self.task = task
        self.name = f"sim:{task}"
        self.seed = int(seed)
        self.max_steps = int(max_steps)
        self.report_success = bool(report_success)
        self.teleop = None
        self.env = None
        self.fps = 80.0
        self.observation_features = {
            "observation.state": {"dtype": "float32", "shape": [39], "names": None},
            "task": {"dtype": "string", "shape": None, "names": None},
        }
        self.action_features = {
            "action": {"dtype": "float32", "shape": [4], "names": ["dx", "dy", "dz", "gripper"],
                       "low": [-1.0] * 4, "high": [1.0] * 4,
                       "max_delta": None if max_delta is None else [float(max_delta)] * 4},
        }
        self.holds = 0  # times hold() was called
        self.steps = 0  # actions sent in this episode
        self._obs: np.ndarray | None = None
        self._status = EpisodeStatus()

    # ------------------------------------------------------------------ connection
    @property
    def is_connected(self) -> bool:
        return self.env is not None

    def connect(self) -> None:
        if self.env is not None:
            return
        try:
            import gymnasium as gym
            import metaworld  # noqa: F401  (registers the Meta-World/* environments)
        except ImportError as e:
            raise BadInput(f"the simulator needs metaworld, gymnasium and mujoco (pip install 'aloe-cli[sim]'): {e}",
                           self.name, "--robot") from None
        if self.task not in metaworld.ALL_V3_ENVIRONMENTS:
            raise BadInput(f"unknown Meta-World task {self.task!r} (e.g. drawer-open-v3, pick-place-v3; "
                           f"{len(metaworld.ALL_V3_ENVIRONMENTS)} tasks)", self.name, "--robot")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = gym.make("Meta-World/MT1", env_name=self.task, seed=self.seed,
                           max_episode_steps=self.max_steps, disable_env_checker=True)
        u = env.unwrapped
        if self.max_steps > _METAWORLD_MAX_PATH:
            u.max_path_length = self.max_steps
        self.fps = float(1.0 / u.dt)
        self.env = env

    def disconnect(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None

    # ------------------------------------------------------------------ episode
    def _need_env(self):
        if self.env is None:
            raise RobotError(f"{self.name}: not connected")
        return self.env

    def reset(self) -> None:
        obs, _ = self._need_env().reset()
        self._obs = obs.astype(np.float32)
        self.steps = 0
        self._status = EpisodeStatus(done=False, success=None, reward=None, progress=None)

    def get_observation(self) -> dict:
        if self._obs is None:
            raise RobotError(f"{self.name}: get_observation() before reset()")
        return {"observation.state": self._obs.copy(), "task": self.task}

    def send_action(self, action: np.ndarray) -> np.ndarray:
        env = self._need_env()
        if self._status.done:
            raise RobotError(f"{self.name}: the episode is over; reset() first")
        a = np.asarray(action, dtype=np.float32).reshape(-1)
        if a.shape != (4,):
            raise RobotError(f"{self.name}: expected an action of 4 numbers, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise RobotError(f"{self.name}: refusing to send a non-finite action {a.tolist()}")
        sent = np.clip(a, -1.0, 1.0)
        obs, reward, _terminated, _truncated, info = env.step(sent)
        self.steps += 1
        self._obs = obs.astype(np.float32)
        success = bool(info.get("success", 0.0) > 0.5)
        done = (success and self.report_success) or self.steps >= self.max_steps
        outcome = None
        if done and self.report_success:
            outcome = success
        self._status = EpisodeStatus(done=done, success=outcome, reward=float(reward), progress=float(reward))
        return sent

    def hold(self) -> None:
        self.holds += 1

    def status(self) -> EpisodeStatus:
        return self._status


def make_sim_robot(task: str, seed: int = 0, max_steps: int = 150, max_delta: float | None = None,
                   report_success: bool = True, **unused) -> SimRobot:
    """The ``sim:<task>`` driver factory (`load_robot` passes ``seed``, ``max_steps``, ...)."""
    if unused:
        raise BadInput(f"the simulator takes no option {sorted(unused)[0]!r}", f"sim:{task}", "--robot-arg")
    return SimRobot(task, seed=seed, max_steps=max_steps, max_delta=max_delta, report_success=report_success)
