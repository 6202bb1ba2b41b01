"""A damaged store is bad input: one `Error:` line naming the file and the field, exit 2, store unchanged."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aloe_cli import schema as S
from aloe_cli.errors import StoreError
from aloe_cli.store import Store
from conftest import write_aloha_episode

FIT = ("--bootstrap", "data", "--chunk-size", "2", "--steps", "3", "--batch-size", "8", "--device", "cpu")


def tree(root):
    """Every path under `root` (folders included) with its bytes' hash (None for a folder)."""
    import hashlib

    return {str(p.relative_to(root)): None if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def source(path, n=3, nan_at=None):
    """A folder of `n` small ALOHA episodes (no cameras); `nan_at` puts a NaN into episode 0's action."""
    path.mkdir()
    for i in range(n):
        write_aloha_episode(path / f"episode_{i}.hdf5", T=12 + i, seed=i, cams=())
    if nan_at is not None:
        with h5py.File(path / "episode_0.hdf5", "a") as f:
            f["action"][nan_at] = np.nan
    return path


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    from typer.testing import CliRunner

    from aloe_cli.cli import app

    d = tmp_path_factory.mktemp("golden")
    r = CliRunner().invoke(app, ["ingest", str(d / "store"), str(source(d / "src"))])
    assert r.exit_code == 0, r.output
    return d / "store"


@pytest.fixture
def store(golden, tmp_path):
    s = tmp_path / "store"
    shutil.copytree(golden, s)
    return s


def refused(cli, root, *args):
    """Run the CLI; assert exit 2, one `Error:` line (fit-critic's progress bar may leave a blank line above it)
    and `root` unchanged; return the line."""
    before = tree(root)
    r = cli(*args)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), r
    assert tree(root) == before
    return lines[0]


def frames_file(store):
    return store / pq.read_table(store / S.EPISODES_FILE).column(S.FRAMES_FILE)[0].as_py()


def edit_episodes(store, fn):
    p = store / S.EPISODES_FILE
    df = pq.read_table(p).to_pandas()
    pq.write_table(pa.Table.from_pandas(fn(df), preserve_index=False), p)


def rewrite_frames(store, fn):
    """Replace the frames file's table by fn(table), keeping one row group per episode."""
    p = frames_file(store)
    f = pq.ParquetFile(p)
    lengths = [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)]
    t = fn(f.read())
    with pq.ParquetWriter(p, t.schema) as w:
        start = 0
        for n in lengths:
            w.write_table(t.slice(start, n))
            start += n
    return p


def edit_frames(store, column, row, dim, value):
    """Set one number of a list column of the frames file (row counted over the whole file)."""
    def edit(t):
        col = t.column(column).combine_chunks()
        vals = col.values.to_numpy().copy().reshape(len(col), -1)
        vals[row, dim] = value
        arr = pa.FixedSizeListArray.from_arrays(pa.array(vals.reshape(-1), pa.float32()), col.type.list_size)
        return t.set_column(t.column_names.index(column), column, arr)

    rewrite_frames(store, edit)


def edit_manifest(store, fn):
    p = store / S.MANIFEST_FILE
    p.write_text(json.dumps(fn(json.loads(p.read_text()))))


# ---------------------------------------------------------------- frames (Store.load_frames)

@pytest.mark.parametrize("delta", [5, -5])
def test_length_that_differs_from_the_frames(cli, store, tmp_path, delta):
    edit_episodes(store, lambda df: df.assign(**{S.LENGTH: df[S.LENGTH] + np.array([0, delta, 0])}))
    msg = refused(cli, store, "fit-critic", store, "--out", tmp_path / "critic", *FIT)
    eid = Store.open(store).episodes[S.EPISODE_ID][1]
    assert msg == (f"Error: {frames_file(store)}: {S.LENGTH}: episode {eid} has 13 frames but the episodes table "
                   f"says {13 + delta}")


@pytest.mark.parametrize("column, value", [(S.OBS_STATE, np.nan), (S.ACTION, np.inf)])
def test_nan_or_inf_in_frames(cli, store, tmp_path, column, value):
    edit_frames(store, column, 12 + 3, 2, value)  # episode 1 (episode 0 has 12 frames), its frame 3
    msg = refused(cli, store, "fit-critic", store, "--out", tmp_path / "critic", *FIT)
    eid = Store.open(store).episodes[S.EPISODE_ID][1]
    assert msg == (f"Error: {frames_file(store)}: {column}: episode {eid} contains NaN or inf "
                   "(first at index (3, 2))")


def test_nan_reward_is_refused_but_missing_rewards_are_not(store):
    s = Store.open(store)
    assert np.isnan(s.load_frames([S.REWARD]).columns[S.REWARD]).all()  # never logged: nulls, not an error
    def edit(t):
        reward = np.arange(t.num_rows, dtype=np.float32)
        reward[14] = np.nan  # a logged value that is NaN, in episode 1 (episode 0 has 12 frames)
        return t.set_column(t.column_names.index(S.REWARD), S.REWARD,
                            pa.array(reward, mask=np.arange(t.num_rows) == 0))  # episode 0: one reward missing

    rewrite_frames(store, edit)
    with pytest.raises(StoreError, match=r"reward: episode \w+ contains NaN or inf \(first at index \(2,\)\)"):
        Store.open(store).load_frames([S.REWARD], episode_ids=[s.episodes[S.EPISODE_ID][1]])
    assert Store.open(store).load_frames([S.REWARD], episode_ids=[s.episodes[S.EPISODE_ID][0]]).num_frames == 12


def test_row_group_past_the_file(cli, store, tmp_path):
    edit_episodes(store, lambda df: df.assign(**{S.ROW_GROUP: 7}))
    msg = refused(cli, store, "fit-critic", store, "--out", tmp_path / "critic", *FIT)
    assert msg.startswith(f"Error: {frames_file(store)}: {S.ROW_GROUP}: episode ")
    assert "the episodes table says row group 7, but the file has 3" in msg


def test_missing_frames_file(cli, store, tmp_path):
    p = frames_file(store)
    p.unlink()
    msg = refused(cli, store, "fit-critic", store, "--out", tmp_path / "critic", *FIT)
    eid = Store.open(store).episodes[S.EPISODE_ID][0]
    assert msg == f"Error: {p}: {S.FRAMES_FILE}: missing, but the episodes table names it for episode {eid}"


def test_frames_file_without_a_column(cli, store, tmp_path):
    p = rewrite_frames(store, lambda t: t.drop([S.ACTION]))
    msg = refused(cli, store, "fit-critic", store, "--out", tmp_path / "critic", *FIT)
    assert msg == f"Error: {p}: {S.ACTION}: missing column"


DAMAGE = {
    "longer": lambda store: edit_episodes(store, lambda df: df.assign(**{S.LENGTH: df[S.LENGTH] + [0, 5, 0]})),
    "shorter": lambda store: edit_episodes(store, lambda df: df.assign(**{S.LENGTH: df[S.LENGTH] - [5, 0, 0]})),
    "row-group": lambda store: edit_episodes(store, lambda df: df.assign(**{S.ROW_GROUP: [0, 1, 3]})),
    "no-file": lambda store: frames_file(store).unlink(),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_info_checks_the_episodes_table_against_the_frames_files(cli, store, tmp_path, case):
    """`aloe info` refuses a store whose episodes table disagrees with its frames files (a length, a row
    group, a file) with the readers' own line, not counts that are wrong."""
    DAMAGE[case](store)
    msg = refused(cli, store, "info", store)
    assert msg == refused(cli, store, "fit-critic", store, "--out", tmp_path / "critic", *FIT)
    assert refused(cli, store, "info", store, "--json") == msg
    eid = Store.open(store).episodes[S.EPISODE_ID][{"longer": 1, "row-group": 2}.get(case, 0)]
    assert msg == {
        "longer": f"Error: {frames_file(store)}: {S.LENGTH}: episode {eid} has 13 frames but the episodes table "
                  "says 18",
        "shorter": f"Error: {frames_file(store)}: {S.LENGTH}: episode {eid} has 12 frames but the episodes table "
                   "says 7",
        "row-group": f"Error: {frames_file(store)}: {S.ROW_GROUP}: episode {eid}: the episodes table says row "
                     "group 3, but the file has 3",
        "no-file": f"Error: {frames_file(store)}: {S.FRAMES_FILE}: missing, but the episodes table names it for "
                   f"episode {eid}",
    }[case]


# ---------------------------------------------------------------- aloe.json

BAD_MANIFESTS = {
    "list": (lambda m: [], None, "expected a JSON object, got list"),
    "string": (lambda m: "hello", None, "expected a JSON object, got str"),
    "version-bool": (lambda m: {**m, "format_version": True}, "format_version", "not a positive integer"),
    "features-list": (lambda m: {**m, "features": []}, "features", "expected an object, got list"),
    "no-state": (lambda m: {**m, "features": {k: v for k, v in m["features"].items() if k != S.OBS_STATE}},
                 f"features.{S.OBS_STATE}", "missing"),
    "no-action": (lambda m: {**m, "features": {k: v for k, v in m["features"].items() if k != S.ACTION}},
                  f"features.{S.ACTION}", "missing"),
    "shape-null": (lambda m: {**m, "features": {**m["features"], S.OBS_STATE: {"dtype": "float32", "shape": None}}},
                   f"features.{S.OBS_STATE}.shape", "expected a list of positive integers, got None"),
    "shape-zero": (lambda m: {**m, "features": {**m["features"], S.ACTION: {"dtype": "float32", "shape": [0]}}},
                   f"features.{S.ACTION}.shape", "expected a list of positive integers, got [0]"),
    "shape-str": (lambda m: {**m, "features": {**m["features"], S.ACTION: {"dtype": "float32", "shape": ["14"]}}},
                  f"features.{S.ACTION}.shape", "expected a list of positive integers"),
    "fps-str": (lambda m: {**m, "fps": "fast"}, "fps", "expected a positive number or null, got 'fast'"),
    "fps-nan": (lambda m: {**m, "fps": float("nan")}, "fps", "expected a positive number or null, got nan"),
    "ingests-str": (lambda m: {**m, "ingests": "x"}, "ingests", "expected a list of objects"),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_bad_manifest(cli, store, case):
    fn, field, message = BAD_MANIFESTS[case]
    edit_manifest(store, fn)
    msg = refused(cli, store, "info", store)
    where = store / S.MANIFEST_FILE
    assert msg.startswith(f"Error: {where}: {field}: " if field else f"Error: {where}: "), msg
    assert message in msg


def test_fps_must_be_positive_or_null(cli, store):
    edit_manifest(store, lambda m: {**m, "fps": None})
    assert cli("info", store).exit_code == 0
    edit_manifest(store, lambda m: {**m, "fps": 0})
    msg = refused(cli, store, "info", store)
    assert msg == f"Error: {store / S.MANIFEST_FILE}: fps: expected a positive number or null, got 0"


# ---------------------------------------------------------------- the journal

@pytest.mark.parametrize("journal", ["{not json", json.dumps({"id": "x", "renames": [["../../elsewhere", "aloe.json"]],
                                                               "deletes": []})])
def test_bad_journal_is_refused_and_kept(cli, store, journal):
    (store / S.TXN_FILE).write_text(journal)
    msg = refused(cli, store, "info", store)
    assert msg.startswith(f"Error: {store / S.TXN_FILE}: ") and "left in place" in msg
    assert (store / S.TXN_FILE).read_text() == journal


# ---------------------------------------------------------------- episodes.parquet

@pytest.mark.parametrize("column", [S.EPISODE_ID, S.LENGTH, S.TASK, S.SUCCESS, S.FRAMES_FILE, S.ROW_GROUP,
                                    S.TERMINATED, S.POLICY_ID])
def test_episodes_table_without_a_column(cli, store, column):
    edit_episodes(store, lambda df: df.drop(columns=[column]))
    assert refused(cli, store, "info", store) == f"Error: {store / S.EPISODES_FILE}: {column}: missing column"


def test_episodes_table_with_bad_values(cli, store):
    edit_episodes(store, lambda df: df.assign(**{S.EPISODE_ID: "dup"}))
    assert refused(cli, store, "info", store) == (f"Error: {store / S.EPISODES_FILE}: {S.EPISODE_ID}: episode id "
                                                  "'dup' appears more than once (rows 0 and 1)")
    edit_episodes(store, lambda df: df.assign(**{S.EPISODE_ID: ["a", "b", "c"], S.LENGTH: [12, -1, 14]}))
    assert refused(cli, store, "info", store) == (f"Error: {store / S.EPISODES_FILE}: {S.LENGTH}: negative value -1 "
                                                  "in row 1")
    edit_episodes(store, lambda df: df.assign(**{S.LENGTH: ["12", "x", "14"]}))
    assert f"{S.EPISODES_FILE}: {S.LENGTH}: expected int64 values, got " in refused(cli, store, "info", store)


def test_missing_episodes_table_is_not_an_empty_store(cli, store, tmp_path):
    (store / S.EPISODES_FILE).unlink()
    msg = refused(cli, store, "info", store)
    assert msg == f"Error: {store / S.EPISODES_FILE}: missing, but {S.MANIFEST_FILE} lists 1 ingests"
    assert Store.open(tmp_path / "new", create=True).episodes.empty  # a store not written yet is empty


# ---------------------------------------------------------------- writing into the wrong directory

@pytest.mark.parametrize("verb", ["ingest", "rollout"])
def test_writing_into_a_directory_of_another_kind_is_refused(cli, tmp_path, verb):
    other = tmp_path / "critic"
    other.mkdir()
    (other / "critic.json").write_text("{}")
    src = source(tmp_path / "src")
    args = (("ingest", other, src) if verb == "ingest" else
            ("rollout", "--policy", "aloe_cli.robot.experts:metaworld_expert", "--episodes", "1", "--max-steps", "3",
             "--into", other))
    msg = refused(cli, other, *args)
    assert msg == (f"Error: {other}: is not empty and is not an aloe store (no {S.MANIFEST_FILE}); "
                   "choose a new or empty directory")
    assert tree(other) == {"critic.json": tree(other)["critic.json"]}
    # What a failed first ingest may leave behind is the store's own, not another kind of directory.
    leftover = tmp_path / "leftover"
    (leftover / S.STAGING_DIR / "abc").mkdir(parents=True)
    (leftover / S.LOCK_FILE).touch()
    assert cli("ingest", leftover, src).exit_code == 0
    assert not (leftover / S.STAGING_DIR / "abc").exists() and (leftover / S.MANIFEST_FILE).exists()


# ---------------------------------------------------------------- a refused write leaves nothing behind

def test_failed_ingest_leaves_no_staging(cli, store, tmp_path):
    shutil.rmtree(store / S.STAGING_DIR)
    bad = source(tmp_path / "nan", n=1, nan_at=(3, 2))
    assert ": action: contains NaN or inf (first at index (3, 2))" in refused(cli, store, "ingest", store, bad)
    (store / S.EPISODES_FILE).write_bytes(b"PAR1 not really" * 10)  # R13: refused after the lock is taken
    other = source(tmp_path / "other", n=1)
    assert "episodes.parquet: cannot be read" in refused(cli, store, "ingest", store, other)
    assert not (store / S.STAGING_DIR).exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(cli, empty, "ingest", empty, bad)
    assert not any(empty.iterdir())
