"""Scoring: Q, V and advantages of logged chunks, per-episode summaries and the policy value.

- `score_chunks`: one row per scored chunk start (every `stride` frames of every episode):
  Q of the logged chunk (aggregated over the ensemble as the critic was trained), its spread
  across heads, V^pi(o_t) = mean over K policy chunks of aggregated Q, advantage Q - V and the
  advantage divided by the std of advantages within its task. Streams over the store one
  episode table at a time and scores in batches: memory ~ batch plus the returned columns
  (about 60 bytes a chunk), not store.
- `episode_summaries`: one row per episode (return under the critic's reward spec, V and Q at
  the start, extreme advantages, the largest fall of V, critical chunks, intervention spans).
- `policy_value`: the mean of V^pi at the episodes' first frames with a bootstrap interval.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import pandas as pd

from . import chunks as C
from . import schema as S
from .errors import BadInput, PolicyError
from .outdirs import check_output, kind_of
from .store import Store, vectors

CRITICAL_Z = 2.0  # a chunk is critical when its advantage is this many task stds below V (ADVANTAGE_NORM <= -2)


def check_critic_fits_store(critic, store: Store) -> None:
    """The critic must have been fitted on observations and actions shaped like the store's."""
    where = critic.path if critic.path is not None else "critic"
    for name, have, want in (("action_dim", critic.action_dim, store.action_dim),
                             ("state_dim", critic.state_dim, store.state_dim)):
        if have != want:
            what = "actions" if name == "action_dim" else "states"
            raise BadInput(f"the critic was fitted on {what} of {have} numbers but the store {store.root} has "
                           f"{want}", where, name)


def samples_per_state(critic, samples: int | None) -> int:
    """K, the policy chunks per state for V: `samples` when given, else what the critic was fitted with."""
    return int(samples if samples is not None else critic.config["config"].get("samples", 8))


def score_chunks(store: Store | str | os.PathLike, critic, policy=None, samples: int | None = None,
                 stride: int = 1, batch_size: int = 1024, device: str | None = None,
                 policy_spec: str | None = None, policy_args: dict | None = None,
                 progress: Callable | None = None, q_only: bool = False) -> pd.DataFrame:
    """Score every `stride`-th chunk start of every episode. Returns a DataFrame with the
    schema's chunk columns, in store order.

    `policy`: a ChunkPolicy, or None to load `policy_spec` (default: the critic's own
    recorded policy). With no policy at all, V and the advantages are NaN.
    `samples`: K policy chunks per state (default: the critic's training K).
    `q_only`: Q of the logged chunks alone; no policy is loaded or sampled (V and the advantages NaN).
    """
    import torch

    from .critic.net import aggregate
    from .policy import check_against_store, close_policy, load_policy, sample_checked

    store = store if isinstance(store, Store) else Store.open(store)
    if len(store.episodes) == 0:
        raise BadInput("has no episodes to score", store.root)
    check_critic_fits_store(critic, store)
    if stride < 1:
        raise BadInput(f"must be at least 1, got {stride}", field="--stride")
    if batch_size < 1:
        raise BadInput(f"must be at least 1, got {batch_size}", field="--batch-size")
    recorded = critic.config.get("policy") or {}
    if policy_args and not policy_spec and policy is None:
        raise BadInput("applies to the policy given with --policy; the critic's recorded policy is scored with its "
                       f"recorded arguments {recorded.get('args') or {}}", field="--policy-arg")
    if q_only:
        policy, policy_spec, recorded = None, None, {}
    owned = None  # a policy loaded here is closed here
    if policy is None:
        spec = policy_spec or recorded.get("spec")
        if spec:
            args = policy_args if policy_spec else recorded.get("args")
            policy = owned = load_policy(spec, args, device=str(critic.device))
    spec = policy_spec or recorded.get("spec") or "policy"
    H = critic.chunk_size
    if policy is not None:
        check_against_store(policy, store.action_dim, spec)
        if int(policy.chunk_size) < H:
            raise PolicyError(f"the policy's chunks have {policy.chunk_size} actions but the critic scores chunks "
                              f"of {H}", spec, "--policy")
    K = samples_per_state(critic, samples)
    if K < 1:
        raise BadInput(f"must be at least 1, got {K}", field="--samples")
    agg, std_coef = critic.aggregate, critic.std_coef

    # Every output column is allocated once, at its final size, and filled in place: nothing
    # long-lived is allocated while batches come and go, so the freed batch buffers are reused
    # and the process stays at ~ batch memory (appending per-episode arrays fragmented the heap:
    # +1.8 KB of RSS per chunk, 2.1x at 10x the chunks). Episode-level columns are repeated from
    # one value per episode at the end.
    eps = store.episodes
    lengths = eps[S.LENGTH].to_numpy(dtype=np.int64)
    per_episode = -(-lengths // stride)  # chunk starts 0, stride, ... < T
    total = int(per_episode.sum())
    frame_col, chunk_len_col = np.empty(total, np.int64), np.empty(total, np.int64)
    interv_col = np.empty(total, bool)
    q_col, q_std_col, v_col = (np.full(total, np.nan, np.float32) for _ in range(3))
    scored = 0  # rows of q_col, q_std_col, v_col filled so far (batches are scored in store order)
    cam_obs = getattr(critic, "obs", None)
    extra_cols = list(cam_obs.extras) if cam_obs is not None else []
    cam_cols = list(cam_obs.images) if cam_obs is not None else []
    pending: dict[str, list] = {"state": [], "chunk": [], "task": [], "frame": [],
                                **{c: [] for c in extra_cols + cam_cols}}
    n_pending = 0

    def flush() -> None:
        nonlocal n_pending, scored
        if not n_pending:
            return
        state = np.concatenate(pending["state"])
        chunk = np.concatenate(pending["chunk"])
        tasks = [t for ts in pending["task"] for t in ts]
        extra = {c: np.concatenate(pending[c]) for c in extra_cols + cam_cols}  # --obs columns
        feats = critic.features(state, extra, np.concatenate(pending["frame"]), tasks)
        ims = {c: extra[c] for c in cam_cols} or None
        rows = slice(scored, scored + len(state))
        with torch.no_grad():
            qh = torch.as_tensor(critic.q_heads(feats, chunk[:, None], ims))[:, 0]  # (B, M)
            q_col[rows] = aggregate(qh, agg, std_coef).numpy()
            q_std_col[rows] = qh.std(-1, unbiased=False).numpy()
            if policy is not None:
                a = sample_checked(policy, {S.OBS_STATE: state, S.TASK: tasks, **extra}, K, spec)[:, :, :H]
                qv = torch.as_tensor(critic.q_heads(feats, a, ims))  # (B, K, M)
                v_col[rows] = aggregate(qv, agg, std_coef).mean(1).numpy()
        scored += len(state)
        for k in pending:
            pending[k] = []
        n_pending = 0

    done_frames, total_frames, pos = 0, int(lengths.sum()), 0
    columns = [S.OBS_STATE, S.ACTION, S.IS_INTERVENTION] + extra_cols + cam_cols
    for row, table in store.iter_episode_tables(columns=columns):  # each of `lengths` frames, or refused
        T = table.num_rows
        extra_ep = {c: vectors(table.column(c)) for c in extra_cols}
        if cam_cols:
            from .vision import decode_batch

            extra_ep.update({c: decode_batch(table.column(c).to_pylist(), store.root, c) for c in cam_cols})
        state = vectors(table.column(S.OBS_STATE), store.state_dim)
        action = vectors(table.column(S.ACTION), store.action_dim)
        interv = table.column(S.IS_INTERVENTION).to_numpy(zero_copy_only=False).astype(bool)
        starts = np.arange(0, T, stride, dtype=np.int64)
        end = np.full(len(starts), T, dtype=np.int64)
        win, _ = C.chunk_windows(starts, end, H)  # padded with the last action, as in training
        task = "" if row[S.TASK] is None or pd.isna(row[S.TASK]) else str(row[S.TASK])
        for s in range(0, len(starts), batch_size):  # long episodes are cut into batches
            sel = slice(s, s + batch_size)
            pending["state"].append(state[starts[sel]])
            pending["chunk"].append(action[win[sel]])
            pending["task"].append([task] * len(starts[sel]))
            pending["frame"].append(starts[sel])
            for col, v in extra_ep.items():
                pending[col].append(v[starts[sel]])
            n_pending += len(starts[sel])
            if n_pending >= batch_size:
                flush()
        rows = slice(pos, pos + len(starts))
        frame_col[rows], interv_col[rows] = starts, interv[starts]
        chunk_len_col[rows] = C.chunk_lengths(starts, end, H)
        pos += len(starts)
        done_frames += T
        if progress is not None:
            progress("score", done_frames, total_frames, {})
    flush()

    def repeated(column: str) -> np.ndarray:  # one object per episode, referenced by each of its chunks
        return np.repeat(eps[column].to_numpy(dtype=object), per_episode)

    df = pd.DataFrame({
        S.EPISODE_ID: pd.Series(repeated(S.EPISODE_ID), dtype=object),
        S.FRAME_INDEX: frame_col,
        S.POLICY_ID: pd.Series(repeated(S.POLICY_ID), dtype=object),
        S.TASK: pd.Series(repeated(S.TASK), dtype=object),
        S.IS_INTERVENTION: interv_col,
        S.Q: q_col,
        S.Q_STD: q_std_col,
        S.V: v_col,
        S.CHUNK_LEN: chunk_len_col,
    })
    df[S.ADVANTAGE] = (df[S.Q] - df[S.V]).astype(np.float32)
    df[S.ADVANTAGE_NORM] = normalized_advantages(df[S.ADVANTAGE].to_numpy(), df[S.TASK].to_numpy())
    order = [S.EPISODE_ID, S.FRAME_INDEX, S.POLICY_ID, S.TASK, S.IS_INTERVENTION, S.Q, S.Q_STD, S.V, S.ADVANTAGE,
             S.ADVANTAGE_NORM, S.CHUNK_LEN]
    if owned is not None:
        close_policy(owned)
    return df[order]


def normalized_advantages(adv: np.ndarray, tasks: np.ndarray) -> np.ndarray:
    """advantage / std of the advantages of the same task (population std; NaN where it is 0)."""
    adv = np.asarray(adv, dtype=np.float64)
    keys = pd.Series(tasks, dtype=object).fillna("").to_numpy()
    std = pd.Series(adv).groupby(keys).transform(lambda x: x.std(ddof=0)).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(std > 0, adv / np.where(std > 0, std, 1.0), np.nan)
    return out.astype(np.float32)


def policy_value(values_at_start, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean of V^pi at the episodes' first frames with a percentile bootstrap interval over episodes.

    {"estimate", "ci_low", "ci_high"}; all None when there is no finite value.
    """
    v = np.asarray(values_at_start, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"estimate": None, "ci_low": None, "ci_high": None}
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    block = max(1, 2_000_000 // v.size)  # resamples drawn a block at a time: memory stays bounded
    for i in range(0, n_boot, block):
        k = min(block, n_boot - i)
        means[i:i + k] = v[rng.integers(0, v.size, size=(k, v.size))].mean(1)
    a = (1 - level) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return {"estimate": float(v.mean()), "ci_low": float(lo), "ci_high": float(hi)}


def intervention_spans(flags: np.ndarray) -> list[list[int]]:
    """[start, end) frame spans where `flags` is True, e.g. [0,1,1,0,1] -> [[1, 3], [4, 5]]."""
    f = np.concatenate([[False], np.asarray(flags, dtype=bool), [False]])
    d = np.diff(f.astype(np.int8))
    return [[int(s), int(e)] for s, e in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1))]


def episode_returns(store: Store, reward: dict, gamma: float) -> np.ndarray:
    """(E,) discounted return of every logged episode under a resolved reward spec (store order)."""
    from .rewards import frame_rewards

    eps = store.episodes
    logged = None
    if reward["kind"] == "logged":
        logged = store.load_frames([S.REWARD]).columns[S.REWARD]
    r = frame_rewards(reward, eps, logged, where=str(store.root))
    lengths = eps[S.LENGTH].to_numpy(dtype=np.int64)
    rtg = C.discounted_return_to_go(r, lengths, gamma)
    return rtg[C.episode_bounds(lengths)[0]]


def episode_summaries(chunks_df: pd.DataFrame, store: Store, critic_config: dict) -> pd.DataFrame:
    """One row per episode of the store (the schema's episode score columns)."""
    eps = store.episodes.reset_index(drop=True)
    returns = episode_returns(store, critic_config["reward"], float(critic_config["config"]["gamma"]))
    spans = [intervention_spans(t.column(S.IS_INTERVENTION).to_numpy(zero_copy_only=False))
             for _, t in store.iter_episode_tables(columns=[S.IS_INTERVENTION])]
    groups = chunks_df.groupby(S.EPISODE_ID, sort=False).indices
    rows = []
    for i, ep in eps.iterrows():
        idx = groups.get(ep[S.EPISODE_ID])
        row = {S.EPISODE_ID: ep[S.EPISODE_ID], S.POLICY_ID: ep[S.POLICY_ID], S.TASK: ep[S.TASK],
               S.SUCCESS: None if pd.isna(ep[S.SUCCESS]) else bool(ep[S.SUCCESS]), S.LENGTH: int(ep[S.LENGTH]),
               S.RETURN: float(returns[i]), S.INTERVENTION_SPANS: spans[i]}
        row.update(_chunk_stats(chunks_df.iloc[idx] if idx is not None else chunks_df.iloc[:0]))
        rows.append(row)
    return _episodes_frame(rows)


def _chunk_stats(ch: pd.DataFrame) -> dict:
    ch = ch.sort_values(S.FRAME_INDEX, kind="mergesort")
    f = ch[S.FRAME_INDEX].to_numpy()
    v, q, a = (ch[k].to_numpy(dtype=np.float64) for k in (S.V, S.Q, S.ADVANTAGE))
    z = ch[S.ADVANTAGE_NORM].to_numpy(dtype=np.float64)
    first = len(f) and f[0] == 0
    out = {S.V_START: float(v[0]) if first else None, S.Q_START: float(q[0]) if first else None,
           S.ADV_MIN: None, S.ADV_MIN_FRAME: None, S.ADV_MAX: None, S.ADV_MAX_FRAME: None,
           S.V_DROP_MAX: None, S.V_DROP_FRAME: None, S.CRITICAL_FRAMES: []}
    ok = np.isfinite(a)
    if ok.any():
        i_min, i_max = np.nanargmin(np.where(ok, a, np.nan)), np.nanargmax(np.where(ok, a, np.nan))
        out.update({S.ADV_MIN: float(a[i_min]), S.ADV_MIN_FRAME: int(f[i_min]),
                    S.ADV_MAX: float(a[i_max]), S.ADV_MAX_FRAME: int(f[i_max])})
    drops = v[:-1] - v[1:]  # a fall of V from one scored chunk to the next is positive
    if len(drops) and np.isfinite(drops).any():
        j = int(np.nanargmax(drops))
        out.update({S.V_DROP_MAX: float(drops[j]), S.V_DROP_FRAME: int(f[j + 1])})
    out[S.CRITICAL_FRAMES] = [int(x) for x in f[np.isfinite(z) & (z <= -CRITICAL_Z)]]
    return out


def _episodes_frame(rows: list[dict]) -> pd.DataFrame:
    cols = [S.EPISODE_ID, S.POLICY_ID, S.TASK, S.SUCCESS, S.LENGTH, S.RETURN, S.V_START, S.Q_START, S.ADV_MIN,
            S.ADV_MIN_FRAME, S.ADV_MAX, S.ADV_MAX_FRAME, S.V_DROP_MAX, S.V_DROP_FRAME, S.CRITICAL_FRAMES,
            S.INTERVENTION_SPANS]
    df = pd.DataFrame(rows, columns=cols)
    for k in (S.RETURN, S.V_START, S.Q_START, S.ADV_MIN, S.ADV_MAX, S.V_DROP_MAX):
        df[k] = pd.to_numeric(df[k], errors="coerce").astype(np.float64)
    for k in (S.ADV_MIN_FRAME, S.ADV_MAX_FRAME, S.V_DROP_FRAME):
        df[k] = df[k].astype("Int64")
    df[S.LENGTH] = df[S.LENGTH].astype(np.int64)
    df[S.SUCCESS] = df[S.SUCCESS].astype("boolean")
    return df


def episodes_table(df: pd.DataFrame):
    """The episode scores as an Arrow table with the schema's types (nullable ints, list columns)."""
    import pyarrow as pa

    return pa.table({
        S.EPISODE_ID: pa.array(df[S.EPISODE_ID].tolist(), pa.string()),
        S.POLICY_ID: pa.array(df[S.POLICY_ID].tolist(), pa.string()),
        S.TASK: pa.array([None if pd.isna(t) else t for t in df[S.TASK]], pa.string()),
        S.SUCCESS: pa.array([None if pd.isna(s) else bool(s) for s in df[S.SUCCESS]], pa.bool_()),
        S.LENGTH: pa.array(df[S.LENGTH].tolist(), pa.int64()),
        **{k: pa.array([None if pd.isna(x) else float(x) for x in df[k]], pa.float64())
           for k in (S.RETURN, S.V_START, S.Q_START, S.ADV_MIN)},
        S.ADV_MIN_FRAME: pa.array([None if pd.isna(x) else int(x) for x in df[S.ADV_MIN_FRAME]], pa.int64()),
        S.ADV_MAX: pa.array([None if pd.isna(x) else float(x) for x in df[S.ADV_MAX]], pa.float64()),
        S.ADV_MAX_FRAME: pa.array([None if pd.isna(x) else int(x) for x in df[S.ADV_MAX_FRAME]], pa.int64()),
        S.V_DROP_MAX: pa.array([None if pd.isna(x) else float(x) for x in df[S.V_DROP_MAX]], pa.float64()),
        S.V_DROP_FRAME: pa.array([None if pd.isna(x) else int(x) for x in df[S.V_DROP_FRAME]], pa.int64()),
        S.CRITICAL_FRAMES: pa.array([list(x) for x in df[S.CRITICAL_FRAMES]], pa.list_(pa.int64())),
        S.INTERVENTION_SPANS: pa.array([list(map(list, x)) for x in df[S.INTERVENTION_SPANS]],
                                       pa.list_(pa.list_(pa.int64()))),
    })


def chunks_table(df: pd.DataFrame):
    import pyarrow as pa

    return pa.table({
        S.EPISODE_ID: pa.array(df[S.EPISODE_ID].tolist(), pa.string()),
        S.FRAME_INDEX: pa.array(df[S.FRAME_INDEX].to_numpy(np.int64)),
        S.POLICY_ID: pa.array(df[S.POLICY_ID].tolist(), pa.string()),
        S.TASK: pa.array([None if pd.isna(t) else t for t in df[S.TASK]], pa.string()),
        S.IS_INTERVENTION: pa.array(df[S.IS_INTERVENTION].to_numpy(bool)),
        **{k: pa.array(df[k].to_numpy(np.float32)) for k in (S.Q, S.Q_STD, S.V, S.ADVANTAGE, S.ADVANTAGE_NORM)},
        S.CHUNK_LEN: pa.array(df[S.CHUNK_LEN].to_numpy(np.int64)),
    })


def score_summary(chunks_df: pd.DataFrame, episodes_df: pd.DataFrame, critic, store: Store,
                  policy_spec: str | None, n_boot: int = 1000, seed: int = 0) -> dict:
    """summary.json: the policy value with its interval, per task and per logged policy_id, warnings."""
    v0 = episodes_df[S.V_START].to_numpy(dtype=np.float64)
    tasks = episodes_df[S.TASK].fillna("").astype(str)
    per_task = {}
    for t, g in episodes_df.groupby(tasks, sort=True):
        per_task[t] = {**policy_value(g[S.V_START], n_boot, seed), "episodes": int(len(g))}
    per_pid = {}
    for p, g in episodes_df.groupby(episodes_df[S.POLICY_ID].fillna(S.UNKNOWN_POLICY_ID), sort=True):
        labelled = g[S.SUCCESS].dropna()
        per_pid[p] = {"v_start": policy_value(g[S.V_START], n_boot, seed),
                      "q_start": policy_value(g[S.Q_START], n_boot, seed),
                      "return": policy_value(g[S.RETURN], n_boot, seed),
                      "success_rate": None if labelled.empty else float(labelled.astype(bool).mean()),
                      "episodes": int(len(g))}
    recorded = (critic.config.get("policy") or {}).get("spec")
    used = policy_spec or recorded
    warnings = []
    if policy_spec and recorded and policy_spec != recorded:
        warnings.append(f"scored with --policy {policy_spec} but the critic was fitted for {recorded}: its Q "
                        "bootstraps with the other policy's chunks, so V and the advantages mix the two")
    if used is None:
        warnings.append("no policy: the critic records none and no --policy was given, so V and the advantages "
                        "are empty")
    boot = critic.config["config"]["bootstrap"]
    if boot != "policy":
        warnings.append(f"the critic was fitted with --bootstrap {boot}: its Q is the logged behaviour's value, "
                        "not the evaluated policy's")
    fingerprint, labels = store.fingerprint, store.labels_fingerprint
    if critic.config["store"]["fingerprint"] != fingerprint:
        warnings.append(f"the store differs from the one the critic was fitted on ({fingerprint} vs "
                        f"{critic.config['store']['fingerprint']})")
    elif critic.config["store"].get("labels", labels) != labels:
        warnings.append("the store's outcome labels (success, policy_id) changed since the critic was fitted: its "
                        "rewards are the old labels'; fit it again (aloe fit-critic)")
    return {
        "store": str(store.root),
        "store_fingerprint": fingerprint,  # `aloe improve` / `aloe export` check it against their store
        "store_labels": labels,  # ... and these: scores of relabelled episodes are stale
        "critic": str(critic.path),
        "policy": used,
        "policy_value": policy_value(v0, n_boot, seed),
        "per_task": per_task,
        "per_policy_id": per_pid,
        "episodes": int(len(episodes_df)),
        "chunks": int(len(chunks_df)),
        "chunk_size": critic.chunk_size,
        "bootstrap": boot,
        "reward": critic.config["reward"]["kind"],
        "reward_spec": critic.config["reward"],  # resolved (t_norm per task...): `aloe improve --method awr` reuses it
        "gamma": float(critic.config["config"]["gamma"]),
        "warnings": warnings,
    }


def score(store: Store | str | os.PathLike, critic_dir: str | os.PathLike, out_dir: str | os.PathLike,
          policy_spec: str | None = None, policy_args: dict | None = None, samples: int | None = None,
          stride: int = 1, batch_size: int = 1024, device: str = "auto", progress: Callable | None = None) -> dict:
    """The library side of `aloe score`: score, summarise, write chunks.parquet, episodes.parquet and
    summary.json into `out_dir` (each by atomic rename, once all three are written). A report of earlier
    scores in `out_dir` (report.html, report-*.png) is deleted before the new files go in place: it would
    contradict them (`aloe score --report`, `aloe report` write one of these); a directory that holds no
    scores yet is left as it is. Returns the summary."""
    import json
    from pathlib import Path

    import pyarrow.parquet as pq

    from .critic import load_critic
    from .report import remove_report

    out_dir = Path(out_dir)
    check_output(out_dir, "scores", "--out")
    store = store if isinstance(store, Store) else Store.open(store)
    critic = load_critic(critic_dir, device=device)
    chunks_df = score_chunks(store, critic, samples=samples, stride=stride, batch_size=batch_size,
                             policy_spec=policy_spec, policy_args=policy_args, progress=progress)
    episodes_df = episode_summaries(chunks_df, store, critic.config)
    summary = score_summary(chunks_df, episodes_df, critic, store, policy_spec)
    summary["stride"] = stride
    summary["samples"] = samples_per_state(critic, samples)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = (S.SCORES_CHUNKS_FILE, S.SCORES_EPISODES_FILE, S.SCORES_SUMMARY_FILE)  # summary.json, the marker, last
    tmps = [out_dir / (name + ".tmp") for name in names]
    try:
        pq.write_table(chunks_table(chunks_df), tmps[0])
        pq.write_table(episodes_table(episodes_df), tmps[1])
        tmps[2].write_text(json.dumps(summary, indent=2))
    except BaseException:  # a failed write (a full disk) leaves the earlier scores and their report as they were
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise
    if kind_of(out_dir) == "scores":  # a report of earlier scores; a report.html of anything else is not aloe's
        remove_report(out_dir)
    for tmp, name in zip(tmps, names):
        os.replace(tmp, out_dir / name)
    return summary
