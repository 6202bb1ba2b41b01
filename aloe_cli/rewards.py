"""Reward specs: per-frame rewards made at critic-fitting time from the store's outcomes.

The store keeps raw outcomes (success / failure / unknown) and any logged rewards; the
reward is chosen when a critic is fitted and recorded, resolved to numbers, in its config:

- ``step-penalty`` (default): r_t = -1/T_norm every frame; the last frame of a failed
  episode adds -C_fail/T_norm. T_norm defaults to the 95th percentile (numpy's linear
  interpolation) of the episode lengths *of the episode's task*; C_fail defaults to T_norm.
  Values lie in about (-2, 0]; reaching success sooner is worth more.
- ``sparse``: r = 1 on the last frame of a successful episode, else 0.
- ``logged``: the rewards stored with the frames (every frame must have one).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from . import schema as S
from .errors import BadInput

REWARD_KINDS = ("step-penalty", "sparse", "logged")
NO_TASK = ""  # the key for episodes without a task in per-task tables


@dataclass(frozen=True)
class RewardSpec:
    """What the user asked for; `resolve_rewards` fills in the defaults from the store."""

    kind: str = "step-penalty"  # step-penalty | sparse | logged
    t_norm: float | None = None  # step-penalty: typical length in frames; None = 95th pct of lengths per task
    c_fail: float | None = None  # step-penalty: failure cost in frames; None = T_norm (so -1 extra)


def _task_keys(episodes: pd.DataFrame) -> pd.Series:
    return episodes[S.TASK].fillna(NO_TASK).astype(str)


def resolve_rewards(spec: RewardSpec, episodes: pd.DataFrame, where: str = "store") -> dict:
    """The spec with every default resolved to numbers (JSON-able), checked against the store.

    Returns {"kind", "t_norm": {task: frames}, "t_norm_default": frames, "c_fail": frames|None}
    for step-penalty, or {"kind"} for the others. Raises BadInput when the store cannot give
    the rewards asked for.
    """
    if spec.kind not in REWARD_KINDS:
        raise BadInput(f"unknown reward {spec.kind!r}; choose one of {', '.join(REWARD_KINDS)}", field="--reward")
    if len(episodes) == 0:
        raise BadInput("the store has no episodes to fit on", where, S.EPISODE_ID)
    out: dict = {"kind": spec.kind}
    if spec.kind == "sparse" and episodes[S.SUCCESS].isna().all():
        raise BadInput("no episode has an outcome (success or failure), so --reward sparse would be 0 "
                       "everywhere; label outcomes at ingest (--success) or use --reward step-penalty",
                       where, S.SUCCESS)
    if spec.kind == "step-penalty":
        for name, value in (("--t-norm", spec.t_norm), ("--c-fail", spec.c_fail)):
            if value is not None and not (np.isfinite(value) and value > 0):
                raise BadInput(f"must be a positive number, got {value}", field=name)
        if spec.t_norm is not None:
            per_task = {t: float(spec.t_norm) for t in sorted(set(_task_keys(episodes)))}
            default = float(spec.t_norm)
        else:
            per_task, default = typical_lengths(episodes)
        out.update(t_norm=per_task, t_norm_default=default,
                   c_fail=None if spec.c_fail is None else float(spec.c_fail))
    return out


def typical_lengths(episodes: pd.DataFrame) -> tuple[dict, float]:
    """({task: frames}, frames over all tasks): the 95th percentile (numpy's linear interpolation)
    of the episode lengths, e.g. lengths 10, 20, 30 -> 29.0. The default T_norm and time scale."""
    per_task = {t: float(np.percentile(g[S.LENGTH].to_numpy(dtype=np.float64), 95))
                for t, g in episodes.groupby(_task_keys(episodes), sort=True)}
    return per_task, float(np.percentile(episodes[S.LENGTH].to_numpy(dtype=np.float64), 95))


def time_features(frame_index, tasks, scale: dict) -> np.ndarray:
    """(B, 1) float32 time input of a critic fitted with ``--obs state,time``: the frame's index in
    its episode divided by the typical length of its task (`scale` = {"per_task", "default"};
    tasks the critic never saw get the default), e.g. frame 75 of a 150-frame task -> 0.5."""
    per_task, default = scale["per_task"], float(scale["default"])
    keys = pd.Series(list(tasks), dtype=object).fillna(NO_TASK).astype(str)
    den = np.array([per_task.get(t, default) for t in keys], dtype=np.float64)
    return (np.asarray(frame_index, dtype=np.float64) / den).astype(np.float32).reshape(-1, 1)


def episode_t_norm(resolved: dict, episodes: pd.DataFrame) -> np.ndarray:
    """(E,) T_norm of each episode's task (tasks the critic never saw get the default)."""
    table = resolved["t_norm"]
    return np.array([table.get(t, resolved["t_norm_default"]) for t in _task_keys(episodes)], dtype=np.float64)


def frame_rewards(resolved: dict, episodes: pd.DataFrame, logged: np.ndarray | None = None,
                  where: str = "store") -> np.ndarray:
    """(N,) float64 reward of every frame of `episodes` (frames concatenated in the same order)."""
    lengths = episodes[S.LENGTH].to_numpy(dtype=np.int64)
    last = np.cumsum(lengths) - 1  # global index of each episode's last frame
    success = episodes[S.SUCCESS]
    kind = resolved["kind"]
    if kind == "logged":
        if logged is None or len(logged) != lengths.sum():
            raise BadInput("the store has no logged rewards; use --reward step-penalty or sparse", where, S.REWARD)
        r = np.asarray(logged, dtype=np.float64)
        missing = int(np.isnan(r).sum())
        if missing:
            raise BadInput(f"{missing} of {len(r)} frames have no logged reward; --reward logged needs one on "
                           "every frame (use --reward step-penalty or sparse)", where, S.REWARD)
        return r.copy()
    if kind == "sparse":
        r = np.zeros(int(lengths.sum()), dtype=np.float64)
        r[last[(success == True).to_numpy()]] = 1.0  # noqa: E712 (nullable column)
        return r
    t_norm = episode_t_norm(resolved, episodes)
    c_fail = t_norm if resolved["c_fail"] is None else np.full(len(t_norm), resolved["c_fail"])
    r = np.repeat(-1.0 / t_norm, lengths)
    failed = (success == False).to_numpy()  # noqa: E712 (None = unknown is not a failure)
    r[last[failed]] -= c_fail[failed] / t_norm[failed]
    return r


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def resolved_problem(resolved) -> str | None:
    """What is wrong with a resolved reward spec read back from a file (None when it is usable):
    {"kind"} for sparse and logged; step-penalty also needs a {task: frames > 0} t_norm, a
    t_norm_default > 0 and a c_fail that is None or >= 0."""
    if not isinstance(resolved, dict) or resolved.get("kind") not in REWARD_KINDS:
        kind = resolved.get("kind") if isinstance(resolved, dict) else resolved
        return f"kind {kind!r} is not one of {', '.join(REWARD_KINDS)}"
    if resolved["kind"] != "step-penalty":
        return None
    table, c_fail = resolved.get("t_norm"), resolved.get("c_fail")
    if not isinstance(table, dict) or not all(_positive(v) for v in table.values()):
        return "t_norm is not a {task: frames > 0} table"
    if not _positive(resolved.get("t_norm_default")):
        return f"t_norm_default {resolved.get('t_norm_default')!r} is not a number of frames > 0"
    if c_fail is not None and not (_positive(c_fail) or c_fail == 0):
        return f"c_fail {c_fail!r} is not a number >= 0"
    return None


def spec_dict(spec: RewardSpec) -> dict:
    return asdict(spec)
