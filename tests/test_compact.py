"""`aloe compact`: small frames files merged into fewer, atomically, with every frame and id unchanged."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aloe_cli import schema as S
from aloe_cli.compact import compact_store, plan_groups
from aloe_cli.episode import Episode
from aloe_cli.errors import StoreError
from aloe_cli.store import Store
from conftest import run_subprocess

CAM = "observation.images.front"
EXTRA = "observation.qvel"


def png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def episode(rng, i: int) -> Episode:
    T = int(rng.integers(4, 9))
    interv = np.zeros(T, bool)
    interv[1:3] = i % 3 == 0
    return Episode(state=rng.normal(size=(T, 3)).astype(np.float32), action=rng.normal(size=(T, 2)).astype(np.float32),
                   source_key=f"ep{i}", reward=rng.normal(size=T).astype(np.float32) if i % 2 else None,
                   is_intervention=interv, success=[True, False, None][i % 3], policy_id=f"v{i % 2}",
                   task="open the drawer", extras={EXTRA: rng.normal(size=(T, 2)).astype(np.float32)},
                   images={CAM: [png(rng.integers(0, 255, size=(6, 8, 3), dtype=np.uint8)) for _ in range(T)]})


def rollout_store(path, commits: int = 7, per_commit=(1,), seed: int = 0) -> Store:
    """A store written as `aloe rollout` writes one: a commit (so a frames file) per episode or few."""
    rng = np.random.default_rng(seed)
    store, i = Store.open(path, create=True), 0
    for c in range(commits):
        with store.writer(f"rollout:sim#{c}", "rollout") as w:
            for _ in range(per_commit[c % len(per_commit)]):
                w.add(episode(rng, i), fps=10.0)
                i += 1
            w.commit()
    return Store.open(path)


def frames_of(store_dir) -> pd.DataFrame:
    """Every frame, in episode then frame order, read by plain pandas (no aloe code)."""
    df = pd.read_parquet(store_dir / S.FRAMES_DIR)
    return df.sort_values([S.EPISODE_ID, S.FRAME_INDEX]).reset_index(drop=True)


def snapshot(store_dir) -> dict:
    return {str(p.relative_to(store_dir)): p.read_bytes() for p in sorted(store_dir.rglob("*"))
            if p.is_file() and p.name != S.LOCK_FILE}


def test_plan_groups_by_hand():
    a = pa.schema([("x", pa.int64())])
    b = pa.schema([("y", pa.int64())])
    files = [("a", 3, a), ("b", 3, a), ("c", 3, a), ("d", 10, a), ("e", 1, a), ("f", 1, a)]
    assert plan_groups(files, 8) == [["a", "b"], ["e", "f"]]  # c alone is not merged; d is big enough
    assert plan_groups(files, 9) == [["a", "b", "c"], ["e", "f"]]  # 3 + 3 + 3 fits exactly
    assert plan_groups(files, 1) == []  # every file is already as large as the target
    mixed = [("a", 1, a), ("b", 1, b), ("c", 1, b), ("d", 1, a)]
    assert plan_groups(mixed, 100) == [["b", "c"]]  # a file of another schema starts a new group
    assert plan_groups([("a", 1, a)], 100) == []
    # only: the files not named stay as they are, like a big one (a rollout merges its own files).
    assert plan_groups(files, 8, only={"c", "e", "f"}) == [["e", "f"]]
    assert plan_groups(files, 100, only={"a", "b", "e", "f"}) == [["a", "b"], ["e", "f"]]  # c splits the run


def test_compact_merges_files_and_keeps_every_frame_id_and_fingerprint(cli, tmp_path):
    root = tmp_path / "store"
    before = rollout_store(root, commits=7, per_commit=(1, 2))
    eps0, frames0, fp0 = before.episodes.copy(), frames_of(root), before.fingerprint
    arrays0 = before.load_frames([S.OBS_STATE, S.ACTION, S.REWARD, EXTRA])
    assert len(list((root / S.FRAMES_DIR).iterdir())) == 7

    r = cli("compact", root, "--json")
    assert r.exit_code == 0, r
    d = json.loads(r.stdout)
    assert (d["files_before"], d["files_after"], d["files_merged"], d["files_written"]) == (7, 1, 7, 1)
    assert d["episodes_moved"] == 10 and d["fingerprint"] == fp0 and not d["dry_run"]

    after = Store.open(root)
    assert after.fingerprint == fp0
    files = sorted((root / S.FRAMES_DIR).iterdir())
    assert len(files) == 1 and pq.ParquetFile(files[0]).num_row_groups == 10
    eps1 = after.episodes
    assert eps1[S.ROW_GROUP].tolist() == list(range(10))  # store order is kept, one row group per episode
    same = [c for c in eps0.columns if c not in (S.FRAMES_FILE, S.ROW_GROUP)]
    pd.testing.assert_frame_equal(eps1[same], eps0[same])
    pd.testing.assert_frame_equal(frames_of(root), frames0)  # every column, images and nulls included
    arrays1 = after.load_frames([S.OBS_STATE, S.ACTION, S.REWARD, EXTRA])
    for name, a in arrays0.columns.items():
        np.testing.assert_array_equal(arrays1.columns[name], a)
    for ingest in after.manifest["ingests"]:
        assert ingest["frames_file"] == str(files[0].relative_to(root))
    assert not (root / S.TXN_FILE).exists() and not any((root / S.STAGING_DIR).iterdir())

    r = cli("compact", root)  # a second run has nothing to do and changes nothing
    assert r.exit_code == 0 and r.stdout.strip() == (
        f"{root}: nothing to compact (1 frames file; none can be merged below 128 MiB)")
    more = tmp_path / "more"  # the store stays writable: a new rollout appends a new file
    rollout_store(more, commits=1)
    with after.writer("rollout:sim#new", "rollout") as w:
        w.add(episode(np.random.default_rng(99), 0), fps=10.0)
        w.commit()
    assert len(Store.open(root).episodes) == 11 and len(list((root / S.FRAMES_DIR).iterdir())) == 2


def test_target_size_leaves_large_files_and_splits_groups(tmp_path):
    root = tmp_path / "store"
    rollout_store(root, commits=6, per_commit=(1, 1, 1, 12, 1, 1))
    sizes = {p.name: p.stat().st_size for p in (root / S.FRAMES_DIR).iterdir()}
    big = max(sizes.values())
    small = sorted(v for v in sizes.values() if v != big)
    target_mb = (small[0] + small[1] + small[2] - 1) / 2**20  # any two small files fit, no three do
    d = compact_store(root, target_mb=target_mb)
    # the first two small files merged, the third left alone (no room for it in their group, and the next
    # file is large), the large one untouched,
    # the last two merged:
    assert (d["files_before"], d["files_merged"], d["files_written"], d["files_after"]) == (6, 4, 2, 4)
    assert big in {p.stat().st_size for p in (root / S.FRAMES_DIR).iterdir()}
    assert Store.open(root).episodes[S.ROW_GROUP].tolist() == [0, 1, 0] + list(range(12)) + [0, 1]


def test_dry_run_changes_nothing(cli, tmp_path):
    root = tmp_path / "store"
    rollout_store(root, commits=4)
    before = snapshot(root)
    r = cli("compact", root, "--dry-run")
    assert r.exit_code == 0, r
    assert r.stdout.startswith(f"{root}: would merge 4 frames files (4 episodes, ") and r.stdout.rstrip().endswith(
        "MiB) into 1; 4 -> 1 files")
    assert snapshot(root) == before


@pytest.mark.parametrize("point", ["before-journal", "after-journal"])
def test_crash_during_compaction_leaves_before_or_after(tmp_path, point):
    root = tmp_path / "store"
    rollout_store(root, commits=5)
    frames0, fp0 = frames_of(root), Store.open(root).fingerprint
    before = snapshot(root)
    r = run_subprocess("compact", root, env={"ALOE_CRASH_AT": point})
    assert r.returncode == 137, r.stderr
    s = Store.open(root)  # an interrupted compaction is rolled forward on open
    if point == "before-journal":
        assert {k: v for k, v in snapshot(root).items() if not k.startswith(S.STAGING_DIR)} == before
    else:
        assert len(list((root / S.FRAMES_DIR).iterdir())) == 1 and not (root / S.TXN_FILE).exists()
    assert s.fingerprint == fp0
    pd.testing.assert_frame_equal(frames_of(root), frames0)
    assert run_subprocess("compact", root).returncode == 0  # and it can be compacted after
    assert len(list((root / S.FRAMES_DIR).iterdir())) == 1 and not any((root / S.STAGING_DIR).iterdir())


def test_bad_input_is_one_line_and_changes_nothing(cli, tmp_path):
    root = tmp_path / "store"
    rollout_store(root, commits=3)
    before = snapshot(root)
    for args, message in [
        ([root, "--target-mb", "0"], "Error: --target-mb: must be a positive number of MiB, got 0.0"),
        ([root, "--target-mb", "nan"], "Error: --target-mb: must be a positive number of MiB, got nan"),
        ([tmp_path / "nowhere"], f"Error: {tmp_path / 'nowhere'}: store does not exist (run `aloe ingest` or "
                                 "`aloe rollout` first)"),
    ]:
        r = cli("compact", *args)
        assert r.exit_code == 2 and r.stderr == message + "\n", (args, r)
    assert snapshot(root) == before
    victim = sorted((root / S.FRAMES_DIR).iterdir())[1]
    victim.write_bytes(b"not parquet")
    damaged = snapshot(root)
    r = cli("compact", root)
    assert r.exit_code == 2 and r.stderr.startswith(f"Error: {victim}: cannot be read: "), r
    assert len(r.stderr.strip().splitlines()) == 1 and snapshot(root) == damaged


def test_a_writer_opened_before_a_compaction_commits_against_the_store_as_it_is_now(tmp_path):
    """A long `aloe rollout` holds its Store between commits; `aloe compact` (or an ingest) may commit in
    between. The rollout's next commit must build on the store on disk, not on what it read before."""
    root = tmp_path / "store"
    rollout_store(root, commits=4)
    held = Store.open(root)
    assert len(held.episodes) == 4  # read (and cached) before the compaction
    compact_store(root)
    more = Store.open(root)
    with more.writer("ingest:demos", "test") as w:  # and another process ingests something
        w.add(episode(np.random.default_rng(5), 50), fps=10.0)
        w.commit()
    with held.writer("rollout:sim#late", "rollout") as w:
        w.add(episode(np.random.default_rng(6), 60), fps=10.0)
        w.commit()
    s = Store.open(root)
    assert len(s.episodes) == 6 and len(list(s.iter_episodes())) == 6  # every frames file it names exists
    assert [i["source"] for i in s.manifest["ingests"]][-2:] == ["ingest:demos", "rollout:sim#late"]
    assert all((root / i["frames_file"]).exists() for i in s.manifest["ingests"])


def test_a_writer_waits_for_another_then_gives_up_naming_the_store(tmp_path):
    import threading
    import time

    from aloe_cli.errors import StoreBusy
    from aloe_cli.store import _Lock

    root = tmp_path / "store"
    rollout_store(root, commits=1)
    other = _Lock(root).__enter__()
    threading.Timer(0.3, other.__exit__, (None, None, None)).start()
    t0 = time.monotonic()
    with Store.open(root).writer("late", "test", wait_s=5.0) as w:  # waits for the other commit to end
        w.add(episode(np.random.default_rng(1), 1), fps=10.0)
        w.commit()
    assert time.monotonic() - t0 >= 0.3 and len(Store.open(root).episodes) == 2
    other = _Lock(root).__enter__()
    try:
        with pytest.raises(StoreBusy) as e:
            Store.open(root).writer("late", "test", wait_s=0.2)
        assert str(e.value) == f"{root}: another aloe process is writing to this store" and e.value.exit_code == 1
        with pytest.raises(StoreBusy):
            compact_store(root, wait_s=0.2)  # compaction waits like a writer, then gives up too
    finally:
        other.__exit__(None, None, None)


def test_reading_a_store_of_many_files_keeps_one_open(tmp_path):
    """A store fed by rollouts holds a frames file per episode; readers must not hold them all open
    (`ulimit -n` is 1024 on many machines, 256 on macOS): fit-critic and score failed with 'Too many
    open files'. Read in a child whose file limit is below the store's file count."""
    import subprocess
    import sys

    from conftest import REPO

    root = tmp_path / "store"
    rollout_store(root, commits=80)
    child = f"""
import resource
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from aloe_cli.store import Store
s = Store.open({str(root)!r})
print(len(s.load_frames().lengths), sum(1 for _ in s.iter_episodes()))
"""
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=REPO,
                       env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-500:]
    assert r.stdout.split() == ["80", "80"]


@pytest.mark.parametrize("batch_bytes", [1, 1 << 26])
def test_reads_in_runs_match_per_episode_reads(tmp_path, monkeypatch, batch_bytes):
    """load_frames / iter_episodes read consecutive row groups of a file together (up to READ_BATCH_BYTES);
    in any episode order, and with runs cut after every row group, they return what pyarrow reads."""
    import aloe_cli.store as store_mod

    monkeypatch.setattr(store_mod, "READ_BATCH_BYTES", batch_bytes)
    s = rollout_store(tmp_path / "s", commits=5, per_commit=(3, 1, 2))
    compact_store(tmp_path / "s", target_mb=1e-3)  # a few files, each several episodes (row groups)
    s = Store.open(tmp_path / "s")
    eps = s.episodes
    assert eps[S.FRAMES_FILE].nunique() < len(eps) and eps[S.FRAMES_FILE].nunique() > 1
    by_id = eps.set_index(S.EPISODE_ID)
    rng = np.random.default_rng(1)
    for ids in (list(eps[S.EPISODE_ID]), list(rng.permutation(eps[S.EPISODE_ID])), list(eps[S.EPISODE_ID])[2:5]):
        fa = s.load_frames([S.OBS_STATE, S.REWARD, EXTRA, S.IS_INTERVENTION], episode_ids=ids)
        for k, eid in enumerate(ids):
            row = by_id.loc[eid]
            t = pq.ParquetFile(tmp_path / "s" / row[S.FRAMES_FILE]).read_row_group(int(row[S.ROW_GROUP]))
            sl = slice(fa.starts[k], fa.starts[k] + fa.lengths[k])
            np.testing.assert_array_equal(fa.columns[S.OBS_STATE][sl], np.stack(t.column(S.OBS_STATE).to_pylist()))
            np.testing.assert_array_equal(fa.columns[EXTRA][sl], np.stack(t.column(EXTRA).to_pylist()))
            np.testing.assert_array_equal(fa.columns[S.IS_INTERVENTION][sl], t.column(S.IS_INTERVENTION).to_numpy())
            reward = t.column(S.REWARD).to_numpy(zero_copy_only=False)
            np.testing.assert_array_equal(fa.columns[S.REWARD][sl], np.asarray(reward, dtype=np.float32))
        assert [e.source_key for e in s.iter_episodes(ids)] == list(by_id.loc[ids, S.SOURCE_KEY])


def test_a_read_under_way_follows_a_compaction(tmp_path):
    """A reader that read the episodes table before another process compacted the store (its frames files
    deleted) finds the episodes where they are now: load_frames and an iter_episodes half done both
    return what they would have."""
    root = tmp_path / "s"
    rollout_store(root, commits=6, per_commit=(2, 1))
    want = {e.source_key: e.state for e in Store.open(root).iter_episodes()}
    reader, walker = Store.open(root), Store.open(root)
    old_files = set(reader.episodes[S.FRAMES_FILE])
    it = walker.iter_episodes()
    first = next(it)
    assert compact_store(root)["files_after"] == 1
    assert not any((root / f).exists() for f in old_files)  # what the readers' tables name is gone
    fa = reader.load_frames([S.OBS_STATE])
    assert fa.num_frames == sum(len(v) for v in want.values())
    key_of = reader.episodes.set_index(S.EPISODE_ID)[S.SOURCE_KEY]
    for eid, start, n in zip(fa.episode_ids, fa.starts, fa.lengths):
        key = key_of[eid]
        np.testing.assert_array_equal(fa.columns[S.OBS_STATE][start:start + n], want[key])
    got = [first] + list(it)
    assert [e.source_key for e in got] == list(want)
    for e in got:
        np.testing.assert_array_equal(e.state, want[e.source_key])
    assert set(reader.episodes[S.FRAMES_FILE]).isdisjoint(old_files)  # the reader now has the new table


def test_a_read_under_way_refuses_an_episode_removed_meanwhile(tmp_path):
    """An episode that another process removed after this reader read the episodes table is refused by name."""
    root = tmp_path / "s"
    store, rng = Store.open(root, create=True), np.random.default_rng(0)
    for c in range(3):
        with store.writer(f"src{c}", "rollout", content_hash=f"h{c}") as w:
            w.add(episode(rng, c), fps=10.0)
            w.commit()
    reader = Store.open(root)
    victim = reader.episodes[S.EPISODE_ID].iloc[1]
    with Store.open(root).writer("src1", "rollout", content_hash="h1", replace_hash=True) as w:
        w.commit()  # what `ingest --force` of a source that now holds no episode does: its file goes
    with pytest.raises(StoreError, match=f"episode {victim} was removed by another process while this one read"):
        reader.load_frames([S.OBS_STATE])


def test_runs_are_sized_by_the_columns_read(tmp_path, monkeypatch):
    """READ_BATCH_BYTES counts the bytes of the columns read: camera frames not asked for do not cut runs."""
    import aloe_cli.store as store_mod

    rollout_store(tmp_path / "s", commits=4, per_commit=(3,))
    compact_store(tmp_path / "s")
    s = Store.open(tmp_path / "s")
    md = pq.ParquetFile(tmp_path / "s" / s.episodes[S.FRAMES_FILE].iloc[0]).metadata
    assert md.num_row_groups == 12
    names = [md.schema.column(k).path for k in range(md.num_columns)]
    state = names.index(f"{S.OBS_STATE}.list.element")
    state_bytes = sum(md.row_group(g).column(state).total_uncompressed_size for g in range(12))
    monkeypatch.setattr(store_mod, "READ_BATCH_BYTES", state_bytes)  # all the states, a few episodes' images
    assert len(list(s._read_runs(s.episodes, [S.OBS_STATE]))) == 1
    assert len(list(s._read_runs(s.episodes, [S.OBS_STATE, CAM]))) > 2
    assert len(list(s._read_runs(s.episodes, None))) > 2  # every column
