"""Chunk policies for the benchmarks: Meta-World's scripted expert with noise that depends on the
task phase, and a behaviour that injects one known harmful chunk into an episode.

Both decide from the observation alone (no ``frame_index``): the critic's bootstrap and the
scorer give a policy ``observation.state`` and ``task`` only, and a policy whose behaviour
depends on the time step is not a function of the state the critic sees. The phase is the
distance between the hand (observation[0:3]) and the first object (observation[4:7]), which
is where every Meta-World v3 task puts them.

The radius that separates the phases depends on the task: the expert's hand comes within 0.02 of
drawer-open's handle but only within about 0.08 of button-press's button (its position is the
button's body, not the face the hand presses), where a fixed 0.08 is reached only in the last
chunks, if at all (not in 2 of 10 episodes), and the "expert then noisy" candidate acts as the
expert. `phase_radius` derives it from the expert's closest approach (`closest_approach`, a few
noise-free episodes), so that the switch happens on every task.

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
DEFAULT_RADIUS = 0.08  # hand-object distance of the phase switch where the expert comes well inside it
SWITCH_MARGIN = 1.25  # the radius is at least this times the expert's closest approach in every episode


def hand_object_distance(states: np.ndarray) -> np.ndarray:
    """(B,) Euclidean distance between the hand and the first object, e.g. hand (0, 0, 0) and
    object (0.3, 0.4, 0) -> 0.5."""
    s = np.asarray(states, dtype=np.float64)
    return np.linalg.norm(s[:, HAND] - s[:, OBJECT], axis=1)


def phase_radius(closest, default: float = DEFAULT_RADIUS, margin: float = SWITCH_MARGIN) -> float:
    """The phase candidates' radius on a task, from the expert's closest approach to the object in
    each calibration episode (at chunk starts, where the policy decides): `default` where the hand
    comes well inside it every time, else `margin` x the largest closest approach, so that every
    episode reaches it. (0.017, 0.018) -> 0.08; (0.074, 0.081) -> 1.25 * 0.081 = 0.10125."""
    c = np.asarray(closest, dtype=np.float64)
    if c.size == 0 or not np.isfinite(c).all():
        return float(default)
    return float(max(default, margin * c.max()))


def first_within(frames, distances, radius: float) -> int | None:
    """The first frame (of an episode's chunk starts `frames`) whose hand-object distance is below
    `radius`, where the phase switches; None if none is: ((0, 5, 10), (0.3, 0.1, 0.05), 0.08) -> 10."""
    d = np.asarray(distances, dtype=np.float64)
    hit = np.flatnonzero(d < radius)
    return int(np.asarray(frames)[hit[0]]) if len(hit) else None


class _DistanceLog:
    """Wraps a chunk policy and records, per episode, the frame and hand-object distance of every
    chunk request (`aloe rollout` passes frame_index; frame 0 starts an episode)."""

    def __init__(self, policy):
        self.policy = policy
        self.chunk_size, self.action_dim = policy.chunk_size, policy.action_dim
        self.episodes: list[tuple[list[int], list[float]]] = []

    def sample(self, observations: dict, num_samples: int) -> np.ndarray:
        t = int(np.asarray(observations[S.FRAME_INDEX]).reshape(-1)[0])
        if t == 0 or not self.episodes:
            self.episodes.append(([], []))
        self.episodes[-1][0].append(t)
        self.episodes[-1][1].append(float(hand_object_distance(observations[S.OBS_STATE])[0]))
        return self.policy.sample(observations, num_samples)


def closest_approach(task: str, seed: int, max_steps: int, episodes: int, chunk_size: int = 5) -> dict:
    """Run the noise-free expert `episodes` times (no store; robot seed `seed`) and measure how close
    its hand comes to the first object at its chunk starts. Returns {"closest": per episode,
    "lengths", "frames" and "distances" (per episode, per chunk start)}."""
    from aloe_cli.robot.sim import SimRobot
    from aloe_cli.rollout import RolloutConfig, run_rollouts

    log = _DistanceLog(MetaWorldExpertPolicy(task=task, noise=0.0, chunk_size=chunk_size, seed=seed))
    s = run_rollouts(SimRobot(task, seed=seed, max_steps=max_steps), log, None,
                     RolloutConfig(episodes=episodes, max_steps=max_steps, policy_id="expert", seed=seed))
    return {"closest": [float(min(d)) for _, d in log.episodes],
            "lengths": [int(r["length"]) for r in s["per_episode"]],
            "frames": [f for f, _ in log.episodes], "distances": [d for _, d in log.episodes]}


class PhaseExpert(MetaWorldExpertPolicy):
    """The scripted expert (open-loop chunks) with Gaussian noise only in one phase of the task:
    ``noisy="near"`` (expert approach, noisy manipulation: hand within `radius` of the object)
    or ``noisy="far"`` (noisy approach, expert once the hand is near). The default radius suits
    tasks whose hand reaches the object's position; the OPE benchmark passes `phase_radius`."""

    def __init__(self, task: str | None = None, noise: float = 1.0, noisy: str = "near", radius: float = DEFAULT_RADIUS,
                 chunk_size: int = 5, seed: int = 0, speed: float = 1.0):
        if noisy not in ("near", "far"):
            raise PolicyError(f"must be near or far, got {noisy!r}", field="noisy")
        super().__init__(task=task, noise=noise, chunk_size=chunk_size, seed=seed, speed=speed)
        self.noisy, self.radius = noisy, float(radius)

    def _noise_mask(self, observations: dict, batch: int) -> np.ndarray:
        near = hand_object_distance(observations[S.OBS_STATE]) < self.radius
        return near if self.noisy == "near" else ~near


def phase_expert(task: str | None = None, noise: float = 1.0, noisy: str = "near", radius: float = DEFAULT_RADIUS,
                 chunk_size: int = 5, seed: int = 0, speed: float = 1.0) -> PhaseExpert:
    """Plugin factory (``--policy benchmarks.candidates:phase_expert``)."""
    return PhaseExpert(task=task, noise=noise, noisy=noisy, radius=radius, chunk_size=chunk_size, seed=seed,
                       speed=speed)


# ---------------------------------------------------------------------- the credit-assignment behaviour
def harmful_chunk(expert_action: np.ndarray, state: np.ndarray, chunk_size: int) -> np.ndarray:
    """(H, 4) a chunk that undoes progress: the hand drives at full speed against the expert's
    motion (away from the object where the expert stands still) and the gripper does the
    opposite of the expert's. E.g. expert (0.5, 0, 0, 1) -> every action (-1, 0, 0, -1)."""
    a = np.asarray(expert_action, dtype=np.float64)
    d = -a[:3]
    if np.abs(d).max() < 0.05:  # the expert stands still: move away from the object instead
        s = np.asarray(state, dtype=np.float64)
        d = s[HAND] - s[OBJECT]
    d = d / max(np.abs(d).max(), 1e-9)
    act = np.concatenate([d, [-1.0 if a[3] > 0 else 1.0]]).astype(np.float32)
    return np.repeat(act[None], chunk_size, axis=0)


class HarmfulChunkBehaviour:
    """A logged behaviour for the credit-assignment test: the noisy expert, except that once per
    episode, at the first chunk requested at or after a frame drawn uniformly from
    [first, last), it executes `harmful_chunk` instead. Every injection is recorded in
    `events` as (episode number in this run, frame index).

    It reads the observation's ``frame_index`` (which `aloe rollout` passes) to know when an
    episode starts; it is only ever run as a behaviour, never evaluated by a critic.
    """

    action_dim = 4

    def __init__(self, task: str, noise: float = 0.2, chunk_size: int = 5, seed: int = 0, first: int = 10,
                 last: int = 50):
        self.base = MetaWorldExpertPolicy(task=task, noise=noise, chunk_size=chunk_size, seed=seed)
        self.chunk_size = int(chunk_size)
        self.first, self.last = int(first), int(last)
        self.rng = np.random.default_rng([seed, 99])
        self.episode = -1
        self.events: list[tuple[int, int]] = []
        self._at: int | None = None

    def sample(self, observations: dict, num_samples: int) -> np.ndarray:
        if S.FRAME_INDEX not in observations:
            raise PolicyError("needs the observations' frame_index (run it with aloe rollout)", field=S.FRAME_INDEX)
        t = int(np.asarray(observations[S.FRAME_INDEX]).reshape(-1)[0])
        if t == 0:
            self.episode += 1
            self._at = int(self.rng.integers(self.first, self.last))
        out = self.base.sample(observations, num_samples)
        if self._at is not None and t >= self._at:
            expert = self.base.expert_actions(observations)[0]
            out[0, :] = harmful_chunk(expert, observations[S.OBS_STATE][0], self.chunk_size)
            self.events.append((self.episode, t))
            self._at = None
        return out
