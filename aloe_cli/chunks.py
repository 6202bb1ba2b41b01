"""Chunk and TD arithmetic: small pure vectorised functions over concatenated episodes.

Frames of many episodes lie end to end in flat arrays (as `Store.load_frames` returns them);
`idx` below is a *global* frame index into those arrays and `end` the global index one past
the last frame of that frame's episode. A chunk starting at frame t of an episode of length T:

- window: frames t .. t+H-1, clamped to the last frame (padding repeats the last action);
  `valid[k]` is False on the padding (LeRobot's ``action_is_pad`` negated);
- h = min(H, T - t) real actions; chunk reward R_t = sum_{k<h} gamma^k r_{t+k};
- bootstrap frame t + H with mask m_t = 1 when it exists inside the episode, else 0.

Truncated episodes (no outcome; METHOD.md gives two options): a chunk whose bootstrap frame
t + H is not in the episode has no next observation to bootstrap from, so it is **not used as
a TD target** (`td_usable` is False). It is still scored. A terminated episode's last chunks
have m = 0 and target R_t alone.

No Python loop runs per sample: windows are ``idx[:, None] + arange(H)[None, :]`` and the
discounted return-to-go is a log-depth doubling scan (log2 of the longest episode steps, each
vectorised over all frames), which stays exact for long episodes where ``gamma ** -t`` tricks
lose precision. Memory grows with frames, never with frames x H, except for the (B, H)
windows of one batch.
"""

from __future__ import annotations

import numpy as np


def episode_bounds(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends): the global index of each episode's first frame and one past its last."""
    lengths = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    return ends - lengths, ends


def frame_episode_end(lengths: np.ndarray) -> np.ndarray:
    """(N,) for every frame, the global index one past the last frame of its episode."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.repeat(episode_bounds(lengths)[1], lengths)


def frame_time(lengths: np.ndarray) -> np.ndarray:
    """(N,) every frame's index t inside its own episode."""
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = episode_bounds(lengths)[0]
    return np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)


def chunk_windows(idx: np.ndarray, end: np.ndarray, H: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, H) frame indices of the chunks starting at `idx`, and their (B, H) `valid` mask.

    Indices past the episode's last frame are clamped to it (pad with the last action).
    """
    idx = np.asarray(idx, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    raw = idx[:, None] + np.arange(H, dtype=np.int64)[None, :]
    valid = raw < end[:, None]
    return np.minimum(raw, end[:, None] - 1), valid


def chunk_lengths(idx: np.ndarray, end: np.ndarray, H: int) -> np.ndarray:
    """(B,) h = min(H, T - t): the real (unpadded) actions in each chunk."""
    return np.minimum(H, np.asarray(end, dtype=np.int64) - np.asarray(idx, dtype=np.int64))


def discounted_return_to_go(rewards: np.ndarray, lengths: np.ndarray, gamma: float) -> np.ndarray:
    """(N,) float64 G_t = sum_{k >= 0} gamma^k r_{t+k}, summed to the end of each episode.

    Doubling scan: after the pass with offset d, G[i] holds the sum over k < 2d (cut at the
    episode end). ceil(log2(max T)) passes.
    """
    r = np.asarray(rewards, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    end = frame_episode_end(lengths)
    G = r.copy()
    i = np.arange(r.shape[0], dtype=np.int64)
    d, g = 1, float(gamma)
    longest = int(lengths.max()) if lengths.size else 0
    while d < longest:
        j = i + d
        ok = j < end
        G = G + np.where(ok, g * G[np.minimum(j, r.shape[0] - 1)], 0.0)
        d, g = 2 * d, g * g
    return G


def chunk_rewards(rtg: np.ndarray, idx: np.ndarray, end: np.ndarray, H: int, gamma: float) -> np.ndarray:
    """(B,) R_t = sum_{k<h} gamma^k r_{t+k}, from the return-to-go: R_t = G_t - gamma^h G_{t+h}
    (G at the episode end is 0). One subtraction of like-sized numbers, no loop over k."""
    idx = np.asarray(idx, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    h = chunk_lengths(idx, end, H)
    nxt = idx + h
    g_next = np.where(nxt < end, rtg[np.minimum(nxt, len(rtg) - 1)], 0.0)
    return rtg[idx] - np.power(float(gamma), h) * g_next


def bootstrap_frames(idx: np.ndarray, end: np.ndarray, H: int) -> tuple[np.ndarray, np.ndarray]:
    """(boot, m): the bootstrap frame t + H (clamped to the last frame) and the (B,) float mask
    m = 1 where that frame exists inside the episode, else 0."""
    idx = np.asarray(idx, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    raw = idx + H
    return np.minimum(raw, end - 1), (raw < end).astype(np.float32)


def td_usable(idx: np.ndarray, end: np.ndarray, terminated: np.ndarray, H: int) -> np.ndarray:
    """(B,) bool: the chunk can be a TD target. False only where the episode was truncated and
    the bootstrap frame t + H lies past its last frame (there is no next observation)."""
    idx = np.asarray(idx, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    return np.asarray(terminated, dtype=bool) | (idx + H < end)


def bootstrap_discount(idx: np.ndarray, end: np.ndarray, H: int, gamma: float) -> np.ndarray:
    """(B,) gamma^h: the discount on the bootstrap value (h = H wherever m = 1)."""
    return np.power(float(gamma), chunk_lengths(idx, end, H)).astype(np.float64)


def chunk_targets(R: np.ndarray, disc: np.ndarray, m: np.ndarray, v_next: np.ndarray) -> np.ndarray:
    """y_t = R_t + gamma^h * m_t * V(o_{t+H}): the chunked TD target."""
    return R + disc * m * v_next


def fill_past_end(win: np.ndarray, valid: np.ndarray, terminated: np.ndarray, fill: np.ndarray,
                  use: np.ndarray) -> np.ndarray:
    """Window indices with the padding of terminated chunks replaced by `fill` frame indices.

    Actions after an episode terminates cannot change its return, so any actions are a correct
    input there. Training on chunks padded with actions drawn from elsewhere in the data (where
    `use` is True; the rest keep last-action padding) teaches the critic that, so a policy's
    chunk that runs past a terminal frame is not an unseen input when it is bootstrapped.
    win, valid, fill: (B, H); terminated, use: (B,).
    """
    swap = ~np.asarray(valid, dtype=bool) & (np.asarray(terminated, dtype=bool) & np.asarray(use, dtype=bool))[:, None]
    return np.where(swap, fill, win)
