"""Meta-World's scripted experts as chunk policies and as a stand-in for a person taking over.

Chunk policy (``--policy aloe_cli.robot.experts:metaworld_expert``)
-------------------------------------------------------------------
Meta-World ships a scripted expert per task (``metaworld.policies.ENV_POLICY_MAP``); it is a
function of the 39-number observation only. A chunk is produced open loop, as a deployed
chunk policy is executed: the expert's action at the chunk's first observation, repeated H
times, each copy with its own Gaussian noise, clipped to the action bounds [-1, 1]. At H = 1
this is the classic noisy expert. Quality is graded by:

- ``noise``: sigma of the Gaussian added to every action;
- ``epsilon``: probability that a whole chunk is uniform random in [-1, 1] instead;
- ``speed``: scales the expert's hand motion (0.5: a slower expert; the gripper is unchanged);
- ``noise_after`` / ``noise_until``: noise only from frame N on, or only before frame N (expert
  first then noisy, or noisy first then expert). These read the observation's ``frame_index``
  (the store column; `aloe rollout` passes it), and raise a PolicyError where it is missing.

Samples are independent across ``num_samples`` and across calls (one numpy Generator seeded once).

Expert on stall (``--intervene expert-on-stall``)
-------------------------------------------------
`ExpertOnStall` plays a person who takes over when the policy stops making progress:
progress is the simulator's dense reward (Meta-World v3, 0..10, rises as the task advances);
the policy has stalled when the best progress so far has not risen by ``min_progress`` for
``patience`` steps; the expert then drives for ``takeover_steps`` steps (or until success)
and hands back. Its frames are recorded with ``is_intervention = True``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ..errors import PolicyError
from . import EpisodeStatus

FRAME_INDEX = "frame_index"
OBS_STATE = "observation.state"
TASK = "task"


def scripted_expert(task: str):
    """Meta-World's scripted expert for `task` (an object with ``get_action(obs) -> (4,)``)."""
    try:
        from metaworld.policies import ENV_POLICY_MAP
    except ImportError as e:
        raise PolicyError(f"the Meta-World experts need metaworld (pip install 'aloe-cli[sim]'): {e}",
                          field="--policy") from None
    if task not in ENV_POLICY_MAP:
        raise PolicyError(f"no scripted Meta-World expert for task {task!r} (e.g. drawer-open-v3)",
                          field="task")
    return ENV_POLICY_MAP[task]()


def _quiet_action(expert, state: np.ndarray) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():  # "Constant(s) may be too high": the env clips anyway
        warnings.simplefilter("ignore")
        return np.asarray(expert.get_action(np.asarray(state, dtype=np.float64)), dtype=np.float32)


class MetaWorldExpertPolicy:
    """A `ChunkPolicy`: open-loop chunks of Meta-World's scripted expert with graded noise."""

    action_dim = 4

    def __init__(self, task: str | None = None, noise: float = 0.0, chunk_size: int = 5, seed: int = 0,
                 epsilon: float = 0.0, speed: float = 1.0, noise_after: int | None = None,
                 noise_until: int | None = None):
        for name, value in (("noise", noise), ("epsilon", epsilon), ("speed", speed)):
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise PolicyError(f"must be a number, got {value!r}", field=name)
        if not (math.isfinite(noise) and noise >= 0):
            raise PolicyError(f"must be a finite number >= 0, got {noise}", field="noise")
        if not 0.0 <= epsilon <= 1.0:
            raise PolicyError(f"must be in [0, 1], got {epsilon}", field="epsilon")
        if not (math.isfinite(speed) and speed > 0):
            raise PolicyError(f"must be a finite number > 0, got {speed}", field="speed")
        if noise_after is not None and noise_until is not None:
            raise PolicyError("give noise_after or noise_until, not both", field="noise_after")
        for name, value in (("chunk_size", chunk_size), ("noise_after", noise_after), ("noise_until", noise_until)):
            if value is not None and (not isinstance(value, numbers.Integral) or isinstance(value, bool)):
                raise PolicyError(f"must be a whole number, got {value!r}", field=name)
        if chunk_size < 1:
            raise PolicyError(f"must be at least 1, got {chunk_size}", field="chunk_size")
        self.task = task
        self.chunk_size = int(chunk_size)
        self.noise = float(noise)
        self.epsilon = float(epsilon)
        self.speed = float(speed)
        self.noise_after = noise_after
        self.noise_until = noise_until
        self.rng = np.random.default_rng(seed)
        self._experts: dict[str, object] = {}
        if task is not None:
            self._experts[task] = scripted_expert(task)

    def _expert(self, task: str):
        if task not in self._experts:
            self._experts[task] = scripted_expert(task)
        return self._experts[task]

    def expert_actions(self, observations: dict) -> np.ndarray:
        """(B, 4) noise-free expert actions (speed applied, clipped to [-1, 1])."""
        states = np.asarray(observations[OBS_STATE], dtype=np.float32)
        tasks = observations.get(TASK)
        out = np.empty((len(states), 4), dtype=np.float32)
        for b, s in enumerate(states):
            task = self.task or (tasks[b] if tasks is not None else None)
            if task is None:
                raise PolicyError("no task: pass task=... or observations with a 'task' list", field="task")
            out[b] = _quiet_action(self._expert(str(task)), s)
        out[:, :3] *= self.speed
        return np.clip(out, -1.0, 1.0)

    def _noise_mask(self, observations: dict, batch: int) -> np.ndarray:
        """(B,) True where noise applies to the chunk starting at that observation."""
        if self.noise_after is None and self.noise_until is None:
            return np.ones(batch, dtype=bool)
        if FRAME_INDEX not in observations:
            raise PolicyError("noise_after/noise_until need the observations' frame_index", field="noise_after")
        t = np.asarray(observations[FRAME_INDEX]).reshape(-1)
        return t >= self.noise_after if self.noise_after is not None else t < self.noise_until

    def sample(self, observations: dict, num_samples: int) -> np.ndarray:
        base = self.expert_actions(observations)  # (B, 4)
        B, N, H = base.shape[0], int(num_samples), self.chunk_size
        chunks = np.broadcast_to(base[:, None, None, :], (B, N, H, 4)).copy()
        if self.noise > 0:
            sigma = np.where(self._noise_mask(observations, B), self.noise, 0.0).astype(np.float32)
            chunks += sigma[:, None, None, None] * self.rng.standard_normal((B, N, H, 4), dtype=np.float32)
        if self.epsilon > 0:
            rand = self.rng.random((B, N)) < self.epsilon
            if rand.any():
                chunks[rand] = self.rng.uniform(-1.0, 1.0, size=(int(rand.sum()), H, 4)).astype(np.float32)
        return np.clip(chunks, -1.0, 1.0)


def metaworld_expert(task: str | None = None, noise: float = 0.0, chunk_size: int = 5, seed: int = 0,
                     epsilon: float = 0.0, speed: float = 1.0, noise_after: int | None = None,
                     noise_until: int | None = None) -> MetaWorldExpertPolicy:
    """Plugin factory: ``--policy aloe_cli.robot.experts:metaworld_expert --policy-arg noise=0.5``.

    ``task`` None: each observation's own ``task`` picks the expert (multi-task stores).
    """
    return MetaWorldExpertPolicy(task=task, noise=noise, chunk_size=chunk_size, seed=seed, epsilon=epsilon,
                                 speed=speed, noise_after=noise_after, noise_until=noise_until)


# ---------------------------------------------------------------------- takeover on stall

@dataclass
class StallDetector:
    """Stall = the best progress so far has not risen by `min_progress` for `patience` steps.

    `update(p)` returns True once the policy has stalled. Worked example (patience 2,
    min_progress 0.5): progress 1.0, 1.2, 1.4 -> best stays 1.0 (no rise of 0.5), stalled at the
    third update (two updates without progress); 1.0, 1.6, 1.7, 1.8 -> 1.6 sets a new best, so
    the stall comes at 1.8, two updates after it.
    """

    patience: int = 15
    min_progress: float = 0.1
    best: float = -np.inf
    since: int = 0

    def reset(self, progress: float | None = None) -> None:
        self.best = -np.inf if progress is None else float(progress)
        self.since = 0

    def update(self, progress: float | None) -> bool:
        if progress is None:
            return False
        if progress >= self.best + self.min_progress or self.best == -np.inf:
            self.best = float(progress)
            self.since = 0
            return False
        self.since += 1
        return self.since >= self.patience


class ExpertTeleop:
    """Meta-World's scripted expert as a `Teleoperator` that only drives when told to."""

    def __init__(self, task: str | None = None):
        self.task = task
        self._policy = MetaWorldExpertPolicy(task=task, chunk_size=1)

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def wants_control(self, observation: dict, status: EpisodeStatus) -> bool:
        return False

    def get_action(self, observation: dict) -> np.ndarray:
        obs = {OBS_STATE: np.asarray(observation[OBS_STATE])[None], TASK: [observation.get(TASK, self.task)]}
        return self._policy.expert_actions(obs)[0]


class ExpertOnStall(ExpertTeleop):
    """The expert takes over when progress stalls, drives `takeover_steps` steps (or to success), hands back."""

    def __init__(self, task: str | None = None, patience: int = 15, min_progress: float = 0.1,
                 takeover_steps: int = 40):
        super().__init__(task)
        self.detector = StallDetector(patience, min_progress)
        self.takeover_steps = int(takeover_steps)
        self.active = False
        self.driven = 0  # steps driven in the current takeover
        self.takeovers = 0  # takeovers so far in this episode

    def reset(self) -> None:
        self.detector.reset()
        self.active = False
        self.driven = 0
        self.takeovers = 0

    def wants_control(self, observation: dict, status: EpisodeStatus) -> bool:
        if self.active:
            if status.success or self.driven >= self.takeover_steps:
                self.active = False
                self.detector.reset(status.progress)  # the policy gets a fresh `patience` from here
                return False
            else:
                self.driven += 1
                return True
        if self.detector.update(status.progress):
            self.active = True
            self.driven = 1
            self.takeovers += 1
            return True
        return False
