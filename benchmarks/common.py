"""Shared pieces of the benchmarks: OPE metrics (pure functions), bootstrap intervals, AUROC,
the machine description written into every result, critic overrides (`--critic-set`), and
small output helpers.

Metrics follow the Deep OPE benchmark (Fu et al. 2021), for candidate policies i with true
values V_i and estimates Vhat_i:

- normalised absolute error: mean_i |Vhat_i - V_i| / (max V - min V);
- Spearman rank correlation between Vhat and V (average ranks for ties);
- regret@1: (max V - V_j) / (max V - min V), j the candidate the estimator ranks first
  (the mean over j when several tie for first).

Each metric's interval comes from a paired bootstrap (`bootstrap_metrics`): the estimator's
per-start-state values are resampled over start states (the same resample for every
candidate), and each candidate's true returns over its own simulated episodes.

Start states repeat: Meta-World MT1 has 50 fixed start configurations per task (drawn from the
robot's creation seed) and each episode picks one with replacement (100 episodes hold about 43
distinct ones). The episode-level s.e. is right for the value over one seed's 50 configurations;
the value the OPE benchmark compares is over MT1's start distribution (its logged data and its
truth come from robots of different seeds, so different sets of 50), and for that the 50 are a
sample too. Given each episode's start configuration, the bootstrap
resamples start configurations (a cluster bootstrap: every episode of a drawn configuration, as
often as it is drawn) and `mean_and_se` gives the cluster-robust standard error of the mean;
without them (results recorded before the ids were) both fall back to the episode as the unit.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np


# --------------------------------------------------------------------------- metrics
def normalized_abs_error(estimates, truth) -> float:
    """mean |est - truth| / (max truth - min truth); e.g. est (1, 3), truth (0, 2) -> 1 / 2 = 0.5."""
    est, tru = np.asarray(estimates, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    span = tru.max() - tru.min()
    if span <= 0:
        return float("nan")
    return float(np.mean(np.abs(est - tru)) / span)


def average_ranks(x) -> np.ndarray:
    """Ranks 1..n, ties given their average rank: (10, 20, 20, 5) -> (2, 3.5, 3.5, 1)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(estimates, truth) -> float:
    """Pearson correlation of the average ranks; NaN when either side is constant."""
    a, b = average_ranks(estimates), average_ranks(truth)
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def regret_at_1(estimates, truth) -> float:
    """(max truth - truth of the estimator's top pick) / (max truth - min truth); ties for the top
    pick count as the mean of their true values. E.g. est (3, 1, 2), truth (0, 2, 1) -> 1.0."""
    est, tru = np.asarray(estimates, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    span = tru.max() - tru.min()
    if span <= 0:
        return float("nan")
    top = est == est.max()
    return float((tru.max() - tru[top].mean()) / span)


def auroc(scores, labels) -> float:
    """Area under the ROC curve of `scores` for finding the positives (`labels` True): the
    probability that a random positive scores above a random negative, ties counted 1/2
    (Mann-Whitney U / (n_pos * n_neg)). NaN without both classes."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = average_ranks(s)
    u = r[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


METRICS = {"nae": normalized_abs_error, "spearman": spearman, "regret@1": regret_at_1}


def metrics(estimates, truth) -> dict:
    return {name: fn(estimates, truth) for name, fn in METRICS.items()}


def cluster_labels(clusters, n: int) -> np.ndarray:
    """(n,) integer labels 0..G-1 of the clusters that `clusters` names (one id per element, e.g. each
    episode's start configuration); None: every element is its own cluster (labels 0..n-1).
    ("b", "a", "b") -> (1, 0, 1)."""
    if clusters is None:
        return np.arange(n)
    ids = list(clusters)
    if len(ids) != n or any(i is None for i in ids):
        raise ValueError(f"need one cluster id per element ({n}), got {len(ids)} with "
                         f"{sum(i is None for i in ids)} missing")
    return np.unique(np.asarray(ids), return_inverse=True)[1].reshape(-1).astype(np.int64)


def _cluster_residuals(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(G,) S_g - n_g * mean: each cluster's sum of deviations from the overall mean."""
    return np.bincount(labels, weights=x - x.mean())


def mean_and_se(x, clusters=None) -> tuple[float, float]:
    """Sample mean and its standard error. Without `clusters`: s / sqrt(n) (ddof 1; 0 for a single
    value). With `clusters` (an id per element, e.g. each episode's start configuration): the
    cluster-robust s.e. of the mean, sqrt(G / (G - 1) * sum_g (S_g - n_g * mean)^2) / n over the G
    clusters (S_g, n_g: sum and count of cluster g); s / sqrt(n) when every element is its own
    cluster, 0 for a single cluster. E.g. (1, 3, 2, 6) in clusters (a, a, b, c): mean 3, residuals
    (-2, -1, 3), sqrt(3/2 * 14) / 4 = 1.146 (episode-level: 1.080)."""
    x = np.asarray(x, dtype=np.float64)
    if clusters is None:
        se = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0
        return float(x.mean()), se
    labels = cluster_labels(clusters, len(x))
    G = int(labels.max()) + 1 if len(x) else 0
    if G < 2:
        return float(x.mean()) if len(x) else float("nan"), 0.0
    e = _cluster_residuals(x, labels)
    return float(x.mean()), float(np.sqrt(G / (G - 1) * (e * e).sum()) / len(x))


def effective_sample_size(x, clusters=None) -> float:
    """n over the design effect of the mean of `x` under its clusters: n^2 var(x) / sum_g (S_g -
    n_g * mean)^2 (var with ddof 0), at most n; n when every element is its own cluster; G, the
    number of clusters, when `x` is constant (nothing to compare with). For a success rate's
    Wilson interval. E.g. (1, 1, 0, 0) in clusters (a, a, b, b): 16 * 0.25 / (1 + 1) = 2. It has no
    small-sample factor G / (G - 1) (which `mean_and_se` applies), so that singleton clusters give
    n exactly: at G = 43 the Wilson interval is about 1.2% narrower than the clustered s.e. implies."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    labels = cluster_labels(clusters, n)
    G = int(labels.max()) + 1 if n else 0
    var = float(x.var()) if n else 0.0
    if var <= 0:
        return float(G)
    e = _cluster_residuals(x, labels)
    denom = float((e * e).sum())
    return float(n) if denom <= 0 else float(min(n, n * n * var / denom))


def cluster_bootstrap_mean(values, labels: np.ndarray, rng) -> np.ndarray:
    """One cluster-bootstrap replicate of the mean over the last axis of `values` (..., n): G
    clusters (labels 0..G-1, `cluster_labels`) drawn with replacement, every element of a drawn
    cluster counted as often as it is drawn. With every element its own cluster this is the
    plain bootstrap (the same draw: values[..., rng.integers(0, n, n)].mean(-1))."""
    G = int(labels.max()) + 1
    w = np.bincount(rng.integers(0, G, size=G), minlength=G)[labels].astype(np.float64)
    return np.asarray(values, dtype=np.float64) @ w / w.sum()


def bootstrap_metrics(per_state: np.ndarray, truth_returns: list, n_boot: int = 1000, seed: int = 0,
                      level: float = 0.95, state_clusters=None, truth_clusters=None) -> dict:
    """Point values and percentile bootstrap intervals of every metric.

    per_state: (C, E) an estimator's value of each of C candidates at each of E start states
    (its estimate is the mean over states); truth_returns: C arrays, each candidate's
    discounted returns over its simulated episodes. Each replicate resamples the E states
    (one resample shared by every candidate, so the comparison stays paired) and each
    candidate's episodes. state_clusters: (E,) the start configuration of each start state;
    truth_clusters: C arrays (or None entries), the start configuration of each truth episode:
    given, the replicates resample start configurations instead (`cluster_bootstrap_mean`), so
    repeated starts are not counted as independent; None: each state or episode is its own unit.
    Returns {metric: {"value", "ci_low", "ci_high"}}.
    """
    per_state = np.asarray(per_state, dtype=np.float64)
    C, E = per_state.shape
    if len(truth_returns) != C:
        raise ValueError(f"{len(truth_returns)} truth arrays for {C} candidates")
    truth_returns = [np.asarray(t, dtype=np.float64) for t in truth_returns]
    truth = np.array([np.mean(t) for t in truth_returns])
    point = metrics(per_state.mean(1), truth)
    s_lab = cluster_labels(state_clusters, E)
    t_labs = [cluster_labels(None if truth_clusters is None else truth_clusters[i], len(t))
              for i, t in enumerate(truth_returns)]
    rng = np.random.default_rng(seed)
    reps = {name: np.empty(n_boot) for name in METRICS}
    for b in range(n_boot):
        est = cluster_bootstrap_mean(per_state, s_lab, rng)
        tru = np.array([cluster_bootstrap_mean(t, lab, rng) for t, lab in zip(truth_returns, t_labs)])
        for name, fn in METRICS.items():
            reps[name][b] = fn(est, tru)
    a = (1 - level) / 2
    out = {}
    for name in METRICS:
        r = reps[name][np.isfinite(reps[name])]
        lo, hi = (np.quantile(r, [a, 1 - a]) if r.size else (np.nan, np.nan))
        out[name] = {"value": point[name], "ci_low": float(lo), "ci_high": float(hi)}
    return out


def indistinct_pairs(values: dict, ses: dict, k: float = 1.0) -> list[dict]:
    """Pairs of candidates whose true values lie within k combined standard errors of each other,
    |V_a - V_b| <= k * sqrt(se_a^2 + se_b^2) (the protocol asks for clearly different quality), in
    the order of `values`. E.g. V (0, 0.002), s.e. (0.002, 0.0015): 0.002 <= 0.0025 -> flagged."""
    names = list(values)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            diff = abs(float(values[a]) - float(values[b]))
            se = float(np.hypot(ses.get(a) or 0.0, ses.get(b) or 0.0))
            if diff <= k * se:
                out.append({"a": a, "b": b, "difference": diff, "combined_se": se})
    return out


# --------------------------------------------------------------------------- the machine
def machine_info(device: str = "cpu") -> dict:
    """What ran the benchmark: written into every JSON and printed with every table."""
    import torch

    gpu = None
    if str(device).startswith("cuda") and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "gpu": gpu,
    }


def machine_line(m: dict) -> str:
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"
    return (f"{m['date']}; {m['machine']}, {m['cpu_count']} cores (load {m['load_average_1min']}), "
            f"{m['torch_threads']} torch threads{gpu}; torch {m['torch']}")


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


# --------------------------------------------------------------------------- critic overrides
def parse_critic_overrides(pairs: list[str] | None) -> dict:
    """`--critic-set KEY=VALUE` pairs -> {CriticConfig field: value}, values parsed as JSON numbers
    or booleans where they parse: ["ensemble=5", "aggregate=mean-std"] -> {"ensemble": 5,
    "aggregate": "mean-std"}."""
    import dataclasses

    from aloe_cli.critic import CriticConfig
    from aloe_cli.policy import parse_value

    names = {f.name for f in dataclasses.fields(CriticConfig)}
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise SystemExit(f"--critic-set: expected KEY=VALUE with KEY a CriticConfig field, got {pair!r}")
        out[key] = parse_value(value)
    return out


def cli_value(value) -> str:
    """A parsed KEY=VALUE value as typed on the command line: True -> "true", 0.5 -> "0.5"."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def cli_pairs(mapping: dict | None) -> list[str]:
    """KEY=VALUE pairs as typed on the command line: {"deterministic": True} -> ["deterministic=true"]."""
    return [f"{key}={cli_value(value)}" for key, value in (mapping or {}).items()]


def overrides_suffix(overrides: dict | None) -> str:
    """The part of a run's file stem that names its critic overrides, in the order given:
    {"ensemble": 5, "std_coef": 0.5} -> "-ensemble=5-std-coef=0.5"; booleans as typed on the
    command line ({"deterministic": True} -> "-deterministic=true"); none -> ""."""
    return "".join(f"-{key.replace('_', '-')}={cli_value(value)}" for key, value in (overrides or {}).items())


# --------------------------------------------------------------------------- output
def write_json(path: Path, obj: dict) -> Path:
    """Write `obj` as indented JSON atomically (NaN written as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(obj), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _finite(x):
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if isinstance(x, (np.floating,)):
        return _finite(float(x))
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.ndarray):
        return [_finite(v) for v in x.tolist()]
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def format_table(headers: list[str], rows: list[list]) -> str:
    """A plain text table: columns right-aligned except the first."""
    cells = [[_cell(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(vals):
        return "  ".join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(vals))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """The same table in GitHub markdown."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if not np.isfinite(v) else f"{v:.3f}"
    return str(v)


def with_ci(m: dict) -> str:
    """'0.812 [0.70, 0.90]' from {"value", "ci_low", "ci_high"}; '0.812' when there is no interval."""
    v, lo, hi = m["value"], m.get("ci_low"), m.get("ci_high")
    if v is None or not np.isfinite(v):
        return "nan"
    if lo is None or hi is None:
        return f"{v:.3f}"
    return f"{v:.3f} [{lo:.2f}, {hi:.2f}]"
