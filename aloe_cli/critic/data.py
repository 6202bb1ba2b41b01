"""Frames of a store as flat arrays with every chunk start's TD parts precomputed (memory ~ frames),
and the cache of policy chunks at bootstrap frames."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .. import chunks as C
from .. import schema as S
from ..errors import BadInput
from ..rewards import frame_rewards
from ..store import Store


@dataclass
class ChunkData:
    """One row per frame; frame i is also the start of the chunk i .. i+H-1."""

    episodes: pd.DataFrame  # the selected episodes, in store order (index reset)
    state: np.ndarray  # (N, D) float32
    action: np.ndarray  # (N, A) float32
    lengths: np.ndarray  # (E,)
    starts: np.ndarray  # (E,) first global frame of each episode
    end: np.ndarray  # (N,) one past the last frame of the frame's episode
    episode: np.ndarray  # (N,) position of the frame's episode in `episodes`
    rtg: np.ndarray  # (N,) discounted return-to-go (float64)
    R: np.ndarray  # (N,) chunk reward of the chunk starting here (float64)
    disc: np.ndarray  # (N,) gamma^h
    boot: np.ndarray  # (N,) bootstrap frame t + H (clamped)
    m: np.ndarray  # (N,) float32 1 where the bootstrap frame exists
    usable: np.ndarray  # (N,) bool: may be a TD target (see aloe_cli.chunks)
    terminated: np.ndarray  # (N,) bool: the frame's episode terminated (an outcome)
    H: int
    extras: dict = None  # column -> (N, k) float32 extra numeric observations (--obs), concatenated to the state
    images: dict = None  # camera column -> (N, h, w, 3) uint8, decoded once at load time (--obs images.<cam>)
    time: np.ndarray | None = None  # (N, 1) float32 --obs time: frame index / the task's typical length

    @property
    def features(self) -> np.ndarray:
        """The critic's vector input: the state, the --obs extra columns, then time, (N, D + E [+ 1]) float32."""
        parts = [self.state] + list((self.extras or {}).values()) + ([self.time] if self.time is not None else [])
        if len(parts) == 1:
            return self.state
        return np.ascontiguousarray(np.concatenate(parts, 1), dtype=np.float32)

    @property
    def num_frames(self) -> int:
        return int(self.lengths.sum())

    def tasks_of(self, frames: np.ndarray) -> list[str]:
        tasks = self.episodes[S.TASK].fillna("").astype(str).to_numpy()
        return tasks[self.episode[frames]].tolist()

    def observations(self, frames: np.ndarray) -> dict:
        """What a policy is given for these frames (schema names)."""
        obs = {S.OBS_STATE: self.state[frames], S.TASK: self.tasks_of(frames)}
        for k, v in {**(self.extras or {}), **(self.images or {})}.items():
            obs[k] = v[frames]
        return obs

    def frames_of_episodes(self, positions: np.ndarray) -> np.ndarray:
        """All global frame indices of the episodes at `positions` (vectorised)."""
        positions = np.asarray(positions, dtype=np.int64)
        lengths = self.lengths[positions]
        offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return np.repeat(self.starts[positions], lengths) + offsets


def load_chunk_data(store: Store, episodes: pd.DataFrame, H: int, gamma: float, reward: dict,
                    obs: str | None = None, time_scale: dict | None = None) -> ChunkData:
    """Load the episodes' frames and precompute every chunk start's reward, discount and bootstrap.

    `obs` (``--obs``): extra numeric columns and cameras to load; camera frames are decoded once here.
    `time_scale` ({"per_task", "default"} in frames): needed when `obs` names ``time``.
    """
    from ..vision import check_obs, decode_batch, frame_names, parse_obs

    spec = parse_obs(obs)
    check_obs(spec, store)
    columns = [S.OBS_STATE, S.ACTION] + ([S.REWARD] if reward["kind"] == "logged" else []) + list(spec.extras) \
        + list(spec.images)
    fa = store.load_frames(columns, episodes[S.EPISODE_ID])
    extras = {}
    for c in spec.extras:
        a = fa.columns[c]
        if np.isnan(a).any():
            raise BadInput("has missing values (every frame needs the column to use it in --obs)", store.root, c)
        extras[c] = np.ascontiguousarray(a, dtype=np.float32)
    images = {c: decode_batch(fa.columns[c], store.root, c, frame_names(fa)) for c in spec.images}
    lengths = fa.lengths
    r = frame_rewards(reward, episodes, fa.columns.get(S.REWARD), where=str(store.root))
    end = C.frame_episode_end(lengths)
    idx = np.arange(int(lengths.sum()), dtype=np.int64)
    episode = fa.episode_of_frame()
    terminated = episodes[S.TERMINATED].to_numpy(dtype=bool)[episode]
    rtg = C.discounted_return_to_go(r, lengths, gamma)
    boot, m = C.bootstrap_frames(idx, end, H)
    time = None
    if spec.time:
        from ..rewards import time_features

        if time_scale is None:
            raise ValueError("--obs time needs a time_scale")
        tasks = episodes[S.TASK].to_numpy(dtype=object)[episode]
        time = time_features(idx - fa.starts[episode], tasks, time_scale)
    return ChunkData(
        episodes=episodes.reset_index(drop=True),
        state=np.ascontiguousarray(fa.columns[S.OBS_STATE], dtype=np.float32),
        action=np.ascontiguousarray(fa.columns[S.ACTION], dtype=np.float32),
        lengths=lengths, starts=fa.starts, end=end, episode=episode, rtg=rtg,
        R=C.chunk_rewards(rtg, idx, end, H, gamma), disc=C.bootstrap_discount(idx, end, H, gamma),
        boot=boot, m=m, usable=C.td_usable(idx, end, terminated, H), terminated=terminated, H=H,
        extras=extras, images=images, time=time,
    )


class PolicySamples:
    """K policy chunks for each of a set of frames: `get(frames)` -> (B, K, H, A) float32.

    The policy being evaluated is fixed while a critic is fitted, so its chunks at every
    bootstrap frame are drawn once, before training, into a .npy file in the critic
    directory (memory-mapped: RAM stays ~ one batch; small caches are read into memory).
    Filling is resumable block by block; the file is removed when training ends.
    """

    def __init__(self, rows: np.ndarray, array: np.ndarray):
        self.rows = rows  # (N,) row of each frame in `array`, -1 where not sampled
        self.array = array  # (R, K, H, A)

    def get(self, frames: np.ndarray) -> np.ndarray:
        rows = self.rows[frames]
        if (rows < 0).any():
            raise KeyError(f"no policy samples for frames {frames[rows < 0][:5].tolist()}")
        return np.asarray(self.array[rows])


IN_MEMORY_MB_ENV = "ALOE_SAMPLES_RAM_MB"  # caches up to this many MiB (default 1024) are read into RAM after filling


def in_memory_bytes() -> int:
    """The size up to which a filled cache is read into RAM ($ALOE_SAMPLES_RAM_MB MiB, default 1024); larger
    ones stay memory-mapped and each batch reads its rows from disk."""
    raw = os.environ.get(IN_MEMORY_MB_ENV, "1024")
    try:
        mb = float(raw)
    except ValueError:
        mb = float("nan")
    if not (mb >= 0 and math.isfinite(mb)):
        raise BadInput(f"must be a number of MiB >= 0, got {raw!r}", field=f"${IN_MEMORY_MB_ENV}")
    return int(mb * (1 << 20))


def fill_policy_samples(policy, spec: str, data: ChunkData, frames: np.ndarray, K: int, H: int, path: Path,
                        meta_path: Path, seed: int, progress: Callable | None = None,
                        block: int = 256) -> PolicySamples:
    """Sample K chunks (first H actions of the policy's chunks) at every frame in `frames`.

    Before each block the global numpy and torch RNGs are seeded from (seed, block), so a
    plugin that draws from them gives the same cache after a resume; a policy with its own generators
    (`rng_state` / `set_rng_state`, the built-in one) has their state recorded after each block and
    restored on resume. A complete cache is used as it is.
    """
    import torch

    from ..policy import sample_checked

    ram = in_memory_bytes()  # a bad $ALOE_SAMPLES_RAM_MB fails before the filling, not after it
    frames = np.unique(np.asarray(frames, dtype=np.int64))
    A = data.action.shape[1]
    shape = (len(frames), K, H, A)
    want = {"frames": len(frames), "frames_hash": _hash(frames), "shape": list(shape), "seed": seed}
    filled, rng = 0, None
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} == want:
            filled, rng = int(meta["filled"]), meta.get("policy_rng")
    own_rng = callable(getattr(policy, "rng_state", None)) and callable(getattr(policy, "set_rng_state", None))
    if own_rng and rng and 0 < filled < len(frames):
        policy.set_rng_state(rng)
    if filled == 0 or not path.exists():
        filled = 0
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    else:
        array = np.lib.format.open_memmap(path, mode="r+")
    n_blocks = -(-len(frames) // block)
    # Blocks are filled whole, so `filled` ends on a block unless the cache is complete (its last block short).
    for b in range(n_blocks if filled >= len(frames) else filled // block, n_blocks):
        sel = frames[b * block:(b + 1) * block]
        np.random.seed((seed * 1_000_003 + b) % 2 ** 32)
        torch.manual_seed((seed * 1_000_003 + b) % 2 ** 63)  # torch takes seeds below 2^63
        out = sample_checked(policy, data.observations(sel), K, spec)
        array[b * block:b * block + len(sel)] = out[:, :, :H]
        array.flush()
        filled = min(len(frames), (b + 1) * block)
        _write_json(meta_path, {**want, "filled": filled, **({"policy_rng": policy.rng_state()} if own_rng else {})})
        _crashpoint(f"policy-samples-{filled}")
        if progress is not None:
            progress("policy samples", filled, len(frames), {})
    rows = np.full(data.num_frames, -1, dtype=np.int64)
    rows[frames] = np.arange(len(frames))
    if array.nbytes <= ram:
        array = np.array(array)
    return PolicySamples(rows, array)


def _crashpoint(name: str) -> None:
    """Fault injection for the resume tests: ALOE_CRASH_AT=policy-samples-N kills the process once N frames'
    samples are written."""
    if os.environ.get("ALOE_CRASH_AT") == name:
        os._exit(137)


def _hash(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)
