"""Chunk policies for the benchmarks: Meta-World's scripted expert with noise that depends on the
task phase, and a behaviour that injects one known harmful chunk into an episode.

Both decide from the observation alone (no ``frame_index``): the critic's bootstrap and the
scorer give a policy ``observation.state`` and ``task`` only, and a policy whose behaviour
depends on the time step is not a function of the state the critic sees. The phase is the
distance between the hand (observation[0:3]) and the first object (observation[4:7]), which
is where every Meta-World v3 task puts them.

    --policy benchmarks.candidates:phase_expert --policy-arg task=drawer-open-v3 \
        --policy-arg noise=1.5 --policy-arg noisy=near
"""

from __future__ import annotations

import numpy as np

from aloe_cli import schema as S
from aloe_cli.errors import PolicyError
from aloe_cli.robot.experts import MetaWorldExpertPolicy

HAND = slice(0, 3)  # end-effector position in a Meta-World v3 observation
OBJECT = slice(4, 7)  # first object's position


def hand_object_distance(states: np.ndarray) -> np.ndarray:
    """(B,) Euclidean distance between the hand and the first object, e.g. hand (0, 0, 0) and
    object (0.3, 0.4, 0) -> 0.5."""
    s = np.asarray(states, dtype=np.float64)
    return np.linalg.norm(s[:, HAND] - s[:, OBJECT], axis=1)


class PhaseExpert(MetaWorldExpertPolicy):
    """The scripted expert (open-loop chunks) with Gaussian noise only in one phase of the task:
    ``noisy="near"`` (expert approach, noisy manipulation: hand within `radius` of the object)
    or ``noisy="far"`` (noisy approach, expert once the hand is near)."""

    def __init__(self, task: str | None = None, noise: float = 1.0, noisy: str = "near", radius: float = 0.08,
                 chunk_size: int = 5, seed: int = 0, speed: float = 1.0):
        if noisy not in ("near", "far"):
            raise PolicyError(f"must be near or far, got {noisy!r}", field="noisy")
        super().__init__(task=task, noise=noise, chunk_size=chunk_size, seed=seed, speed=speed)
        self.noisy, self.radius = noisy, float(radius)

    def _noise_mask(self, observations: dict, batch: int) -> np.ndarray:
        near = hand_object_distance(observations[S.OBS_STATE]) < self.radius
        return near if self.noisy == "near" else ~near


def phase_expert(task: str | None = None, noise: float = 1.0, noisy: str = "near", radius: float = 0.08,
                 chunk_size: int = 5, seed: int = 0, speed: float = 1.0) -> PhaseExpert:
    """Plugin factory (``--policy benchmarks.candidates:phase_expert``)."""
    return PhaseExpert(task=task, noise=noise, noisy=noisy, radius=radius, chunk_size=chunk_size, seed=seed,
                       speed=speed)
