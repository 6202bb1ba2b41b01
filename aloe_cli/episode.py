"""The one episode type every reader yields and the store writes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .errors import BadInput
from . import schema as S


@dataclass
class Episode:
    """One episode as arrays. Frames t = 0..T-1; `action[t]` was taken at `state[t]`."""

    state: np.ndarray  # (T, D) float32
    action: np.ndarray  # (T, A) float32
    source_key: str  # where it came from inside the source, e.g. "demo_3" or "episode_12.hdf5"
    source_index: int = 0  # ordinal (or the source's own episode index), matched by --labels
    reward: np.ndarray | None = None  # (T,) float32 logged rewards, if the source has them
    is_intervention: np.ndarray | None = None  # (T,) bool: a human produced action[t]
    success: bool | None = None  # None: outcome unknown (the episode counts as truncated)
    terminated: bool | None = None  # None: derived from `success` (a labelled outcome is terminal)
    task: str | None = None
    policy_id: str | None = None
    timestamp: np.ndarray | None = None  # (T,) seconds from the episode start
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # "observation.x" -> (T, k)
    images: dict[str, list[bytes]] = field(default_factory=dict)  # "observation.images.cam" -> T encoded frames
    episode_id: str | None = None  # set by the store

    def __len__(self) -> int:
        return int(self.action.shape[0])

    @property
    def is_terminated(self) -> bool:
        if self.terminated is not None:
            return bool(self.terminated)
        return self.success is not None

    def content_id(self) -> str:
        """A stable id derived from the episode's content (arrays, key and task)."""
        h = hashlib.sha256()
        h.update(self.source_key.encode())
        h.update((self.task or "").encode())
        for arr in (self.state, self.action):
            a = np.ascontiguousarray(arr, dtype=np.float32)
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()[:16]

    def normalized(self, path: str) -> "Episode":
        """Check shapes and values; return the episode with canonical dtypes.

        Raises BadInput naming `path` and the offending field.
        """
        where = f"{path}[{self.source_key}]"
        state = np.asarray(self.state)
        action = np.asarray(self.action)
        if action.ndim == 1:
            action = action[:, None]
        if state.ndim == 1:
            state = state[:, None]
        if action.ndim != 2:
            raise BadInput(f"expected a (T, A) array, got shape {action.shape}", where, S.ACTION)
        if state.ndim != 2:
            raise BadInput(f"expected a (T, D) array, got shape {state.shape}", where, S.OBS_STATE)
        T = action.shape[0]
        if T == 0:
            raise BadInput("episode is empty (0 frames)", where, S.ACTION)
        if state.shape[0] != T:
            raise BadInput(f"has {state.shape[0]} frames but action has {T}", where, S.OBS_STATE)
        _check_finite(state, where, S.OBS_STATE)
        _check_finite(action, where, S.ACTION)
        reward = None
        if self.reward is not None:
            reward = np.asarray(self.reward, dtype=np.float32).reshape(-1)
            if reward.shape[0] != T:
                raise BadInput(f"has {reward.shape[0]} frames but action has {T}", where, S.REWARD)
            _check_finite(reward, where, S.REWARD)
        interv = np.zeros(T, dtype=bool)
        if self.is_intervention is not None:
            interv = np.asarray(self.is_intervention).reshape(-1).astype(bool)
            if interv.shape[0] != T:
                raise BadInput(f"has {interv.shape[0]} frames but action has {T}", where, S.IS_INTERVENTION)
        ts = self.timestamp
        if ts is not None:
            ts = np.asarray(ts, dtype=np.float32).reshape(-1)
            if ts.shape[0] != T:
                raise BadInput(f"has {ts.shape[0]} frames but action has {T}", where, S.TIMESTAMP)
            _check_finite(ts, where, S.TIMESTAMP)
        extras = {}
        for name, arr in self.extras.items():
            a = np.asarray(arr)
            if a.ndim == 0 or a.shape[0] != T:
                raise BadInput(f"has {a.shape[0] if a.ndim else 0} frames but action has {T}", where, name)
            _check_finite(a, where, name)
            extras[name] = a.reshape(T, -1).astype(np.float32)
        for name, frames in self.images.items():
            if len(frames) != T:
                raise BadInput(f"has {len(frames)} frames but action has {T}", where, name)
        return Episode(
            state=state.astype(np.float32, copy=False),
            action=action.astype(np.float32, copy=False),
            source_key=str(self.source_key),
            source_index=int(self.source_index),
            reward=reward,
            is_intervention=interv,
            success=None if self.success is None else bool(self.success),
            terminated=self.terminated,
            task=self.task,
            policy_id=self.policy_id,
            timestamp=ts,
            extras=extras,
            images=dict(self.images),
            episode_id=self.episode_id,
        )


def first_non_finite(arr: np.ndarray, valid: np.ndarray | None = None) -> tuple[int, ...] | None:
    """The index of the first NaN or inf in `arr` (rows where `valid` is False skipped), or None."""
    bad = ~np.isfinite(arr)
    if valid is not None:
        bad[~valid] = False
    return tuple(int(i) for i in np.argwhere(bad)[0]) if bad.any() else None


def _check_finite(arr: np.ndarray, where: str, field_name: str) -> None:
    if not np.issubdtype(arr.dtype, np.number):
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise BadInput(f"is not numeric (dtype {arr.dtype})", where, field_name) from None
    idx = first_non_finite(arr)
    if idx is not None:
        raise BadInput(f"contains NaN or inf (first at index {idx})", where, field_name)
