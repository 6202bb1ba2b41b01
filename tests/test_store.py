"""The episode store: ingest round-trips, atomic commits, no-op re-ingest, bad input, info."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from aloe_cli import schema as S
from aloe_cli.store import Store
from conftest import run_subprocess, write_aloha_episode


def frames_of_episode(store: Store, eid: str) -> pd.DataFrame:
    _, table = next(store.iter_episode_tables([eid]))
    return table.to_pandas()


def snapshot(store):
    """Every file's bytes under a store (to prove it did not change)."""
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != S.LOCK_FILE}


def test_ingest_aloha_round_trips_exactly(cli, tmp_path, aloha_dir):
    src, written = aloha_dir
    store = tmp_path / "store"
    r = cli("ingest", store, src, "--policy-id", "human", "--success", "true", "--task", "insert peg")
    assert r.exit_code == 0, r
    assert r.stdout.strip() == f"ingested 3 episodes (48 frames) from {src} [aloha] into {store}"
    s = Store.open(store)
    eps = list(s.iter_episodes())
    assert [e.source_key for e in eps] == ["episode_0.hdf5", "episode_1.hdf5", "episode_2.hdf5"]
    for ep, w in zip(eps, written):
        np.testing.assert_array_equal(ep.state, w["qpos"].astype(np.float32))
        np.testing.assert_array_equal(ep.action, w["action"].astype(np.float32))
        np.testing.assert_array_equal(ep.extras["observation.qvel"], w["qvel"].astype(np.float32))
        assert ep.success is True and ep.terminated is True and ep.policy_id == "human"
        assert ep.task == "insert peg"
        assert ep.reward is None and not ep.is_intervention.any()
    # Plain pandas/pyarrow read the store with no aloe code.
    frames = pd.read_parquet(store / "frames")
    assert len(frames) == 48 and list(frames.columns[:7]) == [
        "episode_id", "frame_index", "timestamp", "observation.state", "action", "reward", "is_intervention"]
    episodes = pd.read_parquet(store / "episodes.parquet")
    assert episodes["length"].tolist() == [15, 16, 17]
    f = pq.ParquetFile(store / episodes["frames_file"][1])
    assert f.num_row_groups == 3 and f.read_row_group(1).num_rows == 16
    manifest = json.loads((store / "aloe.json").read_text())
    assert manifest["format_version"] == S.FORMAT_VERSION
    assert manifest["features"]["observation.state"]["shape"] == [14]
    assert manifest["ingests"][0]["episode_ids"] == episodes["episode_id"].tolist()


def test_load_frames_concatenates_in_store_order(tmp_path, aloha_dir, cli):
    src, written = aloha_dir
    cli("ingest", tmp_path / "s", src)
    fa = Store.open(tmp_path / "s").load_frames([S.OBS_STATE, S.ACTION, S.IS_INTERVENTION, S.REWARD])
    assert fa.lengths.tolist() == [15, 16, 17] and fa.starts.tolist() == [0, 15, 31]
    np.testing.assert_array_equal(fa.columns[S.ACTION][15:31], written[1]["action"].astype(np.float32))
    assert np.isnan(fa.columns[S.REWARD]).all()
    assert fa.episode_of_frame()[14:16].tolist() == [0, 1]


def test_reingest_is_noop_and_force_replaces(cli, tmp_path, aloha_dir):
    src, _ = aloha_dir
    store = tmp_path / "store"
    assert cli("ingest", store, src).exit_code == 0
    before = snapshot(store)
    r = cli("ingest", store, src)
    assert r.exit_code == 0 and "already in" in r.stdout
    assert snapshot(store) == before
    r = cli("ingest", store, src, "--force", "--success", "false", "--json")
    assert r.exit_code == 0, r
    d = json.loads(r.stdout)
    assert d["episodes_added"] == 3 and d["episodes_replaced"] == 3
    s = Store.open(store)
    assert len(s.episodes) == 3 and (s.episodes["success"] == False).all()  # noqa: E712
    assert len(list((store / "frames").iterdir())) == 1 and len(s.manifest["ingests"]) == 1


def test_second_source_appends_and_duplicates_are_skipped(cli, tmp_path, aloha_dir):
    src, _ = aloha_dir
    store = tmp_path / "store"
    cli("ingest", store, src)
    other = tmp_path / "other"
    other.mkdir()
    (other / "episode_0.hdf5").write_bytes((src / "episode_0.hdf5").read_bytes())  # same content
    write_aloha_episode(other / "episode_1.hdf5", T=9, seed=42)
    r = cli("ingest", store, other, "--json")
    d = json.loads(r.stdout)
    assert d["episodes_added"] == 1 and d["duplicates_skipped"] == 1
    assert Store.open(store).episodes["length"].tolist() == [15, 16, 17, 9]


@pytest.mark.parametrize("point", ["before-journal", "after-journal"])
def test_crash_during_commit_leaves_before_or_after(tmp_path, aloha_dir, point):
    src, _ = aloha_dir
    store = tmp_path / "store"
    assert run_subprocess("ingest", store, src).returncode == 0
    before = snapshot(store)
    other = tmp_path / "more"
    other.mkdir()
    write_aloha_episode(other / "episode_0.hdf5", T=11, seed=7)
    r = run_subprocess("ingest", store, other, env={"ALOE_CRASH_AT": point})
    assert r.returncode == 137
    s = Store.open(store)  # recovery happens on open
    if point == "before-journal":
        assert {k: v for k, v in snapshot(store).items() if not k.startswith(".staging")} == before
        assert len(s.episodes) == 3
    else:
        assert len(s.episodes) == 4 and not (store / S.TXN_FILE).exists()
        assert len(pd.read_parquet(store / "frames")) == 48 + 11
    # The store stays writable after the crash, and staging leftovers are swept.
    write_aloha_episode(other / "episode_1.hdf5", T=5, seed=8)
    assert run_subprocess("ingest", store, other).returncode == 0
    assert not any((store / S.STAGING_DIR).iterdir())


def test_kill_9_at_random_moments_never_half_writes(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    import os
    from conftest import REPO

    src = tmp_path / "big"
    src.mkdir()
    for i in range(40):
        write_aloha_episode(src / f"episode_{i}.hdf5", T=200, seed=i, cams=())
    store = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for delay in (0.3, 0.8, 1.5, 3.0):
        p = subprocess.Popen([sys.executable, "-m", "aloe_cli", "ingest", str(store), str(src), "--force"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if (store / S.MANIFEST_FILE).exists() or (store / S.TXN_FILE).exists():
            s = Store.open(store)
            assert len(s.episodes) in (0, 40)
            assert len(pd.read_parquet(store / "frames")) == s.episodes["length"].sum()


def test_info_table_and_json(cli, tmp_path, aloha_dir):
    src, _ = aloha_dir
    store = tmp_path / "store"
    cli("ingest", store, src, "--policy-id", "v1", "--success", "true")
    r = cli("info", store, "--json")
    d = json.loads(r.stdout)
    assert d["episodes"] == 3 and d["frames"] == 48 and d["success_rate"] == 1.0
    assert d["per_policy_id"][0]["policy_id"] == "v1"
    r = cli("info", store)
    assert r.exit_code == 0 and "3 episodes, 48 frames" in r.stdout and "per policy_id" in r.stderr
    assert d["frames_files"] == 1 and r.stdout.rstrip().endswith("; 1 frames file")


def test_labels_file(cli, tmp_path, aloha_dir):
    src, _ = aloha_dir
    labels = tmp_path / "labels.csv"
    labels.write_text("source_key,success,policy_id\nepisode_0.hdf5,true,v2\nepisode_2.hdf5,false,\n")
    r = cli("ingest", tmp_path / "s", src, "--labels", labels, "--policy-id", "v1")
    assert r.exit_code == 0, r
    eps = Store.open(tmp_path / "s").episodes
    assert eps["success"].tolist()[0] is True and pd.isna(eps["success"][1]) and eps["success"][2] == False  # noqa
    assert eps["policy_id"].tolist() == ["v2", "v1", "v1"]
    assert eps["truncated"].tolist() == [False, True, False]
    # Saved by Excel as "CSV UTF-8": a byte-order mark and CRLF line ends. Its header was read as
    # '\ufeffsource_key', and the file refused for lacking the source_key column it has.
    labels.write_bytes(b"\xef\xbb\xbfsource_key,success,policy_id\r\nepisode_0.hdf5,true,v2\r\nepisode_2.hdf5,false,\r\n")
    r = cli("ingest", tmp_path / "excel", src, "--labels", labels, "--policy-id", "v1")
    assert r.exit_code == 0, r
    assert Store.open(tmp_path / "excel").episodes["policy_id"].tolist() == ["v2", "v1", "v1"]


def test_two_labels_for_one_episode_are_refused(cli, tmp_path, aloha_dir):
    """Two rows of a labels file for one episode (by source_key, by episode_index, or one of each) that
    label it otherwise: one line naming the file, the later row's line and its key column; the store as
    it was (a first ingest creates none). The same label twice is harmless and accepted."""
    src, _ = aloha_dir
    store, labels = tmp_path / "s", tmp_path / "lab.csv"
    cases = {
        "source_key,success\nepisode_0.hdf5,true\nepisode_1.hdf5,false\nepisode_0.hdf5,false\n":
            "lab.csv:4: source_key: episode 'episode_0.hdf5' is on line 2 too, otherwise (success true there, "
            "success false here); give each episode one label",
        "source_key,success,policy_id\nepisode_2.hdf5,no,v1\nepisode_2.hdf5,no,\n":
            "lab.csv:3: source_key: episode 'episode_2.hdf5' is on line 2 too, otherwise (success false, "
            "policy_id 'v1' there, success false here); give each episode one label",
        "episode_index,success\n1,unknown\n01,true\n":
            "lab.csv:3: episode_index: episode 1 is on line 2 too, otherwise (success unknown there, success "
            "true here); give each episode one label",
        "source_key,episode_index,success\n,0,true\nepisode_0.hdf5,,false\n":
            "lab.csv:3: source_key: names episode 'episode_0.hdf5' (episode_index 0), which line 2 labels too, "
            "otherwise (success true there, success false here); give each episode one label",
    }
    for text, message in cases.items():
        labels.write_text(text)
        msg = _bad(cli, store, src, "--labels", labels)
        assert msg == f"Error: {tmp_path / message}" and not store.exists(), text
    assert cli("ingest", store, src).exit_code == 0
    for text, message in cases.items():
        labels.write_text(text)
        assert _bad(cli, store, src, "--labels", labels, "--force") == f"Error: {tmp_path / message}", text
    # The same label twice (written alike or not), or once by key and once by index: accepted.
    labels.write_text("source_key,episode_index,success,policy_id\nepisode_0.hdf5,,true,v2\nepisode_0.hdf5,,1,v2\n"
                      ",0,yes,v2\n,2,false,\n,2,n,\n")
    assert cli("ingest", store, src, "--labels", labels, "--force").exit_code == 0
    eps = Store.open(store).episodes
    assert eps["success"].tolist() == [True, None, False] and eps["policy_id"].tolist() == ["v2", "unknown",
                                                                                             "unknown"]


def test_relabelling_needs_force_and_makes_critics_and_scores_stale(cli, tmp_path, aloha_dir):
    src, _ = aloha_dir
    store, l1, l2 = tmp_path / "s", tmp_path / "l1.csv", tmp_path / "l2.csv"
    l1.write_text("source_key,success\nepisode_0.hdf5,true\n")
    l2.write_text("source_key,success\nepisode_0.hdf5,false\n")
    assert cli("ingest", store, src, "--labels", l1).exit_code == 0
    before = Store.open(store)
    fp, labels_fp = before.fingerprint, before.labels_fingerprint
    # The same source and the same labels: unchanged; other labels: refused, the store as it was.
    assert "already in" in cli("ingest", store, src, "--labels", l1).stdout
    msg = _bad(cli, store, src, "--labels", l2, "--success", "false")
    assert msg.startswith(f"Error: {src}: already in {store} (ingest ") and "with other --labels, --success;" in msg
    r = cli("fit-critic", store, "--out", tmp_path / "c", "--steps", 2, "--batch-size", 8, "--hidden", 16,
            "--chunk-size", 2, "--bootstrap", "data", "--device", "cpu")
    assert r.exit_code == 0, r
    assert cli("score", store, "--critic", tmp_path / "c", "--out", tmp_path / "sc", "--device", "cpu").exit_code == 0
    # A checkpoint from before the labels were recorded still resumes.
    ckpt = tmp_path / "c" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=False)
    del state["meta"]["store"]["labels"]
    torch.save(state, ckpt)
    fit = ["fit-critic", store, "--out", tmp_path / "c", "--batch-size", 8, "--hidden", 16, "--chunk-size", 2,
           "--bootstrap", "data", "--device", "cpu", "--resume", "--steps"]
    assert cli(*fit, 3).exit_code == 0
    assert cli("ingest", store, src, "--labels", l2, "--force").exit_code == 0
    r = cli(*fit, 4)  # a relabelled store is another store to resume on
    assert r.exit_code == 2 and ("--resume: the checkpoint was made with a different labelling: the store's success "
                                 "or policy_id labels changed since; resume") in r.stderr  # not "normalization"
    after = Store.open(store)
    assert after.fingerprint == fp and after.labels_fingerprint != labels_fp
    info = json.loads(cli("info", store, "--json").stdout)
    assert (info["fingerprint"], info["labels_fingerprint"]) == (fp, after.labels_fingerprint)
    assert after.episodes["success"].tolist()[0] is False
    # The critic's rewards and the scores are the old labels': score warns, improve refuses.
    r = cli("score", store, "--critic", tmp_path / "c", "--out", tmp_path / "sc2", "--device", "cpu", "--json")
    assert r.exit_code == 0, r
    assert any("outcome labels (success, policy_id) changed since the critic" in w
               for w in json.loads(r.stdout)["warnings"])
    r = cli("improve", store, "--scores", tmp_path / "sc", "--method", "aloe", "--out", tmp_path / "p", "--steps", 1)
    assert r.exit_code == 2 and r.stderr.strip() == (
        f"Error: {tmp_path / 'sc' / S.SCORES_SUMMARY_FILE}: store_labels: the outcome labels (success, policy_id) of "
        f"{store} changed since these scores; fit the critic and score again (aloe fit-critic, aloe score)")


# ---------------------------------------------------------------- bad input: exit 2, store unchanged

def _bad(cli, store, *args):
    before = snapshot(store) if store.exists() else None
    r = cli("ingest", store, *args)
    assert r.exit_code == 2, r
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1
    assert (snapshot(store) if store.exists() else None) == before
    return r.stderr.strip()


def test_bad_inputs_name_file_and_field(cli, tmp_path, aloha_dir):
    import h5py

    src, _ = aloha_dir
    store = tmp_path / "store"
    # A bad first ingest creates nothing.
    bad = tmp_path / "nan"
    bad.mkdir()
    write_aloha_episode(bad / "episode_0.hdf5")
    with h5py.File(bad / "episode_0.hdf5", "a") as f:
        f["action"][3, 2] = np.nan
    msg = _bad(cli, store, bad)
    assert "episode_0.hdf5" in msg and ": action: contains NaN" in msg and not store.exists()

    cli("ingest", store, src)
    assert "no such file" in _bad(cli, store, tmp_path / "missing")
    assert "unknown format 'parquetz'" in _bad(cli, store, src, "--format", "parquetz")

    mismatch = tmp_path / "mismatch"
    mismatch.mkdir()
    write_aloha_episode(mismatch / "episode_0.hdf5")
    with h5py.File(mismatch / "episode_0.hdf5", "a") as f:
        del f["action"]
        f["action"] = np.zeros((7, 14))
    msg = _bad(cli, store, mismatch)
    assert "observation.state: has 20 frames but action has 7" in msg

    missing_key = tmp_path / "nokey"
    missing_key.mkdir()
    write_aloha_episode(missing_key / "episode_0.hdf5")
    with h5py.File(missing_key / "episode_0.hdf5", "a") as f:
        del f["action"]
    msg = _bad(cli, store, missing_key, "--format", "aloha")
    assert msg.endswith("episode_0.hdf5: action: missing dataset")

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "episode_0.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert "cannot be opened as HDF5" in _bad(cli, store, corrupt, "--format", "aloha")

    truncated = tmp_path / "truncated"
    truncated.mkdir()
    full = (src / "episode_1.hdf5").read_bytes()
    (truncated / "episode_0.hdf5").write_bytes(full[: len(full) // 2])
    _bad(cli, store, truncated, "--format", "aloha")

    empty = tmp_path / "empty"
    empty.mkdir()
    write_aloha_episode(empty / "episode_0.hdf5", T=0, cams=())
    assert "episode is empty" in _bad(cli, store, empty)

    wide = tmp_path / "wide"
    wide.mkdir()
    write_aloha_episode(wide / "episode_0.hdf5")
    with h5py.File(wide / "episode_0.hdf5", "a") as f:
        del f["action"]
        f["action"] = np.zeros((20, 16))
    msg = _bad(cli, store, wide)
    assert "action: has 16 numbers per frame but the store" in msg and "holds 14" in msg

    labels = tmp_path / "l.csv"
    labels.write_text("source_key,success\nepisode_0.hdf5,maybe\n")
    assert "l.csv:2: success: 'maybe' is not true, false or unknown" in _bad(cli, store, src, "--labels", labels,
                                                                            "--force")


def test_newer_store_version_is_refused(cli, tmp_path, aloha_dir):
    src, _ = aloha_dir
    store = tmp_path / "store"
    cli("ingest", store, src)
    m = json.loads((store / "aloe.json").read_text())
    m["format_version"] = S.FORMAT_VERSION + 1
    (store / "aloe.json").write_text(json.dumps(m))
    r = cli("info", store)
    assert r.exit_code == 2 and "aloe.json: format_version: store format 2 is newer" in r.stderr
    _bad(cli, store, src, "--force")


def test_not_a_store(cli, tmp_path):
    r = cli("info", tmp_path / "nothing")
    assert r.exit_code == 2 and r.stderr == f"Error: {tmp_path / 'nothing'}: store does not exist (run `aloe ingest` or `aloe rollout` first)\n"


def test_a_new_store_keeps_a_camera_or_extra_its_first_episode_lacks(cli, tmp_path):
    """The store took its columns from the first episode: an ALOHA take whose camera failed (no `top`), then
    takes with it, made a store without the camera, and every later take's frames were dropped. A store an
    ingest makes now has every column of that ingest (episodes without one get nulls); the frames read back
    equal, through the episode tables and through pandas' plain read of frames/."""
    import h5py

    src = tmp_path / "takes"
    src.mkdir()
    write_aloha_episode(src / "episode_0.hdf5", T=6, seed=50, cams=())
    write_aloha_episode(src / "episode_1.hdf5", T=7, seed=51, cams=("top",))
    write_aloha_episode(src / "episode_2.hdf5", T=5, seed=52, cams=("top",), effort=True)
    r = cli("ingest", tmp_path / "s", src, "--success", "true", "--json")
    assert r.exit_code == 0, r
    d = json.loads(r.stdout)
    assert d["dropped_columns"] == [] and d["warnings"] == []
    store = Store.open(tmp_path / "s")
    top, effort = "observation.images.top", "observation.effort"
    assert {top, effort} <= set(store.manifest["features"]) and store.manifest["features"][effort]["shape"] == [14]
    by_key = dict(zip(store.episodes[S.SOURCE_KEY], store.episodes[S.EPISODE_ID]))
    for key, has_top, has_effort in (("episode_0.hdf5", False, False), ("episode_1.hdf5", True, False),
                                     ("episode_2.hdf5", True, True)):
        frames = frames_of_episode(store, by_key[key])
        with h5py.File(src / key) as f:
            assert np.asarray(frames[S.OBS_STATE].tolist()).shape[0] == f["observations/qpos"].shape[0]
            if has_effort:
                np.testing.assert_allclose(np.stack(frames[effort]), f["observations/effort"][()], rtol=1e-6)
            else:
                assert frames[effort].isna().all()
        assert frames[top].notna().all() if has_top else frames[top].isna().all()
    plain = pd.read_parquet(tmp_path / "s" / S.FRAMES_DIR)
    assert len(plain) == 18 and plain[top].notna().sum() == 12 and plain[effort].notna().sum() == 5
    assert cli("info", tmp_path / "s").exit_code == 0  # the episodes table agrees with the file's footer


def test_an_existing_store_warns_of_the_columns_it_leaves_out(cli, tmp_path):
    """Into an existing store a camera it lacks cannot be added (its files hold none): that is a warning
    line naming the columns, the episodes and an example, and in --json's warnings (a plain line before)."""
    first, more = tmp_path / "first", tmp_path / "more"
    first.mkdir()
    more.mkdir()
    write_aloha_episode(first / "episode_0.hdf5", T=6, seed=1, cams=())
    for i in range(2):
        write_aloha_episode(more / f"episode_{i}.hdf5", T=6, seed=2 + i, cams=("top",))
    assert cli("ingest", tmp_path / "s", first, "--success", "true").exit_code == 0
    r = cli("ingest", tmp_path / "s", more, "--success", "true")
    assert r.exit_code == 0, r
    want = (f"warning: 2 episodes had columns the store {tmp_path / 's'} does not have, not stored: "
            "observation.images.top (episode 'episode_0.hdf5'); a store keeps the columns of its first ingest: "
            "ingest these into a new store to keep them")
    assert want in r.stderr.splitlines(), r.stderr


def test_a_grown_source_relabels_its_earlier_episodes_with_force_and_is_refused_without(cli, tmp_path):
    """A folder that gained a take since its ingest is new content, so its earlier episodes were skipped as
    already in the store, and a new labels file's outcomes for them were ignored without a word, --force or
    not. Now they are refused, naming the episode and both labels, the store as it was; with --force they are
    relabelled in place (same ids and frames) and the new take is added."""
    src = tmp_path / "takes"
    src.mkdir()
    for i in range(3):
        write_aloha_episode(src / f"episode_{i}.hdf5", T=6 + i, seed=i, cams=())
    v1, v2 = tmp_path / "v1.csv", tmp_path / "v2.csv"
    v1.write_text("source_key,success\nepisode_0.hdf5,true\nepisode_1.hdf5,false\nepisode_2.hdf5,true\n")
    v2.write_text("source_key,success,policy_id\nepisode_0.hdf5,false,\nepisode_1.hdf5,false,\n"
                  "episode_2.hdf5,true,\nepisode_3.hdf5,true,v2\n")
    store = tmp_path / "s"
    assert cli("ingest", store, src, "--labels", v1).exit_code == 0
    before = Store.open(store).episodes
    write_aloha_episode(src / "episode_3.hdf5", T=5, seed=9, cams=())  # the next day's take
    snap = {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()}
    r = cli("ingest", store, src, "--labels", v2)
    assert r.exit_code == 2 and r.stderr.strip() == (
        f"Error: {src}[episode_0.hdf5]: success: is in the store already (ingest {before[S.INGEST_ID][0]}) "
        "labelled otherwise (success true there, success false here); pass --force to relabel it"), r.stderr
    assert {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()} == snap
    r = cli("ingest", store, src, "--labels", v2, "--force", "--json")
    assert r.exit_code == 0, r
    d = json.loads(r.stdout)
    assert (d["episodes_added"], d["duplicates_skipped"], d["episodes_relabelled"]) == (1, 3, 1)
    after = Store.open(store).episodes
    assert after[S.EPISODE_ID].tolist()[:3] == before[S.EPISODE_ID].tolist()
    assert after[S.FRAMES_FILE].tolist()[:3] == before[S.FRAMES_FILE].tolist()
    assert after[S.SUCCESS].tolist() == [False, False, True, True]
    assert after[S.TERMINATED].tolist() == [True] * 4 and after[S.TRUNCATED].tolist() == [False] * 4
    assert after[S.POLICY_ID].tolist() == [S.UNKNOWN_POLICY_ID] * 3 + ["v2"]
    assert Store.open(store).manifest["ingests"][-1]["relabelled_ids"] == [before[S.EPISODE_ID][0]]
    assert cli("info", store).exit_code == 0
    # Grown again, ingested without the labels file: no outcome given is no contradiction; the labels stay.
    write_aloha_episode(src / "episode_4.hdf5", T=5, seed=10, cams=())
    assert cli("ingest", store, src).exit_code == 0
    assert Store.open(store).episodes[S.SUCCESS].tolist()[:4] == [False, False, True, True]
