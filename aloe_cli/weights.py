"""Per-chunk weights for policy improvement from advantages: small pure functions.

- `aloe` / `awr`: w = clip(exp(A / beta), 0, w_max) (advantage-weighted maximum likelihood);
- `filtered`: w = 1 for the top fraction of chunks by advantage, else 0;
- `conditioned`: an indicator I = 1[A > the 70th percentile], interventions forced to 1,
  given to the policy as an input (RECAP-style); every chunk keeps weight 1;
- `bc`: w = 1.

Default beta: the standard deviation of the advantages (so A / beta is a z-score and
w = exp(z)); a constant advantage (std 0) gives beta = 1. A relative temperature
`beta_scale` multiplies it: beta = beta_scale * std(A), so w = exp(z / beta_scale).
"""

from __future__ import annotations

import numpy as np

METHODS = ("aloe", "awr", "filtered", "conditioned", "bc")


def default_beta(advantages: np.ndarray) -> float:
    """The temperature that makes A / beta a z-score: std(A), or 1 when A is constant."""
    a = np.asarray(advantages, dtype=np.float64)
    std = float(a.std()) if a.size else 0.0
    return std if std > 1e-12 else 1.0


def resolve_beta(advantages: np.ndarray, beta: float | None = None, beta_scale: float = 1.0) -> tuple[float, str]:
    """The temperature to use and how it was chosen: `beta` when given, else beta_scale * default_beta(A).

    E.g. A = [-1, 1] (std 1) with beta_scale 0.25 -> (0.25, "0.25 x std of advantages")."""
    if beta is not None:
        return float(beta), "given"
    if beta_scale <= 0:
        raise ValueError(f"beta_scale must be > 0, got {beta_scale}")
    rule = "std of advantages" if beta_scale == 1 else f"{beta_scale:g} x std of advantages"
    return beta_scale * default_beta(advantages), rule


def exp_weights(advantages: np.ndarray, beta: float, w_max: float) -> np.ndarray:
    """w = clip(exp(A / beta), 0, w_max), computed without overflow."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    a = np.asarray(advantages, dtype=np.float64)
    z = np.minimum(a / beta, np.log(w_max))  # exp(z) <= w_max, no overflow
    return np.exp(z).astype(np.float32)


def top_fraction_weights(advantages: np.ndarray, fraction: float) -> np.ndarray:
    """1 for the ceil(fraction * N) chunks of largest advantage (ties broken by order), else 0."""
    if not 0 < fraction <= 1:
        raise ValueError(f"top fraction must be in (0, 1], got {fraction}")
    a = np.asarray(advantages, dtype=np.float64)
    k = int(np.ceil(round(fraction * a.size, 9)))  # 0.07 * 100 is 7.000000000000001: 7 chunks, not 8
    w = np.zeros(a.size, dtype=np.float32)
    if k:
        w[np.argsort(-a, kind="stable")[:k]] = 1.0
    return w


def advantage_indicator(advantages: np.ndarray, is_intervention: np.ndarray | None = None,
                        quantile: float = 0.7) -> np.ndarray:
    """RECAP's indicator: 1 where A is above its `quantile`, and wherever a human intervened."""
    a = np.asarray(advantages, dtype=np.float64)
    ind = a > np.quantile(a, quantile) if a.size else np.zeros(0, dtype=bool)
    if is_intervention is not None:
        ind = ind | np.asarray(is_intervention, dtype=bool)
    return ind


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size: (sum w)^2 / sum w^2 (0 when every weight is 0)."""
    w = np.asarray(weights, dtype=np.float64)
    s2 = float((w * w).sum())
    return float(w.sum() ** 2 / s2) if s2 > 0 else 0.0


def weight_summary(weights: np.ndarray, w_max: float | None = None, groups: dict[str, np.ndarray] | None = None) -> dict:
    """What a round emphasised: ESS, fraction clipped or zeroed, mean weight per group."""
    w = np.asarray(weights, dtype=np.float64)
    out = {
        "chunks": int(w.size),
        "effective_sample_size": effective_sample_size(w),
        "ess_fraction": effective_sample_size(w) / w.size if w.size else 0.0,
        "mean": float(w.mean()) if w.size else 0.0,
        "max": float(w.max()) if w.size else 0.0,
        "fraction_zero": float((w == 0).mean()) if w.size else 0.0,
    }
    if w_max is not None:
        out["fraction_clipped"] = float((w >= np.float32(w_max) * (1 - 1e-6)).mean()) if w.size else 0.0
    for name, labels in (groups or {}).items():
        labels = np.asarray(labels)
        out[f"mean_by_{name}"] = {str(k): float(w[labels == k].mean()) for k in np.unique(labels)}
    return out
