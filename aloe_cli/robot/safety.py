"""Safety for every action the rollout loop sends: pure functions, tested against hand numbers.

Order, per control step: a non-finite action is never sent (the robot holds instead); a
finite one is clipped to the driver's bounds, then its change from the previously sent
action is limited to ``max_delta`` per dimension, then clipped again (so the result is in
bounds even where the previous action was not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SafetyLimits:
    """Per-dimension limits on the action vector."""

    low: np.ndarray  # (A,) lower bounds (-inf: none)
    high: np.ndarray  # (A,) upper bounds (+inf: none)
    max_delta: np.ndarray | None = None  # (A,) largest change from the previous sent action; None: no limit


def clip_to_bounds(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Clip each dimension into [low, high]."""
    return np.minimum(np.maximum(action, low), high)


def limit_rate(action: np.ndarray, previous: np.ndarray | None, max_delta: np.ndarray | None) -> np.ndarray:
    """Move from `previous` toward `action` by at most `max_delta` per dimension.

    With no previous action (the first step of an episode) or no limit, `action` is returned.
    """
    if previous is None or max_delta is None:
        return action
    return previous + np.clip(action - previous, -max_delta, max_delta)


def is_sendable(action: np.ndarray) -> bool:
    """True when every number is finite: NaN or inf must never reach a robot."""
    return bool(np.isfinite(action).all())


def make_safe(action: np.ndarray, previous: np.ndarray | None,
              limits: SafetyLimits) -> tuple[np.ndarray | None, bool, bool]:
    """The action to send, or None to hold; plus whether it was clipped and whether rate-limited.

    >>> lim = SafetyLimits(np.array([-1.0]), np.array([1.0]), np.array([0.5]))
    >>> make_safe(np.array([3.0]), np.array([0.0]), lim)
    (array([0.5], dtype=float32), True, True)
    """
    action = np.asarray(action, dtype=np.float32).reshape(-1)
    if not is_sendable(action):
        return None, False, False
    clipped = clip_to_bounds(action, limits.low, limits.high)
    was_clipped = bool((clipped != action).any())
    limited = limit_rate(clipped, previous, limits.max_delta)
    was_limited = bool((limited != clipped).any())
    out = clip_to_bounds(limited, limits.low, limits.high).astype(np.float32)
    return out, was_clipped, was_limited
