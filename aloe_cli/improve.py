"""Policy improvement: the library side of `aloe improve` (and the per-frame signals of `aloe export`).

A method turns the store and the chunk scores of `aloe score` into per-chunk weights (and, for
``conditioned``, an advantage indicator); the built-in chunk policy is then trained by weighted
behaviour cloning (`policy.builtin.train_policy`), from scratch or fine-tuned from a base policy.

- ``aloe`` (advantage-weighted maximum likelihood): w = clip(exp(A / beta), 0, w_max), A from the
  scores (the ALOE critic: Q of the logged chunk minus V of the evaluated policy);
- ``awr``: the same weights with A = G_t - V_mc(o_t), the logged discounted return-to-go minus a
  Monte-Carlo state value (`mc_value.py`) fitted on the store under the scores' reward and gamma
  (without scores: ``reward`` / ``gamma`` options, fit-critic's defaults otherwise): the
  behaviour's own advantage, never the critic's policy-bootstrapped values; it needs no critic;
- ``filtered``: behaviour cloning on the top fraction of chunks by advantage (weight 1, else 0);
- ``conditioned`` (RECAP-style): every chunk has weight 1 and an indicator I = 1[A > the 70th
  percentile of the scores' advantages] (interventions forced to 1) as an extra policy input,
  dropped to "unknown" 30% of the time in training and set to positive at inference;
- ``bc``: plain behaviour cloning on everything (DAgger-like when the store holds takeovers).

Defaults: beta = the standard deviation of the advantages (`weights.default_beta`: A / beta is a
z-score, so w = exp(z)), or `beta_scale` times it (a relative temperature); w_max = 20; top
fraction 0.3; indicator quantile 0.7, dropout 0.3.

Scores are per chunk start, possibly every `--stride` frames. A frame without its own score row
inherits the values of the latest scored chunk start before it in its episode (frame 0 of every
episode is always scored), so every frame remains a training chunk at its neighbour's weight.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import schema as S
from . import weights as W
from .errors import BadInput, is_count
from .outdirs import check_output
from .store import Store

LINEAGE_KEY = "lineage"  # the policy.json block `aloe rounds` reads
EXP_METHODS = ("aloe", "awr")  # methods whose weights are clip(exp(A / beta), 0, w_max)
SCORED_METHODS = ("aloe", "awr", "filtered", "conditioned")  # methods that read --scores
NEEDS_SCORES = ("aloe", "filtered", "conditioned")  # awr takes only the reward spec and gamma from them
OWN_ADVANTAGES = ("awr",)  # methods whose advantages are their own (Monte-Carlo), not the scores'


@dataclass(frozen=True)
class MethodOptions:
    """Settings of the improvement methods (each applies to the methods named)."""

    beta: float | None = None  # aloe, awr: temperature of exp(A / beta); None = beta_scale * std of the advantages
    beta_scale: float = 1.0  # aloe, awr: the temperature relative to std(A) when beta is not given
    w_max: float = 20.0  # aloe, awr: weights are clipped to [0, w_max]
    top_fraction: float = 0.3  # filtered: share of chunks kept, those of largest advantage
    quantile: float = 0.7  # conditioned (and export's indicator): A above this quantile is positive
    indicator_dropout: float = 0.3  # conditioned: share of training chunks whose indicator is "unknown"
    value_steps: int = 2000  # awr: gradient steps of the Monte-Carlo value network
    reward: str | None = None  # awr without scores: the reward kind; None = fit-critic's default (step-penalty)
    gamma: float | None = None  # awr without scores: the discount; None = fit-critic's default (0.99)

    def validate(self) -> "MethodOptions":
        def positive(name: str, value) -> None:
            if value is None or isinstance(value, bool) or not (math.isfinite(value) and value > 0):
                raise BadInput(f"must be a number > 0, got {value}", field="--" + name.replace("_", "-"))

        if self.beta is not None:
            positive("beta", self.beta)
        positive("beta_scale", self.beta_scale)
        if self.beta is not None and self.beta_scale != 1.0:
            raise BadInput("give --beta (absolute) or --beta-scale (relative to std(A)), not both",
                           field="--beta-scale")
        positive("w_max", self.w_max)
        if not 0 < self.top_fraction <= 1:
            raise BadInput(f"must be in (0, 1], got {self.top_fraction}", field="--top-fraction")
        if not 0 <= self.quantile < 1:
            raise BadInput(f"must be in [0, 1), got {self.quantile}", field="--quantile")
        if not 0 <= self.indicator_dropout < 1:
            raise BadInput(f"must be in [0, 1), got {self.indicator_dropout}", field="--indicator-dropout")
        if not isinstance(self.value_steps, int) or self.value_steps < 1:
            raise BadInput(f"must be an integer >= 1, got {self.value_steps}", field="--value-steps")
        if self.gamma is not None and not (isinstance(self.gamma, (int, float)) and 0.0 < self.gamma <= 1.0):
            raise BadInput(f"must be in (0, 1], got {self.gamma}", field="--gamma")
        return self


# Options that only make sense for some methods: giving one to another method is bad input.
APPLIES_TO = {"beta": EXP_METHODS, "beta_scale": EXP_METHODS, "w_max": EXP_METHODS, "top_fraction": ("filtered",),
              "indicator_dropout": ("conditioned",), "value_steps": ("awr",), "reward": ("awr",), "gamma": ("awr",)}


def check_method(method: str) -> None:
    if method not in METHODS:
        raise BadInput(f"unknown method {method!r}; available: {', '.join(METHODS)}", field="--method")


def method_options(method: str, given: dict | None) -> MethodOptions:
    """MethodOptions from the options the user gave (None values ignored), checked against the method."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    if "beta" in given and "beta_scale" in given:
        raise BadInput("give --beta (absolute) or --beta-scale (relative to std(A)), not both", field="--beta-scale")
    names = {f.name for f in dataclasses.fields(MethodOptions)}
    for key in given:
        if key not in names:
            raise BadInput(f"unknown option {key!r} (known: {', '.join(sorted(names))})", field="options")
        allowed = APPLIES_TO.get(key)
        if allowed is not None and method not in allowed:
            raise BadInput(f"applies to --method {' or '.join(allowed)} only, not {method}",
                           field="--" + key.replace("_", "-"))
    for key in ("beta", "beta_scale", "w_max", "top_fraction", "quantile", "indicator_dropout", "gamma"):  # -> JSON
        if key in given and isinstance(given[key], (int, float, np.number)) and not isinstance(given[key], bool):
            given[key] = float(given[key])
    return MethodOptions(**given).validate()


# ---------------------------------------------------------------------------- scores

def require_scores(method: str, scores) -> None:
    """Raise BadInput (field --scores) when `method` reads advantages from scores and none were given."""
    if method in NEEDS_SCORES and scores is None:
        raise BadInput(f"--method {method} needs the advantages of `aloe score` (--scores SCORES_DIR)",
                       field="--scores")


@dataclass
class FrameScores:
    """A scores directory joined to the store's frames (store order, as `Store.load_frames`)."""

    path: Path
    summary: dict
    chunk_size: int
    advantage: np.ndarray  # (M,) advantage of each scored chunk, in store frame order
    chunk_frame: np.ndarray  # (M,) global frame index of each scored chunk start
    chunk_interv: np.ndarray  # (M,) bool: the chunk's first frame is a human's
    row_of_frame: np.ndarray  # (N,) the scored chunk whose values a frame takes (its own, else the latest before it)

    def to_frames(self, per_chunk: np.ndarray) -> np.ndarray:
        """Per-chunk values (M,) -> per-frame values (N,) (frames without a score row inherit)."""
        return np.asarray(per_chunk)[self.row_of_frame]


def _read_json(path: Path, what: str) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot be parsed: {e}", path) from None
    if not isinstance(doc, dict):
        raise BadInput(f"is not a JSON object ({what})", path)
    return doc


def load_scores(scores_dir: str | os.PathLike, store: Store, advantages: bool = True) -> FrameScores:
    """Read a scores directory written by `aloe score` and join it to `store`'s frames.

    Raises BadInput naming the file and field when the scores are not this store's (the
    store's fingerprint, recorded in summary.json), lack advantages, or are incomplete.
    `advantages=False` checks and reads only the summary (AWR takes just the reward and gamma
    from it): the per-chunk arrays come back empty.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(scores_dir)
    if not root.is_dir():
        raise BadInput("no such scores directory (run `aloe score` first)", root, "--scores")
    for name in (S.SCORES_SUMMARY_FILE, S.SCORES_CHUNKS_FILE, S.SCORES_EPISODES_FILE):
        if not (root / name).is_file():
            raise BadInput(f"missing {name}: not a scores directory written by `aloe score`", root, "--scores")
    summary_path = root / S.SCORES_SUMMARY_FILE
    summary = _read_json(summary_path, "the `aloe score` summary")
    recorded = summary.get("store_fingerprint")
    if recorded is not None and recorded != store.fingerprint:
        raise BadInput(f"the scores are of a store with fingerprint {recorded} ({summary.get('store')}), but "
                       f"{store.root} has {store.fingerprint}; score this store (aloe score) first",
                       summary_path, "store_fingerprint")
    labels = summary.get("store_labels")
    if labels is not None and labels != store.labels_fingerprint:
        raise BadInput(f"the outcome labels (success, policy_id) of {store.root} changed since these scores; fit "
                       "the critic and score again (aloe fit-critic, aloe score)", summary_path, "store_labels")
    ids = list(store.episodes[S.EPISODE_ID])
    if recorded is None:  # scores from before the fingerprint was recorded: compare the episode lists
        ep_path = root / S.SCORES_EPISODES_FILE
        try:
            scored_ids = pq.read_table(ep_path, columns=[S.EPISODE_ID]).column(S.EPISODE_ID).to_pylist()
        except (OSError, pa.ArrowException, KeyError) as e:
            raise BadInput(f"cannot be read: {str(e).splitlines()[0]}", ep_path, S.EPISODE_ID) from None
        if scored_ids != ids:
            raise BadInput(f"the scores list {len(scored_ids)} episodes that are not the {len(ids)} of {store.root}; "
                           "score this store (aloe score) first", ep_path, S.EPISODE_ID)
    H = summary.get("chunk_size")
    if not advantages:
        empty = np.empty(0, dtype=np.int64)
        return FrameScores(root, summary, H if isinstance(H, int) else 0, np.empty(0), empty, empty.astype(bool),
                           empty)
    if isinstance(H, bool) or not isinstance(H, int) or H < 1:
        raise BadInput(f"missing or not a positive integer: {H!r}", summary_path, "chunk_size")

    path = root / S.SCORES_CHUNKS_FILE
    cols = [S.EPISODE_ID, S.FRAME_INDEX, S.IS_INTERVENTION, S.ADVANTAGE]
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise BadInput(f"cannot be read as Parquet: {str(e).splitlines()[0]}", path) from None
    kinds = {S.EPISODE_ID: ("a string", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
             S.FRAME_INDEX: ("an integer", pa.types.is_integer), S.IS_INTERVENTION: ("a bool", pa.types.is_boolean),
             S.ADVANTAGE: ("a number", lambda t: pa.types.is_floating(t) or pa.types.is_integer(t))}
    for c in cols:
        if c not in schema.names:
            raise BadInput("missing column", path, c)
        what, ok = kinds[c]
        if not ok(schema.field(c).type):
            raise BadInput(f"expected {what}, got {schema.field(c).type}", path, c)
    df = pd.read_parquet(path, columns=cols)
    lengths = store.episodes[S.LENGTH].to_numpy(dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    pos = pd.Series(np.arange(len(ids)), index=pd.Index(ids)).reindex(df[S.EPISODE_ID].to_numpy())
    if pos.isna().any():
        eid = df[S.EPISODE_ID].to_numpy()[int(np.flatnonzero(pos.isna().to_numpy())[0])]
        raise BadInput(f"episode {eid!r} is not in the store {store.root}", path, S.EPISODE_ID)
    ep = pos.to_numpy(dtype=np.int64)
    frame = df[S.FRAME_INDEX].to_numpy(dtype=np.int64)
    bad = np.flatnonzero((frame < 0) | (frame >= lengths[ep]))
    if bad.size:
        i = int(bad[0])
        raise BadInput(f"frame {frame[i]} of episode {ids[ep[i]]!r} is outside its {lengths[ep[i]]} frames", path,
                       S.FRAME_INDEX)
    g = starts[ep] + frame
    order = np.argsort(g, kind="stable")
    g = g[order]
    if g.size > 1 and (np.diff(g) == 0).any():
        i = int(np.flatnonzero(np.diff(g) == 0)[0])
        raise BadInput(f"frame {int(frame[order][i])} of episode {ids[ep[order][i]]!r} is scored twice", path,
                       S.FRAME_INDEX)
    adv = df[S.ADVANTAGE].to_numpy(dtype=np.float64)[order]
    n_bad = int((~np.isfinite(adv)).sum())
    if n_bad == len(adv) and n_bad:
        raise BadInput("has no advantages: the chunks were scored without a policy (V is empty); score with "
                       "--policy", path, S.ADVANTAGE)
    if n_bad:
        raise BadInput(f"{n_bad} of {len(adv)} chunks have no finite advantage", path, S.ADVANTAGE)
    scored = np.zeros(int(lengths.sum()), dtype=bool)
    scored[g] = True
    missing = np.flatnonzero(~scored[starts[lengths > 0]])
    if missing.size:
        eid = ids[int(np.flatnonzero(lengths > 0)[missing[0]])]
        raise BadInput(f"episode {eid!r} has no score at frame 0 (scores are incomplete)", path, S.FRAME_INDEX)
    # Each frame takes the latest scored chunk start at or before it (frame 0 of its episode at worst).
    rank = np.full(scored.shape[0], -1, dtype=np.int64)
    rank[g] = np.arange(len(g))
    row_of_frame = np.maximum.accumulate(rank) if rank.size else rank
    interv = df[S.IS_INTERVENTION].to_numpy(dtype=bool)[order]
    return FrameScores(root, summary, int(H), adv, g, interv, row_of_frame)


# ---------------------------------------------------------------------------- methods

@dataclass
class MethodInput:
    """What a method reads: the store, its frames' labels, the scores (None for bc), the options."""

    store: Store
    scores: FrameScores | None
    options: MethodOptions
    device: str = "cpu"
    frame_interv: np.ndarray = field(default=None)  # (N,) bool: frame t is a human's
    frame_policy: np.ndarray = field(default=None)  # (N,) object: the episode's policy_id
    seed: int = 0  # seeds what a method fits itself (AWR's value net): the policy's training seed

    def groups(self) -> dict[str, np.ndarray]:
        return {"policy_id": self.frame_policy, "intervention": self.frame_interv}


@dataclass
class Selection:
    """What a method hands to training (and export): per-chunk weights, indicators, advantages."""

    weights: np.ndarray | None = None  # one per frame of store.load_frames(episode_ids=...); None: uniform
    episode_ids: list[str] | None = None  # None: every episode
    info: dict | None = None  # numbers for the summary (JSON-able)
    advantages: np.ndarray | None = None  # (N,) the advantage each frame's chunk was judged by
    positive: np.ndarray | None = None  # (N,) bool: the RECAP indicator of each frame's chunk
    condition: bool = False  # train an advantage-conditioned policy on `positive`


def _adv_stats(a: np.ndarray, source: str) -> dict:
    a = np.asarray(a, dtype=np.float64)
    return {"source": source, "chunks": int(a.size), "mean": float(a.mean()), "std": float(a.std()),
            "min": float(a.min()), "max": float(a.max())}


def _score_signals(inp: MethodInput) -> tuple[np.ndarray, np.ndarray, dict]:
    """Per-frame advantages and RECAP indicator from the scores (the indicator's quantile is over
    the scored chunks; interventions are forced positive)."""
    s, q = inp.scores, inp.options.quantile
    pos_chunk = W.advantage_indicator(s.advantage, s.chunk_interv, q)
    positive = s.to_frames(pos_chunk) | inp.frame_interv
    info = {"advantage": _adv_stats(s.advantage, "scores"),
            "indicator": {"quantile": q, "threshold": float(np.quantile(s.advantage, q)),
                          **_positive_summary(positive, inp)}}
    return s.to_frames(s.advantage), positive, info


def _positive_summary(positive: np.ndarray, inp: MethodInput) -> dict:
    p = W.weight_summary(positive.astype(np.float64), groups=inp.groups())
    return {"positive_fraction": p["mean"], "positive_by_policy_id": p["mean_by_policy_id"],
            "positive_by_intervention": p["mean_by_intervention"]}


def _weights_info(w: np.ndarray, inp: MethodInput, w_max: float | None = None) -> dict:
    return W.weight_summary(w, w_max=w_max, groups=inp.groups())


def _bc(inp: MethodInput) -> Selection:
    """Behaviour cloning: every chunk of every episode, weight 1."""
    n = len(inp.frame_interv)
    info = {"weights": _weights_info(np.ones(n), inp)}
    if inp.scores is None:
        return Selection(info=info)
    adv, positive, extra = _score_signals(inp)
    return Selection(info={**info, **extra}, advantages=adv, positive=positive)


def _aloe(inp: MethodInput) -> Selection:
    """w = clip(exp(A / beta), 0, w_max) with the scores' advantages (beta over the scored chunks)."""
    o, s = inp.options, inp.scores
    beta, rule = W.resolve_beta(s.advantage, o.beta, o.beta_scale)
    w = s.to_frames(W.exp_weights(s.advantage, beta, o.w_max))
    adv, positive, extra = _score_signals(inp)
    return Selection(weights=w, advantages=adv, positive=positive,
                     info={"beta": float(beta), "beta_rule": rule, "w_max": o.w_max,
                           "weights": _weights_info(w, inp, o.w_max), **extra})


def _filtered(inp: MethodInput) -> Selection:
    """Weight 1 on the top fraction of scored chunks by advantage, else 0."""
    o, s = inp.options, inp.scores
    w = s.to_frames(W.top_fraction_weights(s.advantage, o.top_fraction))
    adv, positive, extra = _score_signals(inp)
    return Selection(weights=w, advantages=adv, positive=positive,
                     info={"top_fraction": o.top_fraction, "weights": _weights_info(w, inp), **extra})


def _conditioned(inp: MethodInput) -> Selection:
    """Weight 1 everywhere; the policy takes the RECAP indicator as an input."""
    adv, positive, extra = _score_signals(inp)
    info = {"weights": _weights_info(np.ones(len(adv)), inp), "indicator_dropout": inp.options.indicator_dropout,
            **extra}
    return Selection(advantages=adv, positive=positive, condition=True, info=info)


def reward_of(scores: FrameScores) -> tuple[dict, float]:
    """The resolved reward spec and gamma the scores' critic was fitted with (from the scores'
    summary.json, or from the critic's config for scores that predate them); BadInput naming the
    file and field when they are damaged."""
    from .rewards import resolved_problem

    spec, gamma = scores.summary.get("reward_spec"), scores.summary.get("gamma")
    where = scores.path / S.SCORES_SUMMARY_FILE
    if spec is None or gamma is None:
        from .critic.config import CONFIG_FILE

        critic = scores.summary.get("critic")
        try:
            cfg = json.loads((Path(str(critic)) / CONFIG_FILE).read_text())
            spec, gamma = cfg["reward"], cfg["config"]["gamma"]
        except (OSError, ValueError, KeyError, TypeError):
            raise BadInput(f"records no reward_spec and its critic ({critic}) cannot be read; re-run aloe score",
                           where, "reward_spec") from None
        where = Path(str(critic)) / CONFIG_FILE
    problem = resolved_problem(spec)
    if problem is not None:
        raise BadInput(f"{problem}; re-run aloe score", where, "reward_spec" if where.name == S.SCORES_SUMMARY_FILE
                       else "reward")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 < gamma <= 1.0:
        raise BadInput(f"must be a number in (0, 1], got {gamma!r}; re-run aloe score", where, "gamma")
    return spec, float(gamma)


def awr_reward(store: Store, scores: FrameScores | None, options: MethodOptions) -> tuple[dict, float, str]:
    """The resolved reward spec and gamma of AWR's returns, and where they came from: the scores'
    critic when there are scores (so AWR and ALOE weigh the same returns), else `options.reward` /
    `options.gamma` with fit-critic's defaults for what is not given, resolved on the store."""
    if scores is not None:
        if options.reward is not None or options.gamma is not None:
            given = "--reward" if options.reward is not None else "--gamma"
            raise BadInput(f"comes from --scores (the reward and gamma its critic was fitted with); "
                           f"give one or the other", field=given)
        return (*reward_of(scores), "scores")
    from .critic.config import CriticConfig
    from .rewards import RewardSpec, resolve_rewards

    d = CriticConfig()
    spec = RewardSpec(options.reward or d.reward, d.t_norm, d.c_fail)
    gamma = d.gamma if options.gamma is None else float(options.gamma)
    return resolve_rewards(spec, store.episodes, str(store.root)), gamma, "options"


def mc_advantages(store: Store, scores: FrameScores | None, options: MethodOptions, device: str = "cpu",
                  seed: int = 0) -> tuple[np.ndarray, dict]:
    """A_t = G_t - V_mc(o_t) at every frame: the logged discounted return-to-go under the reward
    spec and gamma of `awr_reward`, minus a Monte-Carlo state value regressed on those returns
    (`options.value_steps` gradient steps)."""
    from . import chunks as C
    from .mc_value import ValueConfig, fit_mc_value
    from .rewards import frame_rewards

    reward, gamma, source = awr_reward(store, scores, options)
    eps = store.episodes
    cols = [S.OBS_STATE] + ([S.REWARD] if reward["kind"] == "logged" else [])
    frames = store.load_frames(cols)
    r = frame_rewards(reward, eps, frames.columns.get(S.REWARD), where=str(store.root))
    lengths = eps[S.LENGTH].to_numpy(dtype=np.int64)
    G = C.discounted_return_to_go(r, lengths, gamma)
    tasks = eps[S.TASK].fillna("").astype(str).to_numpy()
    vocab = {t: i + 1 for i, t in enumerate(sorted(set(tasks)))}
    task_ids = np.repeat(np.array([vocab[t] for t in tasks], dtype=np.int64), lengths)
    cfg = ValueConfig(steps=options.value_steps, seed=seed, device=device)
    V, info = fit_mc_value(frames.columns[S.OBS_STATE], task_ids, G, cfg, num_tasks=len(vocab))
    return G - V, {"reward": reward["kind"], "gamma": gamma, "reward_from": source, "value_config": cfg.to_dict(),
                   **info}


def _awr(inp: MethodInput) -> Selection:
    """AWR: w = clip(exp(A_mc / beta), 0, w_max), A_mc = return-to-go - V_mc (no critic, no policy)."""
    o = inp.options
    adv, value_info = mc_advantages(inp.store, inp.scores, o, inp.device, seed=inp.seed)
    beta, rule = W.resolve_beta(adv, o.beta, o.beta_scale)
    w = W.exp_weights(adv, beta, o.w_max)
    positive = W.advantage_indicator(adv, inp.frame_interv, o.quantile)
    return Selection(weights=w, advantages=adv, positive=positive, info={
        "beta": float(beta), "beta_rule": rule, "w_max": o.w_max,
        "weights": _weights_info(w, inp, o.w_max), "advantage": _adv_stats(adv, "monte-carlo"),
        "indicator": {"quantile": o.quantile, "threshold": float(np.quantile(adv, o.quantile)),
                      **_positive_summary(positive, inp)},
        "value": value_info})


METHODS: dict[str, Callable[[MethodInput], Selection]] = {
    "aloe": _aloe, "awr": _awr, "filtered": _filtered, "conditioned": _conditioned, "bc": _bc}


def select(store: Store, method: str, scores: FrameScores | None, options: MethodOptions,
           device: str = "cpu", seed: int = 0) -> Selection:
    """Run `method` on the store (and scores): the per-frame weights, advantages and indicators."""
    check_method(method)
    require_scores(method, scores)
    frames = store.load_frames([S.IS_INTERVENTION])
    policy = np.repeat(store.episodes[S.POLICY_ID].fillna(S.UNKNOWN_POLICY_ID).astype(str).to_numpy(),
                       frames.lengths)
    inp = MethodInput(store, scores, options, device, frames.columns[S.IS_INTERVENTION].astype(bool), policy, seed)
    return METHODS[method](inp)


# ---------------------------------------------------------------------------- improve

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def lineage_round(doc: dict, path: Path) -> int:
    """The round a policy.json records (0 for a policy without a lineage); BadInput naming the file
    and field when it is not a whole number >= 0."""
    lineage = doc.get(LINEAGE_KEY)
    if lineage is not None and not isinstance(lineage, dict):
        raise BadInput(f"is not a JSON object: {lineage!r}", path, LINEAGE_KEY)
    r = (lineage or {}).get("round", 0)
    if not is_count(r, 0):
        raise BadInput(f"not a round number >= 0: {r!r}", path, f"{LINEAGE_KEY}.round")
    return r


ARCHITECTURE_FLAGS = {"chunk_size": "--chunk-size", "obs": "--obs"}  # the settings a fine-tune cannot change


def check_base_architecture(base_doc: dict, settings: dict, path: Path) -> None:
    """Raise BadInput when `settings` asks for a network other than the --policy base's (its
    policy.json at `path`): a fine-tune keeps the base's chunk size and inputs, so a differing
    --chunk-size or --obs is refused rather than silently replaced."""
    from .vision import parse_obs

    config = base_doc.get("config") if isinstance(base_doc.get("config"), dict) else {}
    for key, flag in ARCHITECTURE_FLAGS.items():
        if key not in settings:
            continue
        given, theirs = settings[key], config.get(key, base_doc.get(key) if key == "chunk_size" else None)
        if key == "obs":
            try:
                base_spec = parse_obs(theirs, "config.obs")
            except BadInput as e:
                raise BadInput(str(e), path) from None  # "<policy.json>: config.obs: <what is wrong>"
        same = parse_obs(given, flag) == base_spec if key == "obs" else given == theirs
        if not same:
            shown = "state" if key == "obs" and theirs is None else theirs
            raise BadInput(f"{given} differs from the --policy base's {key.replace('_', ' ')} {shown}; a fine-tune "
                           "keeps the base's network (leave the option out)", field=flag)


def improve(store_path: str | os.PathLike, out: str | os.PathLike, method: str = "bc",
            settings: dict | None = None, base: str | os.PathLike | None = None,
            scores: str | os.PathLike | None = None, options: dict | None = None, round_name: str | None = None,
            force: bool = False, progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Train a new built-in chunk policy from the store with `method`; returns the training summary.

    `settings`: PolicyConfig fields to override (chunk_size, steps, batch_size, lr, seed, device,
    ...); `base`: a policy directory to fine-tune (its chunk size and network are kept; the new
    policy's round is the base's + 1); `scores`: a directory written by `aloe score` on this
    store (needed by every method but bc and awr); `options`: MethodOptions fields (beta, w_max, ...).
    The new policy.json records the lineage (round, base, store, scores, critic, method,
    settings, weight summary).
    """
    from .policy.builtin import PolicyConfig, read_policy_json, resolve_device, train_policy
    from .rounds import policy_fingerprint

    check_method(method)
    opts = method_options(method, options)
    settings = dict(settings or {})
    require_scores(method, scores)
    base_doc = read_policy_json(base, "--policy") if base is not None else None
    base_round = None if base_doc is None else lineage_round(base_doc, Path(base) / S.POLICY_FILE)
    if base_doc is not None:
        check_base_architecture(base_doc, settings, Path(base) / S.POLICY_FILE)
    if base_doc is not None and isinstance(base_doc.get("chunk_size"), int):
        settings.setdefault("chunk_size", base_doc["chunk_size"])  # the base's network is kept
    base_config = base_doc.get("config") if base_doc is not None else None
    base_flow = base_config.get("flow_steps") if isinstance(base_config, dict) else None
    if is_count(base_flow):
        settings.setdefault("flow_steps", base_flow)  # and so is how it samples
    store = Store.open(store_path)
    frame_scores = None if scores is None else load_scores(scores, store, advantages=method not in OWN_ADVANTAGES)
    if frame_scores is not None and method in NEEDS_SCORES:
        # The scored chunk is the first Hs actions of the policy's chunk (ALOE: predict 50, execute
        # and score 25), so the policy's chunks may be longer than the scores' but never shorter.
        Hs = frame_scores.chunk_size
        Hb = base_doc.get("chunk_size") if base_doc is not None else None
        if base_doc is not None and not (isinstance(Hb, int) and Hb >= Hs):
            raise BadInput(f"the base policy's chunks have {Hb} actions but the scores ({frame_scores.path}) are of "
                           f"chunks of {Hs}; fit the critic with --chunk-size {Hb} or less",
                           Path(base) / S.POLICY_FILE, "chunk_size")
        if base_doc is None and settings.setdefault("chunk_size", Hs) < Hs:
            raise BadInput(f"{settings['chunk_size']} is shorter than the scores' chunks ({Hs} actions, "
                           f"{frame_scores.path / S.SCORES_SUMMARY_FILE})", field="--chunk-size")
    if method == "conditioned":
        settings.update(advantage_conditioning=True, indicator_dropout=opts.indicator_dropout)
    config = PolicyConfig(**settings).validate(as_options=True)
    out = Path(out)
    check_output(out, "policy", "--out", replace=force)
    device = resolve_device(config.device)
    selection = select(store, method, frame_scores, opts, device, seed=config.seed)

    settings_used = {k: v for k, v in dataclasses.asdict(opts).items()
                     if APPLIES_TO.get(k) is None or method in APPLIES_TO[k]}
    if method not in ("conditioned",):
        settings_used.pop("quantile", None)
    for key in ("beta", "beta_rule"):
        if selection.info and key in selection.info:
            settings_used[key] = selection.info[key]
    if method == "awr":  # the reward and gamma its returns were computed with, resolved
        value = selection.info["value"]
        settings_used.update(reward=value["reward"], gamma=value["gamma"], reward_from=value["reward_from"])
    settings_used["training"] = {k: getattr(config, k) for k in ("chunk_size", "steps", "batch_size", "lr", "seed")}
    lineage = {
        "round": 0 if base_doc is None else int(base_round) + 1,
        "round_name": round_name or out.name,
        "base_policy": None if base is None else str(Path(base).resolve()),
        "base_policy_fingerprint": None if base is None else policy_fingerprint(base),
        "store": str(store.root.resolve()),
        "store_fingerprint": store.fingerprint,
        "store_labels": store.labels_fingerprint,  # the outcomes the rewards came from (`ingest --force --labels`)
        "store_episodes": len(store.episodes),  # `aloe rounds` checks the store's first this many against both
        "scores": None if frame_scores is None else str(frame_scores.path.resolve()),
        "critic": None if frame_scores is None else frame_scores.summary.get("critic"),
        "method": method,
        "settings": settings_used,
        "weights": (selection.info or {}).get("weights"),
        "created": _now(),
    }
    summary = train_policy(store, out, config, weights=selection.weights, episode_ids=selection.episode_ids,
                           init_from=base, progress=progress, overwrite=force,
                           meta={"method": method, "method_options": settings_used},
                           indicators=selection.positive if selection.condition else None, lineage=lineage)
    return {"method": method, "store": str(store_path), **summary,
            **{k: lineage[k] for k in ("round", "round_name", "base_policy", "scores", "critic")},
            **(selection.info or {})}
