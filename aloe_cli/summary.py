"""Summaries of a store: episode and frame counts, per policy and per task, once the episodes table
is checked against the frames files' footers."""

from __future__ import annotations

import pandas as pd

from . import schema as S
from .store import Store


def _group_stats(eps: pd.DataFrame, by: str) -> list[dict]:
    out = []
    for key, g in eps.groupby(eps[by].fillna("(none)"), sort=True):
        labelled = g[S.SUCCESS].dropna()
        out.append({
            by: key,
            "episodes": int(len(g)),
            "frames": int(g[S.LENGTH].sum()),
            "success_rate": None if labelled.empty else float(labelled.astype(bool).mean()),
            "labelled": int(len(labelled)),
            "mean_length": float(g[S.LENGTH].mean()),
            "intervention_fraction": float(g[S.INTERVENTION_FRAMES].sum() / max(g[S.LENGTH].sum(), 1)),
        })
    return out


def check_frames_files(store: Store) -> None:
    """Refuse, as the readers do (`fit-critic`, `score`), a store whose episodes table disagrees with its
    frames files: a frames file missing or unreadable, a row group past a file's end, an episode whose
    row group holds other than its `length` frames. Reads the Parquet footers only, no frames: the
    readers' own check (`Store._read_runs`) with no columns asked for."""
    for _ in store._read_runs(store.episodes, columns=[]):
        pass


def store_summary(store: Store) -> dict:
    """What `aloe info` prints; the counts come from the episodes table, checked against the frames files."""
    check_frames_files(store)
    eps = store.episodes
    labelled = eps[S.SUCCESS].dropna()
    return {
        "store": str(store.root),
        "format_version": store.manifest["format_version"],
        "fingerprint": store.fingerprint,
        "labels_fingerprint": store.labels_fingerprint,
        "fps": store.fps,
        "episodes": int(len(eps)),
        "frames": int(eps[S.LENGTH].sum()),
        "state_dim": store.state_dim if len(eps) else None,
        "action_dim": store.action_dim if len(eps) else None,
        "extra_columns": store.extra_columns,
        "image_columns": store.image_columns,
        "success_rate": None if labelled.empty else float(labelled.astype(bool).mean()),
        "unknown_outcome": int(eps[S.SUCCESS].isna().sum()),
        "intervention_fraction": float(eps[S.INTERVENTION_FRAMES].sum() / max(eps[S.LENGTH].sum(), 1)),
        "ingests": len(store.manifest["ingests"]),
        "frames_files": int(eps[S.FRAMES_FILE].nunique()),
        "per_policy_id": _group_stats(eps, S.POLICY_ID),
        "per_task": _group_stats(eps, S.TASK),
    }
