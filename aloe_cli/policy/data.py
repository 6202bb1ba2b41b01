"""Chunk windows over episodes concatenated in one array (vectorised, no loop per sample).

A chunk starts at every frame t of an episode and covers frames t..t+H-1. Where fewer than H
frames remain, the window repeats the episode's last frame and `valid` marks the padding
(LeRobot's ``action_is_pad``, negated).
"""

from __future__ import annotations

import numpy as np


def last_frame_of(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(N,) for every frame, the index of its episode's last frame (frames in episode order)."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.repeat(starts + lengths - 1, lengths)


def window_at(idx: np.ndarray, last: np.ndarray, H: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows for chunk starts `idx` (n,) whose episodes end at `last` (n,).

    Returns (index (n, H) clamped to the episode, valid (n, H) bool).
    """
    idx = np.asarray(idx, dtype=np.int64)
    last = np.asarray(last, dtype=np.int64)
    raw = idx[:, None] + np.arange(H, dtype=np.int64)[None, :]
    valid = raw <= last[:, None]
    return np.minimum(raw, last[:, None]), valid


def chunk_windows(starts: np.ndarray, lengths: np.ndarray, H: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows for a chunk starting at every frame of every episode.

    `starts` (E,) and `lengths` (E,) locate each episode in the concatenated frame arrays (as
    `FrameArrays.starts` / `.lengths`). Returns (index (N, H), valid (N, H)) with N =
    lengths.sum(), rows in episode order, so row i is the chunk starting at frame
    ``np.repeat(starts, lengths) + offset``. E.g. one episode of 3 frames, H = 2:
    index [[0, 1], [1, 2], [2, 2]], valid [[T, T], [T, T], [T, F]].
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if H < 1:
        raise ValueError(f"chunk size must be >= 1, got {H}")
    n = int(lengths.sum())
    offsets = np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    idx = np.repeat(starts, lengths) + offsets
    return window_at(idx, last_frame_of(starts, lengths), H)
