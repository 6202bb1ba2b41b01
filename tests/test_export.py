"""`aloe export --to lerobot`: a LeRobotDataset v3.0 with per-frame aloe.advantage / aloe.weight /
aloe.advantage_positive, read back by aloe's own LeRobot reader and (slow, when installed) by
LeRobot's `LeRobotDataset`.

The store is written here (states, actions, an extra observation vector, a PNG camera, logged
rewards, human takeovers, two tasks, three policy ids); its scores come from the real pipeline
(a round-0 policy trained by `aloe improve`, a critic fitted for it, `aloe score --stride 2`).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from aloe_cli import schema as S
from aloe_cli.critic import CriticConfig, fit_critic
from aloe_cli.episode import Episode
from aloe_cli.errors import BadInput
from aloe_cli.export import ALOE_META_PATH, aggregate_stats, export, feature_stats
from aloe_cli.improve import improve
from aloe_cli.scoring import score
from aloe_cli.store import Store

torch.set_num_threads(1)
FPS = 10.0
TASKS = ["pick the cube", "open the drawer"]
ENV = "observation.environment_state"
CAM = "observation.images.wrist"
TINY = dict(hidden=32, depth=1, obs_layers=1, batch_size=64, lr=2e-3, eval_every=50, log_every=50, device="cpu",
            warmup_steps=5)


def png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_store(path, n=8, seed=0, fps=FPS, outcomes=True) -> Store:
    rng = np.random.default_rng(seed)
    store = Store.open(path, create=True)
    with store.writer("synthetic", "test") as w:
        for i in range(n):
            T = int(rng.integers(6, 13))
            interv = np.zeros(T, bool)
            if i % 3 == 2:
                interv[2:5] = True
            w.add(Episode(
                state=rng.normal(size=(T, 3)).astype(np.float32), action=rng.normal(size=(T, 2)).astype(np.float32),
                source_key=f"ep{i}", source_index=i, reward=rng.normal(size=T).astype(np.float32),
                is_intervention=interv, success=(i % 4 != 1) if outcomes or i else None, task=TASKS[i % 2],
                policy_id=["v1", "v2", "human"][i % 3], extras={ENV: rng.normal(size=(T, 2)).astype(np.float32)},
                images={CAM: [png(rng.integers(0, 255, size=(8, 10, 3), dtype=np.uint8)) for _ in range(T)]}),
                names={S.OBS_STATE: ["x", "y", "z"], S.ACTION: ["left", "right"]}, fps=fps)
        w.commit()
    return Store.open(path)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    make_store(d / "store")
    improve(d / "store", d / "r0", "bc", settings=dict(TINY, chunk_size=2, steps=20))
    cfg = CriticConfig(chunk_size=2, samples=2, steps=50, batch_size=64, hidden=32, device="cpu", val_every=50,
                       log_every=50)
    fit_critic(d / "store", d / "critic", cfg, str(d / "r0"))
    score(d / "store", d / "critic", d / "scores", stride=2, device="cpu")
    return d


@pytest.fixture(scope="module")
def exported(scored):
    d = scored
    summary = export(d / "store", d / "scores", d / "out")
    return d, summary


def data_table(out) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((out / "data").glob("chunk-*/file-*.parquet"))],
                     ignore_index=True)


# ---------------------------------------------------------------- the layout

def test_layout_is_lerobot_v3(exported):
    d, summary = exported
    out = d / "out"
    store = Store.open(d / "store")
    eps = store.episodes
    N = int(eps[S.LENGTH].sum())
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "data/chunk-000/file-000.parquet", "meta/aloe.json", "meta/episodes/chunk-000/file-000.parquet",
        "meta/info.json", "meta/stats.json", "meta/tasks.parquet"]
    info = json.loads((out / "meta/info.json").read_text())
    feats = info.pop("features")
    assert info == {"codebase_version": "v3.0", "robot_type": None, "total_episodes": 8, "total_frames": N,
                    "total_tasks": 2, "chunks_size": 1000, "data_files_size_in_mb": 100,
                    "video_files_size_in_mb": 200, "fps": 10, "splits": {"train": "0:8"},
                    "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet", "video_path": None}
    scalar = lambda t: {"dtype": t, "shape": [1], "names": None}  # noqa: E731
    assert feats == {
        "action": {"dtype": "float32", "shape": [2], "names": ["left", "right"]},
        "observation.state": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
        ENV: {"dtype": "float32", "shape": [2], "names": None},
        CAM: {"dtype": "image", "shape": [8, 10, 3], "names": ["height", "width", "channels"]},
        "next.reward": scalar("float32"), "next.done": scalar("bool"), "next.success": scalar("bool"),
        "intervention": scalar("bool"), "aloe.advantage": scalar("float32"), "aloe.weight": scalar("float32"),
        "aloe.advantage_positive": scalar("bool"), "timestamp": scalar("float32"), "frame_index": scalar("int64"),
        "episode_index": scalar("int64"), "index": scalar("int64"), "task_index": scalar("int64")}
    # The data file: LeRobot's column types, one row group per episode, global index 0..N-1.
    pf = pq.ParquetFile(out / "data/chunk-000/file-000.parquet")
    sch = pf.schema_arrow
    assert sch.names == list(feats)
    assert sch.field("action").type == pa.list_(pa.float32(), 2)
    assert sch.field(CAM).type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert sch.field("aloe.weight").type == pa.float32() and sch.field("aloe.advantage_positive").type == pa.bool_()
    assert pf.metadata.num_row_groups == 8
    assert [pf.metadata.row_group(i).num_rows for i in range(8)] == eps[S.LENGTH].tolist()
    df = data_table(out)
    assert df["index"].tolist() == list(range(N))
    assert df["episode_index"].tolist() == np.repeat(np.arange(8), eps[S.LENGTH]).tolist()
    # Tasks: the text is the index (as LeRobot writes it), numbered by first appearance.
    tasks = pd.read_parquet(out / "meta/tasks.parquet")
    assert tasks.index.name == "task" and tasks.index.tolist() == TASKS and tasks["task_index"].tolist() == [0, 1]
    assert (df["task_index"] == np.repeat(np.arange(8) % 2, eps[S.LENGTH])).all()
    # Episodes: rows, files, per-episode stats and the store ids.
    ep = pd.read_parquet(out / "meta/episodes/chunk-000/file-000.parquet")
    ends = np.cumsum(eps[S.LENGTH].to_numpy())
    assert ep["episode_index"].tolist() == list(range(8)) and ep["length"].tolist() == eps[S.LENGTH].tolist()
    assert ep["dataset_from_index"].tolist() == (ends - eps[S.LENGTH].to_numpy()).tolist()
    assert ep["dataset_to_index"].tolist() == ends.tolist()
    assert (ep["data/chunk_index"] == 0).all() and (ep["data/file_index"] == 0).all()
    assert [list(t) for t in ep["tasks"]] == [[TASKS[i % 2]] for i in range(8)]
    assert ep["aloe/episode_id"].tolist() == eps[S.EPISODE_ID].tolist()
    assert ep["aloe/policy_id"].tolist() == ["v1", "v2", "human"] * 2 + ["v1", "v2"]
    first = store.load_frames([S.ACTION]).columns[S.ACTION][: eps[S.LENGTH].iloc[0]]
    np.testing.assert_allclose(ep["stats/action/mean"].iloc[0], first.mean(0), rtol=1e-5)
    np.testing.assert_allclose(ep["stats/action/q50"].iloc[0], np.median(first, 0), rtol=1e-5)
    # Dataset stats: every feature, LeRobot's statistic names; images per channel (3, 1, 1) in [0, 1].
    stats = json.loads((out / "meta/stats.json").read_text())
    assert set(stats) == set(feats)
    assert set(stats["action"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    acts = np.stack(df["action"].to_numpy())
    np.testing.assert_allclose(stats["action"]["mean"], acts.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["action"]["std"], acts.std(0), rtol=1e-4)
    np.testing.assert_allclose(stats["action"]["min"], acts.min(0))
    assert stats["action"]["count"] == [N] and np.asarray(stats[CAM]["mean"]).shape == (3, 1, 1)
    assert 0 < np.asarray(stats[CAM]["mean"]).min() < np.asarray(stats[CAM]["mean"]).max() < 1
    aloe_meta = json.loads((out / "meta/aloe.json").read_text())
    assert aloe_meta["method"] == "aloe" and aloe_meta["store_fingerprint"] == store.fingerprint
    assert summary["episodes"] == 8 and summary["frames"] == N and summary["dropped_columns"] == []


def test_aggregated_stats_by_hand():
    # Two episodes [1, 2] and [3, 4, 5]: mean 3, population std sqrt(2), min 1, max 5, count 5.
    agg = aggregate_stats([feature_stats(np.array([1.0, 2.0])), feature_stats(np.array([3.0, 4.0, 5.0]))])
    assert agg["mean"].tolist() == [3.0] and agg["count"].tolist() == [5]
    np.testing.assert_allclose(agg["std"], [np.sqrt(2.0)])
    assert agg["min"].tolist() == [1.0] and agg["max"].tolist() == [5.0]
    # Quantiles: count-weighted means of the episodes' (LeRobot's approximation): (2 * 1.5 + 3 * 4) / 5 = 3.
    np.testing.assert_allclose(agg["q50"], [3.0])


def expected_columns(d, method="aloe", w_max=20.0, fraction=0.3):
    """aloe.* per frame, worked from chunks.parquet: strided rows forward-filled within episodes."""
    store = Store.open(d / "store")
    eps = store.episodes
    chunks = pd.read_parquet(d / "scores" / S.SCORES_CHUNKS_FILE)
    a = chunks[S.ADVANTAGE].to_numpy(np.float64)
    by = chunks.set_index([S.EPISODE_ID, S.FRAME_INDEX])
    frames = store.load_frames([S.IS_INTERVENTION])
    t = np.arange(frames.num_frames) - np.repeat(frames.starts, frames.lengths)
    keys = list(zip(np.repeat(eps[S.EPISODE_ID], eps[S.LENGTH]), t - t % 2))
    adv = by[S.ADVANTAGE].loc[keys].to_numpy(np.float64)
    if method == "aloe":
        weight = np.minimum(np.exp(adv / a.std()), w_max)
    elif method == "filtered":
        k = int(np.ceil(fraction * len(a)))
        cut = np.sort(a)[::-1][k - 1]
        weight = (adv >= cut).astype(float)
    else:
        weight = np.ones_like(adv)
    positive = (adv > np.quantile(a, 0.7)) | by[S.IS_INTERVENTION].loc[keys].to_numpy(bool) \
        | frames.columns[S.IS_INTERVENTION]
    return adv, weight, positive


@pytest.mark.parametrize("method", ["aloe", "filtered", "bc"])
def test_per_frame_columns_match_the_scores(exported, tmp_path, method):
    d, _ = exported
    out = d / "out" if method == "aloe" else tmp_path / method
    if method != "aloe":
        export(d / "store", d / "scores", out, method=method)
    df = data_table(out)
    adv, weight, positive = expected_columns(d, method)
    np.testing.assert_allclose(df[S.EXPORT_ADVANTAGE], adv, rtol=1e-6)
    np.testing.assert_allclose(df[S.EXPORT_WEIGHT], weight, rtol=1e-5)
    assert df[S.EXPORT_POSITIVE].tolist() == positive.tolist()
    assert np.isfinite(df[S.EXPORT_WEIGHT]).all() and df[S.EXPORT_WEIGHT].max() <= 20
    assert df["intervention"].tolist() == Store.open(d / "store").load_frames(
        [S.IS_INTERVENTION]).columns[S.IS_INTERVENTION].tolist()


def test_awr_export_uses_monte_carlo_advantages(scored, tmp_path):
    d = scored
    # with a relative temperature: beta = 0.5 * std of the Monte-Carlo advantages
    summary = export(d / "store", d / "scores", tmp_path / "awr", method="awr",
                     options={"w_max": 5.0, "value_steps": 300, "beta_scale": 0.5})
    df = data_table(tmp_path / "awr")
    adv, _, _ = expected_columns(d)
    assert not np.allclose(df[S.EXPORT_ADVANTAGE], adv)
    beta = 0.5 * df[S.EXPORT_ADVANTAGE].to_numpy(np.float64).std()
    np.testing.assert_allclose(df[S.EXPORT_WEIGHT], np.minimum(np.exp(df[S.EXPORT_ADVANTAGE] / beta), 5.0),
                               rtol=1e-4)
    assert summary["beta"] == pytest.approx(beta, rel=1e-5) and summary["beta_rule"] == "0.5 x std of advantages"


def test_awr_export_needs_no_scores(scored, tmp_path):
    """awr's Monte-Carlo advantages need no critic: without --scores they take fit-critic's default
    reward and gamma, the ones this fixture's critic was fitted with, so the columns are the same."""
    d = scored
    opts = {"w_max": 5.0, "value_steps": 300}
    with_scores = export(d / "store", d / "scores", tmp_path / "with", method="awr", options=opts)
    without = export(d / "store", None, tmp_path / "without", method="awr", options=opts)
    a, b = data_table(tmp_path / "with"), data_table(tmp_path / "without")
    for col in (S.EXPORT_ADVANTAGE, S.EXPORT_WEIGHT):
        np.testing.assert_allclose(b[col], a[col], atol=1e-6)
    assert b[S.EXPORT_POSITIVE].tolist() == a[S.EXPORT_POSITIVE].tolist()
    assert without["scores"] is None and without["value"]["reward_from"] == "options"
    assert with_scores["value"]["reward_from"] == "scores"
    meta = json.loads((tmp_path / "without" / "meta" / "aloe.json").read_text())
    assert meta["scores"] is None and meta["value"]["gamma"] == 0.99
    other = export(d / "store", None, tmp_path / "sparse", method="awr", options={**opts, "reward": "sparse"})
    assert other["value"]["reward"] == "sparse"
    assert not np.allclose(data_table(tmp_path / "sparse")[S.EXPORT_ADVANTAGE], a[S.EXPORT_ADVANTAGE])
    # It reads only the reward and gamma from --scores: scores without advantages (scored with no
    # policy) give the same columns.
    shutil.copytree(d / "scores", tmp_path / "noadv")
    chunks = pd.read_parquet(tmp_path / "noadv" / S.SCORES_CHUNKS_FILE)
    chunks[S.ADVANTAGE] = np.float32("nan")
    chunks.to_parquet(tmp_path / "noadv" / S.SCORES_CHUNKS_FILE, index=False)
    export(d / "store", tmp_path / "noadv", tmp_path / "noadv-out", method="awr", options=opts)
    np.testing.assert_allclose(data_table(tmp_path / "noadv-out")[S.EXPORT_ADVANTAGE], a[S.EXPORT_ADVANTAGE],
                               atol=1e-6)


# ---------------------------------------------------------------- read back by aloe

def check_same_episodes(store_path, back_path):
    orig = list(Store.open(store_path).iter_episodes())
    back = list(Store.open(back_path).iter_episodes())
    assert len(back) == len(orig)
    for o, b in zip(orig, back):
        np.testing.assert_array_equal(b.state, o.state)
        np.testing.assert_array_equal(b.action, o.action)
        np.testing.assert_array_equal(b.extras[ENV], o.extras[ENV])
        np.testing.assert_array_equal(b.reward, o.reward)
        np.testing.assert_array_equal(b.is_intervention, o.is_intervention)
        np.testing.assert_array_equal(b.timestamp, o.timestamp)
        assert b.images[CAM] == o.images[CAM]  # byte for byte
        assert (b.task, b.success) == (o.task, o.success)


def test_aloes_lerobot_reader_reads_it_back(exported, cli, tmp_path):
    d, _ = exported
    r = cli("ingest", tmp_path / "back", d / "out", "--json")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout)["format"] == "lerobot"
    check_same_episodes(d / "store", tmp_path / "back")
    assert Store.open(tmp_path / "back").fps == FPS


def test_policy_ids_come_back_through_ingest(exported, cli, tmp_path):
    """LeRobot has no policy field: the export's aloe/policy_id column brings each episode's back (not --policy-id)."""
    d, _ = exported
    orig = Store.open(d / "store").episodes[S.POLICY_ID].tolist()
    assert set(orig) == {"v1", "v2", "human"}
    r = cli("ingest", tmp_path / "back", d / "out", "--policy-id", "v9")
    assert r.exit_code == 0, r
    assert Store.open(tmp_path / "back").episodes[S.POLICY_ID].tolist() == orig


def test_many_data_files_and_unknown_outcomes(tmp_path, cli):
    # A store where one outcome is unknown: next.success is left out (it cannot say "unknown"), and meta/episodes'
    # aloe/success (null: unknown) brings every episode's outcome back through aloe ingest.
    make_store(tmp_path / "store", n=6, seed=3, outcomes=False)
    improve(tmp_path / "store", tmp_path / "r0", "bc", settings=dict(TINY, chunk_size=2, steps=5))
    fit_critic(tmp_path / "store", tmp_path / "critic",
               CriticConfig(chunk_size=2, samples=1, steps=5, batch_size=16, hidden=16, device="cpu"),
               str(tmp_path / "r0"))
    score(tmp_path / "store", tmp_path / "critic", tmp_path / "scores", device="cpu")
    summary = export(tmp_path / "store", tmp_path / "scores", tmp_path / "out", method="bc",
                     data_files_size_in_mb=0.002)
    files = summary["data_files"]
    assert len(files) > 2 and files[:2] == ["data/chunk-000/file-000.parquet", "data/chunk-000/file-001.parquet"]
    info = json.loads((tmp_path / "out/meta/info.json").read_text())
    assert "next.success" not in info["features"]
    assert summary["outcomes"] == "not exported as next.success (some episodes have none)"
    ep = pd.read_parquet(tmp_path / "out/meta/episodes/chunk-000/file-000.parquet")
    assert sorted(set(ep["data/file_index"])) == list(range(len(files)))
    assert ep["aloe/success"].tolist()[:2] == [None, False]
    r = cli("ingest", tmp_path / "back", tmp_path / "out")
    assert r.exit_code == 0, r
    orig = list(Store.open(tmp_path / "store").iter_episodes())
    back = list(Store.open(tmp_path / "back").iter_episodes())
    assert [o.success for o in orig][:2] == [None, False]
    assert [b.success for b in back] == [o.success for o in orig]
    assert [b.terminated for b in back] == [o.terminated for o in orig]
    # --success fills only the unknown outcome (as --policy-id does only a missing policy_id).
    assert cli("ingest", tmp_path / "filled", tmp_path / "out", "--success", "true").exit_code == 0
    filled = [b.success for b in Store.open(tmp_path / "filled").iter_episodes()]
    assert filled == [True] + [o.success for o in orig][1:]
    for o, b in zip(orig, back):
        np.testing.assert_array_equal(b.action, o.action)
        assert b.images[CAM] == o.images[CAM]


# ---------------------------------------------------------------- the CLI and bad input

def test_export_cli(exported, cli, tmp_path):
    d, _ = exported
    r = cli("export", d / "store", "--scores", d / "scores", "--to", "lerobot", tmp_path / "x", "--method",
            "filtered", "--top-fraction", 0.5, "--robot-type", "so100")
    assert r.exit_code == 0, r
    assert r.stderr == ""  # stderr is not a terminal: no progress bar, and no blank line where it was
    lines = r.stdout.splitlines()
    n = int(Store.open(d / "store").episodes[S.LENGTH].sum())
    assert lines[0] == (f"exported 8 episodes / {n} frames (2 tasks) as a LeRobotDataset v3.0 with aloe.weight from "
                        f"--method filtered -> {tmp_path / 'x'}")
    assert lines[1].startswith("weights: ESS ") and any(line.startswith("indicator: positive ") for line in lines)
    assert json.loads((tmp_path / "x/meta/info.json").read_text())["robot_type"] == "so100"


def test_export_bad_input(exported, cli, tmp_path, monkeypatch):
    d, _ = exported
    make_store(tmp_path / "other", n=3, seed=7)
    other_fp, fp = Store.open(tmp_path / "other").fingerprint, Store.open(d / "store").fingerprint
    make_store(tmp_path / "nofps", n=2, seed=8, fps=None)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep").write_text("x")
    cases = [
        ([tmp_path / "other", tmp_path / "new", "--scores", d / "scores"],
         f"Error: {d / 'scores' / S.SCORES_SUMMARY_FILE}: store_fingerprint: the scores are of a store with "
         f"fingerprint {fp} ({d / 'store'}), but {tmp_path / 'other'} has {other_fp}; score this store (aloe score) "
         "first"),
        ([d / "store", tmp_path / "taken", "--scores", d / "scores"],
         f"Error: {tmp_path / 'taken'}: OUT_DIR: already exists; pass --force to replace it"),
        ([d / "store", tmp_path / "new", "--scores", d / "scores", "--to", "rlds"],
         "Error: --to: unknown format 'rlds'; available: lerobot"),
        ([d / "store", tmp_path / "new"],
         "Error: --scores: --method aloe takes its per-frame advantages from `aloe score` (--scores SCORES_DIR); "
         "only awr computes its own"),
        ([d / "store", tmp_path / "new", "--method", "bc"],
         "Error: --scores: --method bc takes its per-frame advantages from `aloe score` (--scores SCORES_DIR); "
         "only awr computes its own"),
        ([d / "store", tmp_path / "new", "--method", "dagger"],
         "Error: --method: unknown method 'dagger'; available: aloe, awr, filtered, conditioned, bc"),
        ([d / "store", tmp_path / "new", "--scores", d / "scores", "--method", "awr", "--gamma", 0.9],
         "Error: --gamma: comes from --scores (the reward and gamma its critic was fitted with); give one or "
         "the other"),
        ([d / "store", tmp_path / "new", "--method", "aloe", "--scores", d / "scores", "--reward", "sparse"],
         "Error: --reward: applies to --method awr only, not aloe"),
        ([d / "store", tmp_path / "new", "--scores", d / "scores", "--method", "dagger"],
         "Error: --method: unknown method 'dagger'; available: aloe, awr, filtered, conditioned, bc"),
        ([d / "store", tmp_path / "new", "--scores", d / "scores", "--w-max", 0],
         "Error: --w-max: must be a number > 0, got 0.0"),
        ([tmp_path / "nofps", tmp_path / "new", "--scores", d / "scores"],
         f"Error: {tmp_path / 'nofps' / S.MANIFEST_FILE}: fps: the store records no frame rate; pass --fps"),
    ]
    for args, message in cases:
        r = cli("export", *args)
        assert r.exit_code == 2, (args, r)
        assert r.stderr == message + "\n", (args, r.stderr)
        assert not (tmp_path / "new").exists()
    assert (tmp_path / "taken" / "keep").read_text() == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    # The current folder (or one holding it, the store or the scores): --force would delete it whole.
    here = tmp_path / "here"
    (here / "old-export").mkdir(parents=True)
    with monkeypatch.context() as m:
        m.chdir(here)
        r = cli("export", d / "store", ".", "--scores", d / "scores", "--force")
    assert r.exit_code == 2 and r.stderr == (f"Error: {here}: OUT_DIR: is the current folder or holds it; "
                                             "name an export folder outside it\n"), r.stderr
    r = cli("export", d / "store", d, "--scores", d / "scores", "--force")
    assert r.exit_code == 2 and r.stderr == (f"Error: {d}: OUT_DIR: holds the store {d / 'store'}; name an export "
                                             "folder outside it\n"), r.stderr
    assert (here / "old-export").is_dir() and (d / "store").is_dir()


# ---------------------------------------------------------------- cameras, frame rates and bad frames

AWR_QUICK = {"value_steps": 1}  # export without scores: awr's Monte-Carlo advantages, one value step


def camera_store(path, episodes: list[list[bytes]], fps=FPS, others: dict[str, list[list[bytes]]] | None = None
                 ) -> Store:
    """A store whose camera CAM holds the given encoded frames, one list per episode (and each camera of
    `others` its own)."""
    rng = np.random.default_rng(1)
    store = Store.open(path, create=True)
    with store.writer("synthetic", "test") as w:
        for i, frames in enumerate(episodes):
            T = len(frames)
            w.add(Episode(state=rng.normal(size=(T, 3)).astype(np.float32),
                          action=rng.normal(size=(T, 2)).astype(np.float32), source_key=f"ep{i}", source_index=i,
                          reward=rng.normal(size=T).astype(np.float32), is_intervention=np.zeros(T, bool),
                          success=bool(i % 2), task=TASKS[0],
                          images={CAM: list(frames), **{c: list(f[i]) for c, f in (others or {}).items()}}), fps=fps)
        w.commit()
    return Store.open(path)


def pixels(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, size=shape, dtype=np.uint8)


def encoded(arr: np.ndarray, fmt="PNG", mode: str | None = None) -> bytes:
    from PIL import Image

    img = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr)
    if mode is not None:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def decoded(b: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(b)))


def assert_nothing_written(out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no temporary folder


def eid(store_path, e: int) -> str:
    return Store.open(store_path).episodes[S.EPISODE_ID].iloc[e]


@pytest.mark.parametrize("where", ["between episodes", "within an episode", "channels"])
def test_a_camera_whose_frame_size_changes_is_refused(tmp_path, cli, where):
    # LeRobot gives an image feature one shape (its add_frame refuses a frame of another): so does the export.
    big = [encoded(pixels((8, 10, 3), t)) for t in range(4)]
    other = [encoded(pixels((8, 10) if where == "channels" else (6, 10, 3), t)) for t in range(4)]
    episodes = [big[:2] + other[:1] + big[2:]] if where == "within an episode" else [big, other]
    camera_store(tmp_path / "store", episodes)
    e, t = (0, 2) if where == "within an episode" else (1, 0)
    got, hint = ("8x10x1", "") if where == "channels" else ("6x10x3", " (aloe ingest --image-size WxH gives every "
                                                                      "frame one)")
    message = (f"{tmp_path / 'store'}: {CAM}: episode {e} ({eid(tmp_path / 'store', e)}) frame {t} is {got} but the "
               f"first frame is 8x10x3; a LeRobot image feature has one shape{hint}")
    with pytest.raises(BadInput) as exc:
        export(tmp_path / "store", None, tmp_path / "out", method="awr", options=AWR_QUICK)
    assert str(exc.value) == message
    assert_nothing_written(tmp_path / "out")
    if where == "between episodes":  # the CLI: one line, exit 2, refused before awr's value network is fitted
        r = cli("export", tmp_path / "store", tmp_path / "out", "--method", "awr")
        assert (r.exit_code, r.stderr) == (2, f"Error: {message}\n"), r
        assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("shape,fmt", [((8, 10), "PNG"), ((8, 10, 1), "PNG"), ((8, 10), "JPEG")],
                         ids=["HxW-png", "HxWx1-png", "HxW-jpeg"])
def test_grayscale_cameras_have_one_channel(tmp_path, shape, fmt):
    frames = [[encoded(pixels(shape, 10 * e + t), fmt) for t in range(5)] for e in range(2)]
    camera_store(tmp_path / "store", frames)
    export(tmp_path / "store", None, tmp_path / "out", method="awr", options=AWR_QUICK)
    info = json.loads((tmp_path / "out/meta/info.json").read_text())
    assert info["features"][CAM] == {"dtype": "image", "shape": [8, 10, 1], "names": ["height", "width", "channels"]}
    df = data_table(tmp_path / "out")
    written = [c["bytes"] for c in df[CAM]]
    assert written == [b for ep in frames for b in ep]  # byte for byte
    assert {decoded(b).reshape(8, 10, -1).shape for b in written} == {(8, 10, 1)}
    # Statistics per channel, as the frames decode: one channel, (1, 1, 1).
    stats = json.loads((tmp_path / "out/meta/stats.json").read_text())
    px = np.concatenate([decoded(b).reshape(-1) for b in written]) / 255.0
    assert np.asarray(stats[CAM]["mean"]).shape == (1, 1, 1)
    np.testing.assert_allclose(np.asarray(stats[CAM]["mean"]).reshape(-1), [px.mean()], rtol=1e-6)
    ep = pd.read_parquet(tmp_path / "out/meta/episodes/chunk-000/file-000.parquet")
    assert np.asarray(ep[f"stats/{CAM}/max"].iloc[0].tolist()).shape == (1, 1)  # [[[x]]] as lists


def test_palette_and_rgba_frames_are_written_as_declared(tmp_path):
    # A palette PNG decodes to palette indices (one band): it is re-encoded as the RGB it shows. RGBA keeps 4 channels.
    rgb = pixels((8, 10, 3), 3) // 64 * 64  # few colours: the palette holds them exactly
    palette = [encoded(rgb, mode="P") for _ in range(3)]
    rgba = [encoded(pixels((8, 10, 4), t)) for t in range(3)]
    camera_store(tmp_path / "p", [palette])
    camera_store(tmp_path / "a", [rgba])
    export(tmp_path / "p", None, tmp_path / "out_p", method="awr", options=AWR_QUICK)
    export(tmp_path / "a", None, tmp_path / "out_a", method="awr", options=AWR_QUICK)
    for out, channels in (("out_p", 3), ("out_a", 4)):
        info = json.loads((tmp_path / out / "meta/info.json").read_text())
        assert info["features"][CAM]["shape"] == [8, 10, channels]
        stats = json.loads((tmp_path / out / "meta/stats.json").read_text())
        assert np.asarray(stats[CAM]["mean"]).shape == (channels, 1, 1)
    p_frames = [c["bytes"] for c in data_table(tmp_path / "out_p")[CAM]]
    from PIL import Image

    want = np.asarray(Image.open(io.BytesIO(palette[0])).convert("RGB"))
    assert all(decoded(b).shape == (8, 10, 3) and (decoded(b) == want).all() for b in p_frames)
    assert [c["bytes"] for c in data_table(tmp_path / "out_a")[CAM]] == rgba


def test_fps_option_sets_the_timestamps_of_a_store_without_a_frame_rate(tmp_path, cli):
    make_store(tmp_path / "store", n=3, seed=4, fps=None)
    export(tmp_path / "store", None, tmp_path / "out", method="awr", options=AWR_QUICK, fps=4.0)
    info = json.loads((tmp_path / "out/meta/info.json").read_text())
    df = data_table(tmp_path / "out")
    assert info["fps"] == 4
    assert df["timestamp"].dtype == np.float32
    np.testing.assert_array_equal(df["timestamp"], (df["frame_index"].to_numpy() / np.float32(4.0)).astype(np.float32))
    assert df["timestamp"].iloc[1] == 0.25
    # A store with a frame rate keeps its timestamps; another --fps re-times the frames on that clock.
    make_store(tmp_path / "timed", n=2, seed=5, fps=FPS)
    export(tmp_path / "timed", None, tmp_path / "same", method="awr", options=AWR_QUICK, fps=FPS)
    export(tmp_path / "timed", None, tmp_path / "other", method="awr", options=AWR_QUICK, fps=20.0)
    stored = Store.open(tmp_path / "timed").load_frames([S.TIMESTAMP]).columns[S.TIMESTAMP]
    np.testing.assert_array_equal(data_table(tmp_path / "same")["timestamp"], stored)
    other = data_table(tmp_path / "other")
    np.testing.assert_array_equal(other["timestamp"], (other["frame_index"].to_numpy() / np.float32(20.0))
                                  .astype(np.float32))


def on_clock(df: pd.DataFrame, fps: float) -> np.ndarray:
    """LeRobot's timestamps of the frames: frame_index / fps, in float32."""
    return (df["frame_index"].to_numpy() / np.float32(fps)).astype(np.float32)


def test_every_episode_is_exported_on_the_exported_clock(tmp_path, cli):
    """A store mixing LeRobot sources recorded at 30 and 10 fps exports at 30 (the store's first rate) with every
    episode's timestamp frame_index / 30; --fps 10 re-times the 30 fps episodes and keeps the 10 fps ones' own."""
    from test_formats_lerobot import FPS as SOURCE_FPS, edit_info, make_episodes, write_v21

    fast = write_v21(tmp_path / "lr30", make_episodes(seed=5), image=False)
    edit_info(fast, lambda info: info.__setitem__("fps", 30))
    for f in sorted((fast / "data").glob("chunk-*/*.parquet")):  # as LeRobot records at 30 fps
        t = pq.read_table(f)
        stamps = pa.array((np.arange(t.num_rows) / 30).astype(np.float32))
        pq.write_table(t.set_column(t.column_names.index("timestamp"), "timestamp", stamps), f)
    slow = write_v21(tmp_path / "lr10", make_episodes(seed=6), image=False)
    for src in (fast, slow):
        assert cli("ingest", tmp_path / "store", src).exit_code == 0
    eps = Store.open(tmp_path / "store").episodes
    assert eps[S.FPS].tolist() == [30.0] * 3 + [SOURCE_FPS] * 3 and Store.open(tmp_path / "store").fps == 30
    res = cli("export", tmp_path / "store", tmp_path / "out", "--method", "awr")
    assert res.exit_code == 0, res.stderr
    assert json.loads((tmp_path / "out/meta/info.json").read_text())["fps"] == 30
    assert json.loads((tmp_path / "out" / ALOE_META_PATH).read_text())["retimed_episodes"] == {f"{SOURCE_FPS:g}": 3}
    assert " ".join(res.stderr.split()) == (f"warning: episodes recorded at another rate (3 at {SOURCE_FPS:g} fps) are "
                                            "timed at 30 fps, frames not resampled: they play faster or slower than "
                                            "recorded")
    df = data_table(tmp_path / "out")
    assert sorted(set(df["episode_index"])) == list(range(6))
    np.testing.assert_array_equal(df["timestamp"], on_clock(df, 30))
    summary = export(tmp_path / "store", None, tmp_path / "at10", method="awr", options=AWR_QUICK, fps=SOURCE_FPS)
    assert summary["retimed_episodes"] == {"30": 3} and summary["fps"] == SOURCE_FPS
    df = data_table(tmp_path / "at10")
    np.testing.assert_array_equal(df["timestamp"], on_clock(df, SOURCE_FPS))
    stored = Store.open(tmp_path / "store").load_frames([S.TIMESTAMP]).columns[S.TIMESTAMP]
    slow_rows = df["episode_index"].to_numpy() >= 3
    np.testing.assert_array_equal(df["timestamp"][slow_rows], stored[slow_rows])  # the 10 fps episodes' own


def test_an_episode_recorded_without_a_frame_rate_is_retimed(tmp_path):
    """Episodes ingested into a store before it had a frame rate (an RLDS source: none recorded, so their stored
    timestamps count frames) are on the exported clock too, once a later ingest gives the store one."""
    make_store(tmp_path / "store", n=2, seed=6, fps=None)
    make_store(tmp_path / "store", n=1, seed=7, fps=FPS)  # a later ingest, at 10 fps
    store = Store.open(tmp_path / "store")
    assert store.fps == FPS and store.episodes[S.FPS].isna().tolist() == [True, True, False]
    assert store.load_frames([S.TIMESTAMP]).columns[S.TIMESTAMP][1] == 1.0  # one "second" a frame
    export(tmp_path / "store", None, tmp_path / "out", method="awr", options=AWR_QUICK)
    df = data_table(tmp_path / "out")
    np.testing.assert_array_equal(df["timestamp"], on_clock(df, FPS))


TRUNCATED = r"image file is truncated( \(\d+ bytes not processed\))?"


@pytest.mark.parametrize("bad,why", [
    (lambda: encoded(pixels((8, 10, 3), 7), "JPEG")[:-40], TRUNCATED),  # the header parses, the pixels do not
    (lambda: encoded(pixels((8, 10, 3), 7))[:150], TRUNCATED),
    (lambda: encoded(pixels((8, 10, 3), 7), "JPEG")[:40], "Truncated File Read"),  # the header does not
    (lambda: b"not an image at all", "not an image Pillow can read"),
], ids=["jpeg-pixels", "png-pixels", "jpeg-header", "not-an-image"])
def test_a_corrupt_frame_is_one_line_naming_it(tmp_path, bad, why):
    # Frame 4 of episode 1: among the frames the image statistics decode (all of them, in a short episode).
    frames = [[encoded(pixels((8, 10, 3), 10 * e + t), "JPEG") for t in range(6)] for e in range(3)]
    frames[1][4] = bad()
    camera_store(tmp_path / "store", frames)
    with pytest.raises(BadInput) as exc:
        export(tmp_path / "store", None, tmp_path / "out", method="awr", options=AWR_QUICK)
    prefix = f"{tmp_path / 'store'}: {CAM}: episode 1 ({eid(tmp_path / 'store', 1)}) frame 4 "
    assert re.fullmatch(re.escape(prefix + "cannot be decoded as an image: ") + why, str(exc.value)), str(exc.value)
    assert_nothing_written(tmp_path / "out")


def test_a_converted_frame_outside_the_statistics_sample_that_cannot_be_decoded_is_one_line(tmp_path):
    """A palette frame is re-encoded as PNG while the frames are written: broken pixels there, in a
    frame the statistics never decode, are the same one line, and nothing is left in OUT_DIR."""
    from aloe_cli.export import sample_indices

    T = 130
    t = int(next(i for i in range(T) if i not in set(sample_indices(T).tolist())))
    frames = [encoded(pixels((8, 10, 3), i), mode="P") for i in range(T)]
    frames[t] = frames[t][:-30]  # the header parses, the pixels do not
    camera_store(tmp_path / "store", [frames])
    with pytest.raises(BadInput) as exc:
        export(tmp_path / "store", None, tmp_path / "out", method="awr", options=AWR_QUICK)
    prefix = f"{tmp_path / 'store'}: {CAM}: episode 0 ({eid(tmp_path / 'store', 0)}) frame {t} "
    assert str(exc.value).startswith(prefix + "cannot be decoded as an image: "), str(exc.value)
    assert_nothing_written(tmp_path / "out")


def test_16_bit_frames_are_refused(tmp_path):
    depth = [encoded(np.full((8, 10), 1000 + t, np.uint16)) for t in range(3)]  # Pillow mode I;16
    camera_store(tmp_path / "store", [depth])
    with pytest.raises(BadInput) as exc:
        export(tmp_path / "store", None, tmp_path / "out", method="awr", options=AWR_QUICK)
    assert str(exc.value) == (f"{tmp_path / 'store'}: {CAM}: episode 0 ({eid(tmp_path / 'store', 0)}) frame 0 has "
                              "I;16 pixels (Pillow's mode); a LeRobot image feature holds 8-bit L, LA, RGB, RGBA; "
                              "leave the camera out with --cameras none")
    assert_nothing_written(tmp_path / "out")


# ---------------------------------------------------------------- --cameras: the cameras exported

DEPTH = "observation.images.depth"


def depth_store(path) -> Store:
    """Two episodes of two cameras: CAM (8-bit RGB) and DEPTH (16-bit, Pillow mode I;16)."""
    rgb = [[encoded(pixels((8, 10, 3), 10 * e + t)) for t in range(5)] for e in range(2)]
    depth = [[encoded(np.full((8, 10), 1000 + 10 * e + t, np.uint16)) for t in range(5)] for e in range(2)]
    return camera_store(path, rgb, others={DEPTH: depth})


@pytest.fixture
def quick_awr(monkeypatch):
    """`aloe export --method awr` through the CLI with one value step (AWR_QUICK), as the library calls here do."""
    import aloe_cli.improve as improve_mod

    given = improve_mod.method_options
    monkeypatch.setattr(improve_mod, "method_options",
                        lambda method, options: given(method, {**AWR_QUICK, **(options or {})}))


def image_features(out) -> list[str]:
    return [k for k, f in json.loads((out / "meta/info.json").read_text())["features"].items() if f["dtype"] == "image"]


def test_cameras_exports_only_the_cameras_named(tmp_path, cli, quick_awr):
    depth_store(tmp_path / "store")
    r = cli("export", tmp_path / "store", tmp_path / "out", "--method", "awr", "--cameras", "wrist")
    assert r.exit_code == 0, r
    out = tmp_path / "out"
    assert image_features(out) == [CAM]
    assert DEPTH not in json.loads((out / "meta/stats.json").read_text())
    assert CAM in data_table(out).columns and DEPTH not in data_table(out).columns
    ep = pd.read_parquet(out / "meta/episodes/chunk-000/file-000.parquet")
    assert not [c for c in ep.columns if DEPTH in c] and f"stats/{CAM}/mean" in ep.columns
    meta = json.loads((out / "meta/aloe.json").read_text())
    assert (meta["cameras"], meta["cameras_left_out"]) == ([CAM], [DEPTH])
    # The same camera by its column's name, and as --obs spells it.
    for name in (CAM, "images.wrist"):
        export(tmp_path / "store", None, tmp_path / name, method="awr", options=AWR_QUICK, cameras=[name])
        assert image_features(tmp_path / name) == [CAM]
    # It reads back with aloe ingest: the camera exported, byte for byte, and not the other.
    r = cli("ingest", tmp_path / "back", out)
    assert r.exit_code == 0, r
    orig = list(Store.open(tmp_path / "store").iter_episodes())
    back = list(Store.open(tmp_path / "back").iter_episodes())
    assert Store.open(tmp_path / "back").image_columns == [CAM] and len(back) == len(orig) == 2
    for o, b in zip(orig, back):
        assert list(b.images) == [CAM] and b.images[CAM] == o.images[CAM]
        np.testing.assert_array_equal(b.action, o.action)


def test_a_16_bit_camera_is_refused_naming_the_cameras_option_that_leaves_it_out(tmp_path, cli):
    depth_store(tmp_path / "store")
    r = cli("export", tmp_path / "store", tmp_path / "out", "--method", "awr")
    assert r.exit_code == 2, r
    assert r.stderr == (f"Error: {tmp_path / 'store'}: {DEPTH}: episode 0 ({eid(tmp_path / 'store', 0)}) frame 0 has "
                        "I;16 pixels (Pillow's mode); a LeRobot image feature holds 8-bit L, LA, RGB, RGBA; leave the "
                        "camera out with --cameras wrist\n"), r.stderr
    assert_nothing_written(tmp_path / "out")


def test_an_unknown_camera_is_one_line_naming_the_stores_cameras(tmp_path, cli):
    depth_store(tmp_path / "store")
    store = tmp_path / "store"
    cases = [
        ("wrist,top", f"Error: {store}: --cameras: the store has no camera 'top' (cameras: depth, wrist)"),
        ("observation.images.top", f"Error: {store}: --cameras: the store has no camera 'observation.images.top' "
                                   "(cameras: depth, wrist)"),
        ("wrist,images.wrist", f"Error: {store}: --cameras: camera 'wrist' is named twice"),
        ("wrist,,depth", "Error: --cameras: empty name in 'wrist,,depth'"),
        ("none,wrist", "Error: --cameras: 'none,wrist': none stands alone (it exports no camera)"),
        ("", "Error: --cameras: must not be empty"),
    ]
    for spec, message in cases:
        r = cli("export", store, tmp_path / "out", "--method", "awr", "--cameras", spec)
        assert (r.exit_code, r.stderr) == (2, message + "\n"), (spec, r)
        assert_nothing_written(tmp_path / "out")
    with pytest.raises(BadInput, match=r"--cameras: the store has no camera 'top' \(cameras: depth, wrist\)$"):
        export(store, None, tmp_path / "out", method="awr", options=AWR_QUICK, cameras=["top"])
    assert_nothing_written(tmp_path / "out")


def test_a_lerobot_sources_robot_type_is_exported(tmp_path, cli, quick_awr):
    """meta/info.json's robot_type, recorded at ingest, is the export's unless --robot-type says otherwise.

    The sources mirror lerobot 0.4.4's writer (LeRobotDataset.create(robot_type=...), add_frame, save_episode,
    finalize), whose info.json names the robot; a store whose ingests name none, or differ, exports none.
    """
    from test_formats_lerobot import make_episodes, write_v30

    def robot(out) -> str | None:
        return json.loads((out / "meta/info.json").read_text())["robot_type"]

    src = write_v30(tmp_path / "so100", make_episodes(seed=1), video=False)
    assert cli("ingest", tmp_path / "store", src).exit_code == 0
    for args, want in (((), "so100"), (("--robot-type", "koch"), "koch")):
        r = cli("export", tmp_path / "store", tmp_path / "out", "--method", "awr", "--force", *args)
        assert r.exit_code == 0, r
        assert robot(tmp_path / "out") == want
    other = write_v30(tmp_path / "koch", make_episodes(seed=2), video=False)
    info = json.loads((other / "meta/info.json").read_text())
    (other / "meta/info.json").write_text(json.dumps({**info, "robot_type": "koch"}))
    assert cli("ingest", tmp_path / "store", other).exit_code == 0
    assert cli("export", tmp_path / "store", tmp_path / "mixed", "--method", "awr").exit_code == 0
    assert robot(tmp_path / "mixed") is None
    make_store(tmp_path / "synthetic", n=2, seed=4)  # written by aloe itself: no robot recorded
    assert cli("export", tmp_path / "synthetic", tmp_path / "none", "--method", "awr").exit_code == 0
    assert robot(tmp_path / "none") is None


def test_cameras_none_exports_no_camera(tmp_path, cli, quick_awr):
    depth_store(tmp_path / "store")
    r = cli("export", tmp_path / "store", tmp_path / "out", "--method", "awr", "--cameras", "none")
    assert r.exit_code == 0, r
    out = tmp_path / "out"
    assert image_features(out) == []
    assert not {CAM, DEPTH} & set(json.loads((out / "meta/stats.json").read_text()))
    assert not {CAM, DEPTH} & set(data_table(out).columns)
    meta = json.loads((out / "meta/aloe.json").read_text())
    assert (meta["cameras"], meta["cameras_left_out"]) == ([], [DEPTH, CAM])
    r = cli("ingest", tmp_path / "back", out)
    assert r.exit_code == 0, r
    assert Store.open(tmp_path / "back").image_columns == []


def test_a_corrupt_frame_exits_2_through_the_cli(tmp_path, cli):
    frames = [[encoded(pixels((8, 10, 3), 10 * e + t), "JPEG") for t in range(6)] for e in range(2)]
    frames[1][3] = frames[1][3][:-40]
    camera_store(tmp_path / "store", frames)
    r = cli("export", tmp_path / "store", tmp_path / "out", "--method", "awr")
    assert r.exit_code == 2, r
    prefix = f"Error: {tmp_path / 'store'}: {CAM}: episode 1 ({eid(tmp_path / 'store', 1)}) frame 3 "
    assert re.fullmatch(re.escape(prefix + "cannot be decoded as an image: ") + TRUNCATED + "\n", r.stderr), r.stderr
    assert_nothing_written(tmp_path / "out")


# ---------------------------------------------------------------- read back by LeRobot itself

LEROBOT_SCRIPT = textwrap.dedent('''
    import json, sys
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = sys.argv[1]
    ds = LeRobotDataset("aloe/export", root=root)
    rows = []
    for i in range(len(ds)):
        item = ds[i]
        row = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in item.items() if k != "%(cam)s"}
        row["image_shape"] = list(item["%(cam)s"].shape)
        row["image_mean"] = float(item["%(cam)s"].float().mean())
        rows.append(row)
    fps = ds.fps
    chunked = LeRobotDataset("aloe/export", root=root,
                             delta_timestamps={"action": [k / fps for k in range(3)], "aloe.weight": [0.0]})
    last = int(ds.meta.episodes[0]["dataset_to_index"]) - 1
    item = chunked[last]
    policy_ids = [ds.meta.episodes[e]["aloe/policy_id"] for e in range(ds.num_episodes)]  # kept as episode metadata
    print(json.dumps({"episodes": ds.num_episodes, "frames": ds.num_frames, "fps": fps, "rows": rows,
                      "chunk": item["action"].tolist(), "chunk_is_pad": item["action_is_pad"].tolist(),
                      "policy_ids": policy_ids}))
''' % {"cam": CAM})


def lerobot_python() -> list[str] | None:
    """A python that can import lerobot: $ALOE_LEROBOT_PYTHON, else this one if it has lerobot, else None."""
    exe = os.environ.get("ALOE_LEROBOT_PYTHON")
    if exe:
        return [exe]
    try:
        import lerobot.datasets.lerobot_dataset  # noqa: F401
    except Exception:
        return None
    return [sys.executable]


@pytest.mark.slow
def test_lerobots_own_loader_reads_it(exported, tmp_path):
    python = lerobot_python()
    if python is None:
        pytest.skip("lerobot is not installed here (it needs Python >= 3.12); set ALOE_LEROBOT_PYTHON to a python "
                    "that has `lerobot[dataset]`")
    d, _ = exported
    script = tmp_path / "read_with_lerobot.py"
    script.write_text(LEROBOT_SCRIPT)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), HF_LEROBOT_HOME=str(tmp_path / "lr"))
    p = subprocess.run([*python, str(script), str(d / "out")], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    df = data_table(d / "out")
    store = Store.open(d / "store")
    frames = store.load_frames([S.OBS_STATE, S.ACTION])
    assert got["episodes"] == 8 and got["frames"] == len(df) and got["fps"] == 10
    assert got["policy_ids"] == store.episodes[S.POLICY_ID].tolist()
    rows = got["rows"]
    np.testing.assert_allclose([r["action"] for r in rows], frames.columns[S.ACTION], rtol=1e-6)
    np.testing.assert_allclose([r["observation.state"] for r in rows], frames.columns[S.OBS_STATE], rtol=1e-6)
    np.testing.assert_allclose([r["aloe.advantage"] for r in rows], df[S.EXPORT_ADVANTAGE], rtol=1e-6)
    np.testing.assert_allclose([r["aloe.weight"] for r in rows], df[S.EXPORT_WEIGHT], rtol=1e-6)
    assert [bool(r["aloe.advantage_positive"]) for r in rows] == df[S.EXPORT_POSITIVE].tolist()
    assert [r["task"] for r in rows] == [TASKS[e % 2] for e in df["episode_index"]]
    assert {tuple(r["image_shape"]) for r in rows} == {(3, 8, 10)}
    assert 0 < np.mean([r["image_mean"] for r in rows]) < 1
    # Action chunks as a LeRobot policy reads them: at an episode's last frame, the two later actions are padding.
    T0 = int(store.episodes[S.LENGTH].iloc[0])
    np.testing.assert_allclose(got["chunk"], np.repeat(frames.columns[S.ACTION][T0 - 1][None], 3, 0), rtol=1e-6)
    assert got["chunk_is_pad"] == [False, True, True]
