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
- Camera (``--robot-arg camera=corner``, or ``camera=true`` for ``corner``; ``image_size=64``):
  every observation also carries ``observation.images.<camera>``, a uint8 (S, S, 3) RGB frame
  rendered offscreen with ``mujoco.Renderer`` straight on the env's model and data, shadows,
  reflections and multisampling off (about 45 frames/s at 64x64 on a 2-core CPU with
  ``MUJOCO_GL=egl``; the default quality renders ~8 frames/s). ``MUJOCO_GL`` defaults to
  ``egl`` when unset; set ``MUJOCO_GL=osmesa`` where EGL is missing. Cameras of Meta-World:
  topview, corner, corner2, corner3, corner4, behindGripper, gripperPOV. `aloe rollout` stores
  the frames as PNG in the camera's column.
- Orientation: frames are upright (the table below the horizon, the arm standing on its base)
  and not mirrored. Meta-World's corner, corner2, corner3 and corner4 cameras are declared
  rolled by 180 degrees (their image "up" axis points below the horizon), so MuJoCo renders
  them upside down; the driver turns such frames by 180 degrees, once, as they are rendered
  (a rotation, not a flip: a flip would mirror the scene). It applies to any camera fixed to
  the world whose up axis points down (`upside_down`); topview and the gripper cameras are kept
  as MuJoCo renders them. Stores recorded before this fix hold the corner cameras upside down.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .. import schema as S
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
                 max_delta: float | None = None, report_success: bool = True, camera: str | None = None,
                 image_size: int = 64):
        if max_steps < 1:
            raise BadInput(f"must be at least 1, got {max_steps}", field="--max-steps")
        self.task = task
        self.name = f"sim:{task}"
        if max_delta is not None and (isinstance(max_delta, bool) or not isinstance(max_delta, (int, float))
                                      or not max_delta > 0):
            raise BadInput(f"must be a number > 0, got {max_delta!r}", self.name, "max_delta")
        if not isinstance(report_success, bool):
            raise BadInput(f"must be true or false, got {report_success!r}", self.name, "report_success")
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
        if camera is not None:
            if int(image_size) < 8:
                raise BadInput(f"must be at least 8, got {image_size}", self.name, "image_size")
            self.observation_features[self.image_key(camera)] = {
                "dtype": "image", "shape": [int(image_size), int(image_size), 3], "names": list(S.IMAGE_NAMES)}
        self.camera = camera
        self.rotate_180 = False  # set at connect: the camera renders upside down (see the module doc)
        self.image_size = int(image_size)
        self._renderer = None
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
        if self.camera is not None:
            import mujoco

            if mujoco.mj_name2id(u.model, mujoco.mjtObj.mjOBJ_CAMERA, self.camera) < 0:
                names = ", ".join(u.model.camera(i).name for i in range(u.model.ncam))
                self.disconnect()
                raise BadInput(f"unknown camera {self.camera!r} (cameras: {names})", self.name, "camera")
            self.rotate_180 = upside_down(u.model, self.camera)
            try:
                self._renderer = _make_renderer(u.model, self.camera, self.image_size)
            except Exception as e:
                self.disconnect()
                raise BadInput(f"cannot render camera {self.camera!r} with MUJOCO_GL={os.environ.get('MUJOCO_GL')}: "
                               f"{type(e).__name__}: {e}", self.name, "camera") from None

    @staticmethod
    def image_key(camera: str) -> str:
        return f"observation.images.{camera}"

    def render(self) -> np.ndarray:
        """The current frame of the camera: uint8 (S, S, 3)."""
        import mujoco

        r = self._renderer
        r.update_scene(self._need_env().unwrapped.data, camera=self.camera)
        r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        frame = r.render()
        return np.ascontiguousarray(frame[::-1, ::-1]) if self.rotate_180 else frame.copy()

    def disconnect(self) -> None:
        if self._renderer is not None:
            self._renderer.close()  # before the env: EGL contexts freed at exit raise noisy errors
            self._renderer = None
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
        obs = {"observation.state": self._obs.copy(), "task": self.task}
        if self._renderer is not None:
            obs[self.image_key(self.camera)] = self.render()
        return obs

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


def upside_down(model, camera: str) -> bool:
    """True for a camera fixed to the world whose image "up" axis points below the horizon: MuJoCo
    renders it upside down (Meta-World's corner, corner2, corner3, corner4)."""
    import mujoco

    cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    if cam < 0 or model.cam_bodyid[cam] != 0 or model.cam_mode[cam] != mujoco.mjtCamLight.mjCAMLIGHT_FIXED:
        return False
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, model.cam_quat[cam])
    return bool(rot.reshape(3, 3)[2, 1] < 0)  # world z of the camera's y (image up) axis


def _make_renderer(model, camera: str, size: int):
    """A small offscreen renderer on the env's own model: shadows/reflections/multisampling off."""
    backend = os.environ.setdefault("MUJOCO_GL", "egl").lower()
    import mujoco
    from mujoco import gl_context

    # mujoco picks its GL backend when first imported (metaworld imports it before MUJOCO_GL may be
    # set): point the renderer at the backend asked for, which needs no display.
    if backend == "egl":
        from mujoco.egl import GLContext
        gl_context.GLContext = GLContext
    elif backend == "osmesa":
        from mujoco.osmesa import GLContext
        gl_context.GLContext = GLContext

    model.vis.quality.shadowsize = 0
    model.vis.quality.offsamples = 0
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), size)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), size)
    return mujoco.Renderer(model, size, size)


def make_sim_robot(task: str, seed: int = 0, max_steps: int = 150, max_delta: float | None = None,
                   report_success: bool = True, camera: str | bool | None = None, image_size: int = 64,
                   **unused) -> SimRobot:
    """The ``sim:<task>`` driver factory (`load_robot` passes ``seed``, ``max_steps``, ...).
    ``camera=<name>`` (or ``true`` for ``corner``) adds 64x64 camera frames (``image_size``)."""
    if unused:
        raise BadInput(f"the simulator takes no option {sorted(unused)[0]!r}", f"sim:{task}", "--robot-arg")
    if camera is True or (isinstance(camera, str) and camera.lower() in ("true", "yes", "1")):
        camera = "corner"
    elif camera is False or (isinstance(camera, str) and camera.lower() in ("false", "no", "0", "none", "")):
        camera = None
    if not isinstance(image_size, (int, np.integer)) or isinstance(image_size, bool):
        raise BadInput(f"must be an integer, got {image_size!r}", f"sim:{task}", "image_size")
    return SimRobot(task, seed=seed, max_steps=max_steps, max_delta=max_delta, report_success=report_success,
                    camera=None if camera is None else str(camera), image_size=image_size)
