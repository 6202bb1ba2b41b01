"""The score report: one self-contained HTML page (plus its PNGs) from a scores directory.

`write_report(scores_dir)` reads what `aloe score` wrote (chunks.parquet, episodes.parquet,
summary.json; the contract is in `schema.py`) and writes SCORES_DIR/report.html with every
image embedded as a base64 data URI, and the same images as `report-*.png` beside it:

- a header with the policy value estimate and its interval, the run (store, critic, policy)
  and the summary's warnings;
- policy value per policy_id (a forest plot and a table) and per task;
- advantage histograms by source (each policy_id's own chunks, and human interventions);
- value at start against outcome: binned V against the empirical success rate;
- per-episode panels for the worst and best N episodes by return and any asked by id:
  V and Q along time, intervention spans shaded, the outcome marked, the critical chunks
  marked and listed with their frames and advantages.

matplotlib is imported inside the plotting functions (Agg canvas, no pyplot state).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from . import schema as S
from .errors import BadInput, plural

REPORT_PNG_PREFIX = "report-"  # every image the report writes is SCORES_DIR/report-*.png
MAX_WORST_BEST = 25  # --worst-best above this is refused (each panel costs ~0.1 s and page length)
MAX_ASKED = 50  # at most this many --episode panels
MAX_SOURCES = 10  # advantage histograms: the largest sources; the rest are pooled as "other"
MAX_CRITICAL_LISTED = 20  # critical chunks listed under a panel (the most negative first)
DPI = 90

# Colours (colour-blind-safe pairs where it matters: blue/orange, green/red only with markers).
C_V = "#1f4e9c"
C_Q = "#555555"
C_INTERVENTION = "#ff9f1c"
C_CRITICAL = "#c1121f"
C_SUCCESS = "#2a9d8f"
C_FAILURE = "#d62828"
C_UNKNOWN = "#8d99ae"
C_POS = "#2a9d8f"
C_NEG = "#e76f51"
SOURCE_COLOURS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
                  "#7f7f7f", "#d62728", "#393b79", "#637939"]
INTERVENTION_SOURCE = "human intervention"

# Columns the report reads, with the kind of Arrow type each must have.
CHUNK_COLUMNS = {
    S.EPISODE_ID: "string", S.FRAME_INDEX: "int", S.POLICY_ID: "string", S.TASK: "string",
    S.IS_INTERVENTION: "bool", S.Q: "number", S.Q_STD: "number", S.V: "number",
    S.ADVANTAGE: "number", S.ADVANTAGE_NORM: "number", S.CHUNK_LEN: "int",
}
EPISODE_COLUMNS = {
    S.EPISODE_ID: "string", S.POLICY_ID: "string", S.TASK: "string", S.SUCCESS: "bool",
    S.LENGTH: "int", S.RETURN: "number", S.V_START: "number", S.Q_START: "number",
    S.ADV_MIN: "number", S.ADV_MIN_FRAME: "int", S.ADV_MAX: "number", S.ADV_MAX_FRAME: "int",
    S.V_DROP_MAX: "number", S.V_DROP_FRAME: "int", S.CRITICAL_FRAMES: "list<int>",
    S.INTERVENTION_SPANS: "list<list<int>>",
}
# summary.json keys the report lays out itself; any other top-level key is shown under "Run".
SUMMARY_KNOWN = {"policy_value", "per_task", "per_policy_id", "episodes", "chunks", "warnings"}


# --------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class Scores:
    """A scores directory, read and checked."""

    root: Path
    chunks: pd.DataFrame
    episodes: pd.DataFrame
    summary: dict


def _arrow_kind_ok(t, kind: str) -> bool:
    import pyarrow as pa

    if pa.types.is_null(t):
        return True
    if pa.types.is_dictionary(t):
        t = t.value_type
    if kind == "string":
        return pa.types.is_string(t) or pa.types.is_large_string(t)
    if kind == "int":
        return pa.types.is_integer(t)
    if kind == "number":
        return pa.types.is_integer(t) or pa.types.is_floating(t)
    if kind == "bool":
        return pa.types.is_boolean(t)
    is_list = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    if kind == "list<int>":
        return is_list and (pa.types.is_integer(t.value_type) or pa.types.is_null(t.value_type))
    if kind == "list<list<int>>":
        return is_list and (pa.types.is_null(t.value_type) or _arrow_kind_ok(t.value_type, "list<int>"))
    raise ValueError(kind)


def _read_table(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise BadInput("no such file; run `aloe score` to write it", path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInput(f"not a readable Parquet file ({first})", path) from None
    for name, kind in columns.items():
        if name not in table.column_names:
            raise BadInput("missing column", path, name)
        t = table.schema.field(name).type
        if not _arrow_kind_ok(t, kind):
            raise BadInput(f"expected {kind}, got {t}", path, name)
    return table.select(list(columns)).to_pandas()


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_interval(d, path: Path, field: str, keys=("estimate", "ci_low", "ci_high")) -> None:
    if not isinstance(d, dict):
        raise BadInput(f"expected an object, got {type(d).__name__}", path, field)
    for k in keys:
        if k not in d:
            raise BadInput("missing", path, f"{field}.{k}")
        if d[k] is not None and not _is_number(d[k]):
            raise BadInput(f"expected a number or null, got {d[k]!r}", path, f"{field}.{k}")
        if d[k] is not None and not math.isfinite(d[k]):
            d[k] = None  # NaN/inf (Python's json writes them) read as "no estimate"


def _read_summary(path: Path) -> dict:
    if not path.is_file():
        raise BadInput("no such file; run `aloe score` to write it", path)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BadInput("not UTF-8 text", path) from None
    except json.JSONDecodeError as e:
        raise BadInput(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})", path) from None
    if not isinstance(summary, dict):
        raise BadInput(f"expected a JSON object, got {type(summary).__name__}", path)
    if "policy_value" not in summary:
        raise BadInput("missing", path, "policy_value")
    _check_interval(summary["policy_value"], path, "policy_value")
    per_task = summary.get("per_task", {})
    if not isinstance(per_task, dict):
        raise BadInput(f"expected an object, got {type(per_task).__name__}", path, "per_task")
    for task, d in per_task.items():
        _check_interval(d, path, f"per_task.{task}")
        if not isinstance(d.get("episodes", 0), int):
            raise BadInput(f"expected an integer, got {d['episodes']!r}", path, f"per_task.{task}.episodes")
    per_pid = summary.get("per_policy_id", {})
    if not isinstance(per_pid, dict):
        raise BadInput(f"expected an object, got {type(per_pid).__name__}", path, "per_policy_id")
    for pid, d in per_pid.items():
        if not isinstance(d, dict):
            raise BadInput(f"expected an object, got {type(d).__name__}", path, f"per_policy_id.{pid}")
        if "v_start" not in d:
            raise BadInput("missing", path, f"per_policy_id.{pid}.v_start")
        _check_interval(d["v_start"], path, f"per_policy_id.{pid}.v_start")
        sr = d.get("success_rate")
        if sr is not None and not _is_number(sr):
            raise BadInput(f"expected a number or null, got {sr!r}", path, f"per_policy_id.{pid}.success_rate")
    warnings = summary.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise BadInput("expected a list of strings", path, "warnings")
    for k in ("episodes", "chunks"):
        if k in summary and not (isinstance(summary[k], int) and not isinstance(summary[k], bool)):
            raise BadInput(f"expected an integer, got {summary[k]!r}", path, k)
    return summary


def load_scores(scores_dir: str | os.PathLike) -> Scores:
    """Read and check a scores directory; `BadInput` names the file and field at fault."""
    root = Path(scores_dir)
    if not root.is_dir():
        raise BadInput("no such directory; run `aloe score` to write it", root)
    from .outdirs import kind_of

    kind = kind_of(root)
    if kind not in (None, "scores"):
        raise BadInput(f"is an aloe {kind} directory, not scores; run `aloe score` and pass its --out", root)
    episodes = _read_table(root / S.SCORES_EPISODES_FILE, EPISODE_COLUMNS)
    path = root / S.SCORES_EPISODES_FILE
    if episodes[S.EPISODE_ID].isna().any():
        raise BadInput("null episode id", path, S.EPISODE_ID)
    dup = episodes[S.EPISODE_ID][episodes[S.EPISODE_ID].duplicated()]
    if len(dup):
        raise BadInput(f"episode {dup.iloc[0]!r} appears twice", path, S.EPISODE_ID)
    for eid, spans in zip(episodes[S.EPISODE_ID], episodes[S.INTERVENTION_SPANS]):
        for span in ([] if spans is None else spans):
            if span is None or len(span) != 2 or span[0] is None or span[1] is None or span[1] < span[0]:
                shown = None if span is None else [None if v is None else int(v) for v in span]
                raise BadInput(f"episode {eid!r} has span {shown}, not [start, end)", path, S.INTERVENTION_SPANS)
    chunks = _read_table(root / S.SCORES_CHUNKS_FILE, CHUNK_COLUMNS)
    if chunks[S.EPISODE_ID].isna().any():
        raise BadInput("null episode id", root / S.SCORES_CHUNKS_FILE, S.EPISODE_ID)
    summary = _read_summary(root / S.SCORES_SUMMARY_FILE)
    return Scores(root, chunks, episodes, summary)


# --------------------------------------------------------------------------- pure math

def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion: inside [0, 1] and around the rate itself, exactly
    (at 0/n and n/n centre -/+ half misses 0 or 1 by a rounding error, which error bars refuse)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (min(max(0.0, centre - half), p), max(min(1.0, centre + half), p))


def rank_auc(scores, labels) -> float | None:
    """P(score of a success > score of a failure), ties counted 1/2 (Mann-Whitney U / n1 n0).

    None when either class is empty.
    """
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return None
    ranks = pd.Series(s).rank(method="average").to_numpy()
    u = ranks[y].sum() - n1 * (n1 + 1) / 2
    return float(u / (n1 * n0))


def calibration_bins(v, success, n_bins: int = 10, min_per_bin: int = 5) -> pd.DataFrame:
    """Equal-count bins of V at start against the empirical success rate.

    At most `n_bins` bins and at least `min_per_bin` episodes in each (fewer bins when there
    are few episodes; always at least one bin). Returns one row per bin: v_lo, v_hi, v_mean,
    n, successes, rate, lo, hi (the Wilson interval of the rate).
    """
    v = np.asarray(v, dtype=float)
    y = np.asarray(success, dtype=bool)
    keep = np.isfinite(v)
    v, y = v[keep], y[keep]
    cols = ["v_lo", "v_hi", "v_mean", "n", "successes", "rate", "lo", "hi"]
    if len(v) == 0:
        return pd.DataFrame(columns=cols)
    k = max(1, min(n_bins, len(v) // max(min_per_bin, 1)))
    order = np.argsort(v, kind="mergesort")
    rows = []
    for idx in np.array_split(order, k):
        vb, yb = v[idx], y[idx]
        lo, hi = wilson_interval(int(yb.sum()), len(yb))
        rows.append((vb.min(), vb.max(), vb.mean(), len(yb), int(yb.sum()), yb.mean(), lo, hi))
    return pd.DataFrame(rows, columns=cols)


def advantage_sources(chunks: pd.DataFrame, max_sources: int = MAX_SOURCES) -> pd.Series:
    """Per chunk, where its actions came from: its policy_id, or INTERVENTION_SOURCE.

    Keeps the `max_sources - 1` largest policy ids and pools the rest as "other policies".
    """
    pid = chunks[S.POLICY_ID].fillna(S.UNKNOWN_POLICY_ID).astype(str)
    inter = chunks[S.IS_INTERVENTION].fillna(False).astype(bool).to_numpy()
    counts = pid[~inter].value_counts()
    keep = set(counts.index[: max_sources - 1]) if len(counts) > max_sources else set(counts.index)
    src = pid.where(pid.isin(keep), "other policies")
    return src.where(~inter, INTERVENTION_SOURCE)


def advantage_table(chunks: pd.DataFrame, sources: pd.Series) -> pd.DataFrame:
    """Advantage statistics per source, sorted by mean advantage (highest first)."""
    a = chunks[S.ADVANTAGE].astype(float)
    g = a.groupby(sources.to_numpy())
    t = pd.DataFrame({
        "chunks": g.count(),  # chunks with an advantage (NaN where no policy gave V), as the histograms count
        "mean": g.mean(),
        "median": g.median(),
        "p5": g.quantile(0.05),
        "p95": g.quantile(0.95),
        "positive": g.apply(lambda x: float((x.dropna() > 0).mean()) if x.notna().any() else float("nan")),
    })
    return t.sort_values("mean", ascending=False, kind="mergesort")


def select_episodes(episodes: pd.DataFrame, episode_ids: list[str] | None, worst_best: int,
                    where: Path | None = None) -> list[tuple[str, str]]:
    """The episodes that get a panel, in page order, as (episode_id, why).

    Asked ids first (in the order given), then the worst `worst_best` by return (lowest
    first), then the best (highest first); an episode is shown once. Ties break on id.
    """
    known = set(episodes[S.EPISODE_ID])
    out: dict[str, str] = {}
    for eid in episode_ids or []:
        if eid not in known:
            raise BadInput(f"episode {eid!r} is not in the scores", where, S.EPISODE_ID)
        out.setdefault(eid, "asked")
    ranked = episodes[episodes[S.RETURN].notna()].sort_values([S.RETURN, S.EPISODE_ID], kind="mergesort")
    ids = ranked[S.EPISODE_ID].tolist()
    worst = ids[:worst_best]
    best = [e for e in reversed(ids) if e not in set(worst)][:worst_best]
    for i, eid in enumerate(worst):
        out[eid] = f"{out[eid]}, worst #{i + 1}" if eid in out else f"worst #{i + 1}"
    for i, eid in enumerate(best):
        out[eid] = f"{out[eid]}, best #{i + 1}" if eid in out else f"best #{i + 1}"
    return list(out.items())


# --------------------------------------------------------------------------- plots

def _figure(w: float, h: float):
    """A bare Agg-backed figure (no pyplot state). Layouts are fixed by hand: matplotlib's
    constrained layout costs as much as the drawing itself."""
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=DPI)


def _margins(fig, left: float, right: float, top: float, bottom: float, **kw) -> dict:
    """Subplot margins given in inches, as gridspec fractions."""
    w, h = fig.get_size_inches()
    return dict(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, **kw)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, facecolor="white")
    return buf.getvalue()


def _mpl(s, n: int = 60) -> str:
    """User text made safe for a matplotlib label: no mathtext, one line, at most n chars."""
    s = " ".join(str(s).split())
    if len(s) > n:
        s = s[: n - 1] + "…"
    return s.replace("$", r"\$")


def _outcome(success) -> str:
    if success is None or (isinstance(success, float) and math.isnan(success)) or success is pd.NA:
        return "unknown"
    return "success" if bool(success) else "failure"


def source_colours(names) -> dict[str, str]:
    """One colour per source, the same in every plot: policy ids in sorted order, interventions orange."""
    out = {INTERVENTION_SOURCE: C_INTERVENTION, "other policies": "#7f7f7f"}
    rest = sorted(n for n in set(names) if n not in out)
    out.update({n: SOURCE_COLOURS[i % len(SOURCE_COLOURS)] for i, n in enumerate(rest)})
    return out


def plot_value_forest(summary: dict, order: list[str], colours: dict[str, str]) -> bytes:
    """Policy value (V at start) per policy_id with its interval; the overall estimate as a band."""
    per = summary.get("per_policy_id", {})
    pv = summary["policy_value"]
    fig = _figure(8.0, 0.45 * max(len(order), 1) + 1.3)
    longest = max((len(_mpl(p, 28)) for p in order), default=4)
    ax = fig.subplots(gridspec_kw=_margins(fig, 0.35 + 0.085 * longest, 0.15, 0.35, 0.5))
    if pv["ci_low"] is not None and pv["ci_high"] is not None:
        ax.axvspan(pv["ci_low"], pv["ci_high"], color=C_V, alpha=0.12, lw=0, label="all episodes: interval")
    if pv["estimate"] is not None:
        ax.axvline(pv["estimate"], color=C_V, lw=1.5, label="all episodes: estimate")
    ys = np.arange(len(order))[::-1]
    for y, pid in zip(ys, order):
        vs, colour = per[pid]["v_start"], colours[pid]
        if vs["estimate"] is None:
            continue
        lo = vs["ci_low"] if vs["ci_low"] is not None else vs["estimate"]
        hi = vs["ci_high"] if vs["ci_high"] is not None else vs["estimate"]
        ax.errorbar([vs["estimate"]], [y], xerr=[[vs["estimate"] - lo], [hi - vs["estimate"]]], fmt="o",
                    color=colour, ms=7, capsize=4, lw=2)
    ax.set_yticks(ys, [_mpl(p, 28) for p in order])
    ax.set_ylim(-0.7, len(order) - 0.3)
    ax.set_xlabel("V at start (mean over episodes), with interval")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize=8, frameon=False)
    ax.set_title("Policy value per policy_id", loc="left", fontsize=11)
    return _png(fig)


def plot_advantage_histograms(chunks: pd.DataFrame, sources: pd.Series, table: pd.DataFrame,
                              colours: dict[str, str]) -> bytes:
    """One histogram per source on shared bins (0.5-99.5 percentile range), log counts, mean marked."""
    a = chunks[S.ADVANTAGE].astype(float).to_numpy()
    finite = a[np.isfinite(a)]
    names = list(table.index)
    fig = _figure(8.0, 0.95 * len(names) + 0.95)
    lo, hi = np.percentile(finite, [0.5, 99.5])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 61)
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False,
                        gridspec_kw=_margins(fig, 0.5, 0.15, 0.35, 0.55, hspace=0.12))[:, 0]
    src = sources.to_numpy()
    for ax, name in zip(axes, names):
        raw = a[(src == name) & np.isfinite(a)]
        x = np.clip(raw, lo, hi)  # the tails pile up in the edge bins
        counts, _ = np.histogram(x, bins=bins)
        # One filled step artist (ax.hist draws a patch per bin: 5x slower); log counts, empty bins unseen.
        ax.stairs(np.maximum(counts, 0.5), bins, fill=True, baseline=0.5, color=colours[name], alpha=0.85)
        ax.set_yscale("log")
        ax.set_ylim(0.7, max(counts.max(), 1) * 1.6)
        ax.axvline(0, color="black", lw=0.8, alpha=0.6)
        if len(x):  # the mean of the unclipped advantages, as the label says (kept inside the axis)
            ax.axvline(float(np.clip(np.mean(raw), lo, hi)), color="black", lw=1.2, ls="--")
        label = name if name in (INTERVENTION_SOURCE, "other policies") else f"policy_id {name}"
        ax.text(0.005, 0.93, f"{_mpl(label, 40)}   n={len(x)}  mean={table.loc[name, 'mean']:+.3f}  "
                f"A>0: {100 * table.loc[name, 'positive']:.0f}%", transform=ax.transAxes, va="top", fontsize=8.5,
                bbox=dict(facecolor="white", alpha=0.8, lw=0, pad=1))
        ax.tick_params(axis="y", labelsize=7)
        ax.spines[["right", "top"]].set_visible(False)
    axes[-1].set_xlabel("advantage A = Q(logged chunk) − V   (dashed: mean)")
    axes[0].set_title("Advantage of logged chunks by source", loc="left", fontsize=11)
    return _png(fig)


def plot_calibration(episodes: pd.DataFrame, bins: pd.DataFrame, auc: float | None) -> bytes:
    """Binned V at start against the empirical success rate, with each episode as a rug tick."""
    fig = _figure(9.0, 4.2)
    ax = fig.subplots(gridspec_kw=_margins(fig, 0.7, 2.3, 0.35, 0.55))
    lab = episodes[episodes[S.SUCCESS].notna() & episodes[S.V_START].notna()]
    v = lab[S.V_START].astype(float).to_numpy()
    y = lab[S.SUCCESS].astype(bool).to_numpy()
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.025, 0.025, size=len(v))
    ax.scatter(v[y], 1.06 + jitter[y], s=9, color=C_SUCCESS, alpha=0.5, lw=0, label="episode: success")
    ax.scatter(v[~y], -0.06 + jitter[~y], s=9, color=C_FAILURE, alpha=0.5, lw=0, label="episode: failure")
    if len(bins):
        err = np.vstack([bins["rate"] - bins["lo"], bins["hi"] - bins["rate"]])
        ax.errorbar(bins["v_mean"], bins["rate"], yerr=err, fmt="-o", color=C_V, ms=6, capsize=3, lw=1.5,
                    label="success rate per bin\n(Wilson 95% interval)")
    vmin, vmax = float(np.min(v)), float(np.max(v))
    if vmin >= -0.05 and vmax <= 1.05:
        ax.plot([0, 1], [0, 1], color="gray", ls=":", lw=1, label="V = success rate\n(sparse reward)")
    ax.set_ylim(-0.13, 1.13)
    ax.set_xlabel("V at start (critic's value of the first observation)")
    ax.set_ylabel("empirical success rate")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    title = "Value at start vs outcome"
    if auc is not None:
        title += f"   (AUC of V at start for success: {auc:.3f})"
    ax.set_title(title, loc="left", fontsize=11)
    return _png(fig)


def plot_episode(ep: dict, ch: pd.DataFrame, critical: list[int]) -> bytes:
    """V and Q (with the ensemble's spread) along the episode, advantage below; spans, outcome, critical chunks."""
    length = int(ep[S.LENGTH])
    fig = _figure(9.0, 3.9)
    ax, bx = fig.subplots(2, 1, sharex=True, gridspec_kw=_margins(fig, 0.75, 1.8, 0.3, 0.48, hspace=0.08,
                                                                  height_ratios=[2.3, 1]))
    outcome = _outcome(ep[S.SUCCESS])
    colour = {"success": C_SUCCESS, "failure": C_FAILURE, "unknown": C_UNKNOWN}[outcome]
    for i, span in enumerate(ep[S.INTERVENTION_SPANS] if ep[S.INTERVENTION_SPANS] is not None else []):
        for axis in (ax, bx):
            axis.axvspan(int(span[0]), int(span[1]), color=C_INTERVENTION, alpha=0.22, lw=0,
                         label="human intervention" if (i == 0 and axis is ax) else None)
    if len(ch):
        t = ch[S.FRAME_INDEX].to_numpy()
        q = ch[S.Q].astype(float).to_numpy()
        qs = ch[S.Q_STD].astype(float).fillna(0).to_numpy()
        v = ch[S.V].astype(float).to_numpy()
        a = ch[S.ADVANTAGE].astype(float).to_numpy()
        ax.fill_between(t, q - qs, q + qs, color=C_Q, alpha=0.18, lw=0, label="Q ± ensemble std")
        ax.plot(t, q, color=C_Q, lw=1.2, label="Q (logged chunk)")
        ax.plot(t, v, color=C_V, lw=2.0, label="V (policy)")
        # One bar per chunk start as a line collection (fast for long episodes; a lone spike stays visible).
        lw = float(np.clip(0.9 * 380.0 / max(length, 1), 0.6, 6.0))
        bx.vlines(t, 0, a, colors=np.where(a >= 0, C_POS, C_NEG), lw=lw, alpha=0.9)
        crit = np.isin(t, critical)
        if crit.any():
            ax.scatter(t[crit], q[crit], marker="v", s=60, color=C_CRITICAL, zorder=5, label="critical chunk")
            bx.scatter(t[crit], a[crit], marker="v", s=40, color=C_CRITICAL, zorder=5)
        lines = critical
        if len(critical) > MAX_CRITICAL_LISTED:  # dashed lines for the most negative only: no curtain of lines
            adv_at = dict(zip(t.tolist(), a.tolist()))
            lines = sorted(critical, key=lambda f: adv_at.get(f, math.inf))[:MAX_CRITICAL_LISTED]
        for f in lines:
            for axis in (ax, bx):
                axis.axvline(f, color=C_CRITICAL, lw=0.8, ls="--", alpha=0.6)
        y_end = v[-1] if np.isfinite(v[-1]) else 0.0
    else:
        ax.text(0.5, 0.5, "no scored chunks", ha="center", va="center", transform=ax.transAxes)
        y_end = 0.0
    marker = {"success": "*", "failure": "X", "unknown": "o"}[outcome]
    ax.scatter([length], [y_end], marker=marker, s=220, color=colour, edgecolor="black", lw=0.6, zorder=6,
               label=outcome)
    bx.axhline(0, color="black", lw=0.6)
    ax.set_xlim(-0.5, length + max(2.0, 0.04 * length))  # room for the outcome marker
    ax.set_ylabel("value")
    bx.set_ylabel("advantage")
    bx.set_xlabel("frame")
    ax.grid(alpha=0.25)
    bx.grid(alpha=0.25)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    for spine in ("left", "right", "top", "bottom"):
        ax.spines[spine].set_color(colour)
        ax.spines[spine].set_linewidth(1.5 if outcome != "unknown" else 0.8)
    ax.set_title(f"{_mpl(ep[S.EPISODE_ID], 40)}  ·  {_mpl(ep[S.POLICY_ID], 24)}  ·  {_mpl(ep[S.TASK], 48)}  ·  "
                 f"{outcome.upper()}", loc="left", fontsize=10, color="black")
    return _png(fig)


# --------------------------------------------------------------------------- HTML

def _e(x) -> str:
    return html.escape("(none)" if x is None or (isinstance(x, float) and math.isnan(x)) else str(x), quote=True)


def _num(x, digits: int = 3, signed: bool = False) -> str:
    if x is None or x is pd.NA:
        return "–"
    try:
        f = float(x)
    except (TypeError, ValueError):
        return _e(x)
    if not math.isfinite(f):
        return "–"
    return f"{f:+.{digits}f}" if signed else f"{f:.{digits}f}"


def _int(x) -> str:
    if x is None or x is pd.NA or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return str(int(x))


def _pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * float(x):.0f}%"


def _interval(d: dict) -> str:
    return f"[{_num(d.get('ci_low'))}, {_num(d.get('ci_high'))}]"


def _badge(outcome: str) -> str:
    return f'<span class="badge {outcome}">{outcome}</span>'


def _img(name: str, png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" title="{_e(name)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[str]], num_cols: set[int] = frozenset(), cls: str = "") -> str:
    """An HTML table; cells must already be escaped."""
    th = "".join(f'<th class="{"num" if i in num_cols else ""}">{h}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"num" if i in num_cols else ""}">{c}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


CSS = """
:root { --fg:#1b1f24; --muted:#5b6570; --line:#d9dee3; --bg:#f6f8fa; --accent:#1f4e9c; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
       margin: 0; background: white; line-height: 1.45; font-size: 15px; }
main { max-width: 1180px; margin: 0 auto; padding: 0 24px 48px; }
header { background: var(--bg); border-bottom: 1px solid var(--line); padding: 20px 0 14px; margin-bottom: 8px; }
header .inner { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15.5px; margin: 26px 0 6px; }
.muted { color: var(--muted); }
.path { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; word-break: break-all; }
.headline { display: flex; flex-wrap: wrap; gap: 14px; margin: 14px 0 6px; }
.card { background: white; border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 150px; }
.card .k { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .v.big { color: var(--accent); font-size: 30px; }
.card .s { font-size: 13px; color: var(--muted); font-variant-numeric: tabular-nums; }
dl.run { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 10px 0 0; font-size: 13.5px; }
dl.run dt { color: var(--muted); } dl.run dd { margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
       word-break: break-all; }
.warnings { background: #fff4e0; border: 1px solid #f0b44c; border-left: 6px solid #e08a00; border-radius: 6px;
            padding: 10px 16px; margin: 18px 0; }
.warnings h2 { border: 0; margin: 0 0 4px; font-size: 16px; color: #8a4b00; padding: 0; }
.warnings ul { margin: 4px 0; padding-left: 20px; }
nav { font-size: 14px; margin: 10px 0 0; } nav a { margin-right: 16px; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13.5px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fbfcfd; }
img { max-width: 100%; height: auto; display: block; margin: 6px 0; border: 1px solid var(--line); border-radius: 4px; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: white; }
.badge.success { background: #2a9d8f; } .badge.failure { background: #d62828; } .badge.unknown { background: #8d99ae; }
.panel { border-top: 1px solid var(--line); padding-top: 4px; }
.panel .meta { font-size: 13.5px; color: var(--muted); font-variant-numeric: tabular-nums; }
.panel .meta b { color: var(--fg); font-weight: 600; }
.why { font-size: 12px; background: #e8eef8; color: var(--accent); border-radius: 4px; padding: 1px 6px;
       margin-left: 6px; }
.warn-inline { color: #8a4b00; background: #fff4e0; padding: 6px 10px; border-radius: 4px; }
.scroll { overflow-x: auto; }
table.episodes { font-size: 13px; } table.episodes td:first-child { white-space: nowrap; }
table.episodes td:nth-child(4) { min-width: 140px; }
.note { font-size: 13.5px; color: var(--muted); max-width: 900px; }
footer { margin-top: 40px; font-size: 12.5px; color: var(--muted); }
"""


def _run_rows(summary: dict) -> list[tuple[str, str]]:
    """The summary's other top-level keys (store, critic, policy first), values shortened."""
    rows = []
    first = [k for k in ("store", "critic", "policy") if k in summary]
    for k, v in [(k, summary[k]) for k in first] + [(k, v) for k, v in summary.items() if k not in first]:
        if k in SUMMARY_KNOWN:
            continue
        if isinstance(v, (dict, list)):
            s = json.dumps(v, sort_keys=True, default=str)
            s = s if len(s) <= 300 else s[:299] + "…"
        else:
            s = "null" if v is None else str(v)
        rows.append((k, s))
    return rows


def _panel_html(i: int, ep: dict, why: str, ch: pd.DataFrame, critical: list[int], png_name: str, png: bytes) -> str:
    outcome = _outcome(ep[S.SUCCESS])
    spans = ep[S.INTERVENTION_SPANS] if ep[S.INTERVENTION_SPANS] is not None else []
    inter_frames = int(sum(int(s[1]) - int(s[0]) for s in spans))
    head = (f'<h3 id="ep-{i}">{_e(ep[S.EPISODE_ID])} <span class="why">{_e(why)}</span></h3>'
            f'<div class="meta">policy_id <b>{_e(ep[S.POLICY_ID])}</b> · task <b>{_e(ep[S.TASK])}</b> · '
            f'{_badge(outcome)} · length <b>{_int(ep[S.LENGTH])}</b> · return <b>{_num(ep[S.RETURN])}</b> · '
            f'V at start <b>{_num(ep[S.V_START])}</b> · Q at start <b>{_num(ep[S.Q_START])}</b> · '
            f'biggest V drop <b>{_num(ep[S.V_DROP_MAX])}</b> at frame <b>{_int(ep[S.V_DROP_FRAME])}</b> · '
            f'interventions <b>{len(spans)}</b> ({inter_frames} frames)</div>')
    img = _img(png_name, png, f"V and Q along episode {ep[S.EPISODE_ID]}")
    by_frame = ch.drop_duplicates(S.FRAME_INDEX).set_index(S.FRAME_INDEX)
    adv_of = {f: float(by_frame.at[f, S.ADVANTAGE]) for f in critical if f in by_frame.index}
    # The most negative first when there are too many to list; listed in time order.
    listed = sorted(critical, key=lambda f: adv_of.get(f, math.inf))[:MAX_CRITICAL_LISTED]
    rows = []
    for f in sorted(listed):
        if f in by_frame.index:
            r = by_frame.loc[f]
            rows.append([str(f), _num(r[S.ADVANTAGE], signed=True), _num(r[S.ADVANTAGE_NORM], 2, signed=True),
                         _num(r[S.Q]), _num(r[S.Q_STD]), _num(r[S.V]), _int(r[S.CHUNK_LEN]),
                         "yes" if bool(r[S.IS_INTERVENTION]) else "no"])
        else:
            rows.append([str(f), "–", "–", "–", "–", "–", "–", "–"])
    if rows:
        more = (f' <span class="muted">(the {MAX_CRITICAL_LISTED} most negative of {len(critical)})</span>'
                if len(critical) > MAX_CRITICAL_LISTED else "")
        crit = (f'<div class="meta">Critical chunks{more}:</div>' + _table(
            ["frame", "advantage", "adv / task std", "Q", "Q std", "V", "chunk len", "intervention"], rows,
            num_cols={0, 1, 2, 3, 4, 5, 6}, cls="crit"))
    else:
        crit = '<div class="meta">No critical chunks in this episode.</div>'
    return f'<section class="panel">{head}{img}{crit}</section>'


Images = list  # [(file name, png bytes)]: every section appends what it draws


def _value_section(sc: Scores, colours: dict[str, str], images: Images) -> str:
    """Policy value per policy_id (forest plot and table, highest first) and per task."""
    summary, episodes = sc.summary, sc.episodes
    per_pid = summary.get("per_policy_id", {})
    pid_order = sorted(per_pid, key=lambda p: (per_pid[p]["v_start"]["estimate"] is None,
                                               -(per_pid[p]["v_start"]["estimate"] or 0.0), p))
    ep_by_pid = episodes.groupby(episodes[S.POLICY_ID].fillna(S.UNKNOWN_POLICY_ID).astype(str))
    ret_by_pid, len_by_pid = ep_by_pid[S.RETURN].mean(), ep_by_pid[S.LENGTH].mean()
    pid_rows = [[_e(p), _int(per_pid[p].get("episodes")), _num(per_pid[p]["v_start"]["estimate"]),
                 _interval(per_pid[p]["v_start"]), _pct(per_pid[p].get("success_rate")), _num(ret_by_pid.get(p)),
                 _num(len_by_pid.get(p), 1)] for p in pid_order]
    per_task = summary.get("per_task", {})
    task_order = sorted(per_task, key=lambda t: (per_task[t]["estimate"] is None, -(per_task[t]["estimate"] or 0.0), t))
    task_rows = [[_e(t), _int(per_task[t].get("episodes")), _num(per_task[t]["estimate"]), _interval(per_task[t])]
                 for t in task_order]
    out = ""
    if pid_order:
        name = f"{REPORT_PNG_PREFIX}value.png"
        images.append((name, plot_value_forest(summary, pid_order, colours)))
        out += _img(name, images[-1][1], "policy value per policy_id")
    out += ('<h3>Per policy_id</h3><p class="note">V at start averaged over each policy_id\'s episodes '
            '(highest first). Every row is valued under the evaluated policy; the success rate and '
            'return are those of the logged episodes.</p>')
    out += _table(["policy_id", "episodes", "V at start", "interval", "success rate", "mean return", "mean length"],
                  pid_rows, num_cols={1, 2, 3, 4, 5, 6}) if pid_rows else \
        '<p class="muted">No per-policy_id estimates in the summary.</p>'
    out += '<h3>Per task</h3>'
    out += _table(["task", "episodes", "estimate", "interval"], task_rows, num_cols={1, 2, 3}) if task_rows else \
        '<p class="muted">No per-task estimates in the summary.</p>'
    return out


def _advantage_section(sc: Scores, sources: pd.Series, colours: dict[str, str], images: Images) -> str:
    """Advantage histograms and statistics per source."""
    table = advantage_table(sc.chunks, sources)
    out = '<p class="warn-inline">No scored chunk has a finite advantage.</p>'
    if np.isfinite(sc.chunks[S.ADVANTAGE].astype(float).to_numpy()).any():
        name = f"{REPORT_PNG_PREFIX}advantages.png"
        images.append((name, plot_advantage_histograms(sc.chunks, sources, table, colours)))
        out = _img(name, images[-1][1], "advantage histograms by source")
    rows = [[_e(s), _int(r["chunks"]), _num(r["mean"], signed=True), _num(r["median"], signed=True),
             _num(r["p5"], signed=True), _num(r["p95"], signed=True), _pct(r["positive"])]
            for s, r in table.iterrows()]
    out += ('<p class="note">Each logged chunk\'s advantage A = Q(o, logged chunk) − V(o) under the evaluated '
            'policy, grouped by who produced the chunk: each policy_id\'s own chunks, and chunks a person took '
            'over (<i>human intervention</i>). A source whose chunks sit right of 0 does better than the '
            'evaluated policy would. Counts per bin on a log scale so that rare, critical chunks show; the '
            'ends are clipped at the 0.5 and 99.5 percentiles of all advantages. The table is sorted by '
            'mean advantage, highest first.</p>')
    return out + _table(["source", "chunks", "mean", "median", "5th pct", "95th pct", "A > 0"], rows,
                        num_cols={1, 2, 3, 4, 5, 6})


def _calibration_section(sc: Scores, images: Images) -> str:
    """Binned V at start against the empirical success rate, and the AUC of V at start for success."""
    episodes = sc.episodes
    lab = episodes[episodes[S.SUCCESS].notna() & episodes[S.V_START].notna()]
    if not len(lab):
        return ('<p class="warn-inline">No episode has both a success label and a V at start: nothing to '
                'calibrate against. Label outcomes at ingest (<code>--success</code>, <code>--labels</code>).</p>')
    v, y = lab[S.V_START].astype(float).to_numpy(), lab[S.SUCCESS].astype(bool).to_numpy()
    bins, auc = calibration_bins(v, y), rank_auc(v, y)
    name = f"{REPORT_PNG_PREFIX}calibration.png"
    images.append((name, plot_calibration(episodes, bins, auc)))
    rows = [[f"{_num(r.v_lo)} … {_num(r.v_hi)}", _num(r.v_mean), _int(r.n), _int(r.successes), _pct(r.rate),
             f"[{_pct(r.lo)}, {_pct(r.hi)}]"] for r in bins.itertuples()]
    left_out = len(episodes) - len(lab)
    return (_img(name, images[-1][1], "value at start vs outcome") +
            f'<p class="note">{len(lab)} episodes with a success label and a V at start ({left_out} others left '
            f'out), in equal-count bins of V at start. A critic that ranks well has a rising curve. '
            f'AUC of V at start for success: <b>{_num(auc)}</b> (0.5 = no better than chance). '
            f'With the step-penalty reward V is not a probability, so only the ordering matters; with the '
            f'sparse reward and γ = 1 the points should lie on the dotted diagonal.</p>' +
            _table(["V at start (bin)", "mean V", "episodes", "successes", "success rate", "Wilson interval"],
                   rows, num_cols={1, 2, 3, 4, 5}))


def _episodes_section(sc: Scores, chosen: list[tuple[str, str]], worst_best: int, asked: bool,
                      images: Images) -> str:
    """A table of the chosen episodes, then one panel each."""
    chunks, episodes = sc.chunks, sc.episodes
    ep_index = episodes.set_index(S.EPISODE_ID, drop=False)
    ch_groups = chunks.groupby(S.EPISODE_ID, sort=False).indices
    rows, panels = [], []
    for i, (eid, why) in enumerate(chosen, start=1):
        ep = ep_index.loc[eid].to_dict()
        idx = ch_groups.get(eid)
        ch = chunks.iloc[idx].sort_values(S.FRAME_INDEX, kind="mergesort") if idx is not None else chunks.iloc[:0]
        crit_raw = ep[S.CRITICAL_FRAMES]
        critical = sorted({int(f) for f in (crit_raw if crit_raw is not None else []) if f is not None})
        name = f"{REPORT_PNG_PREFIX}episode-{i:02d}.png"
        images.append((name, plot_episode(ep, ch, critical)))
        panels.append(_panel_html(i, ep, why, ch, critical, name, images[-1][1]))
        spans = ep[S.INTERVENTION_SPANS] if ep[S.INTERVENTION_SPANS] is not None else []
        rows.append([_e(why), f'<a href="#ep-{i}">{_e(eid)}</a>', _e(ep[S.POLICY_ID]), _e(ep[S.TASK]),
                     _badge(_outcome(ep[S.SUCCESS])), _int(ep[S.LENGTH]), _num(ep[S.RETURN]), _num(ep[S.V_START]),
                     f"{_num(ep[S.ADV_MIN], signed=True)} @ {_int(ep[S.ADV_MIN_FRAME])}",
                     f"{_num(ep[S.V_DROP_MAX])} @ {_int(ep[S.V_DROP_FRAME])}", str(len(critical)), str(len(spans))])
    which = [f"the {worst_best} lowest- and highest-return episodes"] if worst_best else []
    which += ["the episodes asked for"] if asked else []
    out = (f'<p class="note">{" and ".join(which).capitalize() or "No episodes were asked for"} '
           f'({len(chosen)} of {len(episodes)}). In each panel: V of the evaluated policy (blue) and Q of the '
           f'logged chunk (grey, ± ensemble std) at every scored chunk start; the advantage Q − V below; human '
           f'interventions shaded orange; critical chunks as red triangles and dashed lines; the outcome marked '
           f'at the last frame.</p>')
    if rows:
        out += '<div class="scroll">' + _table(
            ["why", "episode", "policy_id", "task", "outcome", "length", "return", "V at start", "min A @ frame",
             "max V drop @ frame", "critical", "interv."], rows, num_cols={5, 6, 7, 8, 9, 10, 11},
            cls="episodes") + "</div>"
    return out + "".join(panels)


def _header(sc: Scores) -> tuple[str, str]:
    """The page header (headline numbers, run, navigation) and the warnings box."""
    summary, chunks, episodes = sc.summary, sc.chunks, sc.episodes
    pv = summary["policy_value"]
    labelled = episodes[S.SUCCESS].dropna()
    success_rate = float(labelled.astype(bool).mean()) if len(labelled) else None
    intervention_share = float(chunks[S.IS_INTERVENTION].fillna(False).astype(bool).mean()) if len(chunks) else None
    run_rows = _run_rows(summary)
    run_html = ('<dl class="run">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in run_rows) + "</dl>"
                if run_rows else "")
    warnings = summary.get("warnings", [])
    warn_html = (f'<div class="warnings" id="warnings"><h2>⚠ {plural(len(warnings), "warning")}</h2><ul>' +
                 "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul></div>") if warnings else ""
    n_tasks, n_pids = len(summary.get("per_task", {})), len(summary.get("per_policy_id", {}))
    header = f"""<header><div class="inner">
<h1>aloe score report</h1>
<div class="path">{_e(sc.root.resolve())}</div>
<div class="headline">
<div class="card"><div class="k">policy value V̂(π)</div><div class="v big">{_num(pv['estimate'])}</div>
<div class="s">interval {_interval(pv)}</div></div>
<div class="card"><div class="k">episodes</div><div class="v">{_int(summary.get("episodes", len(episodes)))}</div>
<div class="s">{plural(n_tasks, "task")}, {plural(n_pids, "policy_id")}</div></div>
<div class="card"><div class="k">scored chunks</div><div class="v">{_int(summary.get("chunks", len(chunks)))}</div>
<div class="s">{_pct(intervention_share)} by human intervention</div></div>
<div class="card"><div class="k">logged success rate</div><div class="v">{_pct(success_rate)}</div>
<div class="s">{len(labelled)} labelled episodes</div></div>
</div>
{run_html}
<nav><a href="#value">Policy value</a><a href="#advantages">Advantages</a><a href="#calibration">Value vs outcome</a>
<a href="#episodes">Episodes</a>{'<a href="#warnings">Warnings</a>' if warnings else ''}</nav>
</div></header>"""
    return header, warn_html


def remove_report(scores_dir: str | os.PathLike) -> None:
    """Delete SCORES_DIR's report (report.html, its images, a page left half-written): `aloe score` does
    before it puts new scores in place, so no report of earlier scores survives to contradict them.
    The page goes first: it is the report (its images are embedded in it)."""
    root = Path(scores_dir)
    for path in (root / S.REPORT_FILE, root / f".{S.REPORT_FILE}.tmp", *root.glob(f"{REPORT_PNG_PREFIX}*.png")):
        path.unlink(missing_ok=True)


def write_report(scores_dir: str | os.PathLike, episode_ids: list[str] | None = None, worst_best: int = 5) -> Path:
    """Write SCORES_DIR/report.html (self-contained) and its report-*.png images; returns the HTML path.

    Panels are drawn for the `worst_best` lowest- and highest-return episodes and for every id
    in `episode_ids`. Bad or missing score files raise `BadInput` before anything is written.
    """
    if not isinstance(worst_best, int) or worst_best < 0 or worst_best > MAX_WORST_BEST:
        raise BadInput(f"{worst_best!r} is not an integer from 0 to {MAX_WORST_BEST}", field="--worst-best")
    episode_ids = list(dict.fromkeys(episode_ids or []))
    if len(episode_ids) > MAX_ASKED:
        raise BadInput(f"{len(episode_ids)} episodes asked; at most {MAX_ASKED}", field="--episode")
    sc = load_scores(scores_dir)
    chosen = select_episodes(sc.episodes, episode_ids, worst_best, sc.root / S.SCORES_EPISODES_FILE)

    images: Images = []  # written only after every plot succeeded
    sources = advantage_sources(sc.chunks)
    colours = source_colours(list(sc.summary.get("per_policy_id", {})) + list(sources.unique()))
    header, warn_html = _header(sc)
    generated = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>aloe score report: {_e(sc.root.resolve().name)}</title>
<style>{CSS}</style></head>
<body>
{header}
<main>
{warn_html}
<h2 id="value">Policy value</h2>
{_value_section(sc, colours, images)}
<h2 id="advantages">Advantages by source</h2>
{_advantage_section(sc, sources, colours, images)}
<h2 id="calibration">Value at start vs outcome</h2>
{_calibration_section(sc, images)}
<h2 id="episodes">Episodes</h2>
{_episodes_section(sc, chosen, worst_best, bool(episode_ids), images)}
<footer>Written by aloe {_e(__version__)} on {_e(generated)} from {_e(S.SCORES_CHUNKS_FILE)},
{_e(S.SCORES_EPISODES_FILE)} and {_e(S.SCORES_SUMMARY_FILE)}. The images are also saved beside this file as
{_e(REPORT_PNG_PREFIX)}*.png.</footer>
</main></body></html>
"""
    # Write: stale images of an earlier report go, new images, then the page atomically.
    root = sc.root
    for old in root.glob(f"{REPORT_PNG_PREFIX}*.png"):
        old.unlink()
    for name, png in images:
        (root / name).write_bytes(png)
    out = root / S.REPORT_FILE
    tmp = root / f".{S.REPORT_FILE}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out
