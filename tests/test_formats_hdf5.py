"""robomimic, Minari and Mobile-ALOHA readers through the real CLI, on files written as those tools write them."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pyarrow.feather as feather
import pytest

from aloe_cli import schema as S
from aloe_cli.formats import ReadOptions, get_reader
from aloe_cli.formats._images import decode_frames
from aloe_cli.store import Store
from conftest import write_aloha_episode
from h5_writers import LOW_DIM, _encode_jpeg, write_minari, write_robomimic

STATE_KEYS = sorted(LOW_DIM)  # object, robot0_eef_pos, robot0_eef_quat, robot0_gripper_qpos


def snapshot(store):
    """Every file's bytes under a store (to prove it did not change)."""
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != S.LOCK_FILE}


def bad(cli, store, *args) -> str:
    """Run an ingest that must fail: exit 2, one 'Error: ' line, the store exactly as before."""
    before = snapshot(store) if store.exists() else None
    r = cli("ingest", store, *args)
    assert r.exit_code == 2, r
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r
    assert (snapshot(store) if store.exists() else None) == before
    return r.stderr.strip()[len("Error: "):]


def state_of(obs: dict, keys) -> np.ndarray:
    return np.concatenate([np.asarray(obs[k]).reshape(len(obs[k]), -1) for k in keys], axis=1).astype(np.float32)


# ================================================================================== robomimic

def test_robomimic_round_trips_exactly(cli, tmp_path):
    src = tmp_path / "lift_image.hdf5"
    written = write_robomimic(src, lengths=(6, 5, 7), cameras=("agentview", "robot0_eye_in_hand"),
                              success=[True, False, True])
    store = tmp_path / "store"
    r = cli("ingest", store, src)  # format detected
    assert r.exit_code == 0, r
    assert r.stdout.strip() == f"ingested 3 episodes (18 frames) from {src} [robomimic] into {store}"
    s = Store.open(store)
    eps = list(s.iter_episodes())
    assert [e.source_key for e in eps] == ["demo_1", "demo_2", "demo_3"]
    for ep, w in zip(eps, written.values()):
        np.testing.assert_array_equal(ep.state, state_of(w["obs"], STATE_KEYS))
        np.testing.assert_array_equal(ep.action, w["actions"].astype(np.float32))
        np.testing.assert_array_equal(ep.reward, w["rewards"].astype(np.float32))
        for cam in ("agentview_image", "robot0_eye_in_hand_image"):
            np.testing.assert_array_equal(decode_frames(ep.images[f"observation.images.{cam}"]), w["obs"][cam])
        assert ep.task == "Lift" and ep.policy_id == S.UNKNOWN_POLICY_ID
    # success where the last reward is positive, otherwise unknown (truncated)
    assert [e.success for e in eps] == [True, None, True]
    assert s.episodes[S.TRUNCATED].tolist() == [False, True, False]
    assert s.fps == 20.0  # env_kwargs.control_freq
    names = [f"object_{i}" for i in range(10)] + [f"robot0_eef_pos_{i}" for i in range(3)] + \
        [f"robot0_eef_quat_{i}" for i in range(4)] + ["robot0_gripper_qpos_0", "robot0_gripper_qpos_1"]
    assert s.features[S.OBS_STATE]["names"] == names and s.state_dim == 19 and s.action_dim == 7
    record = s.manifest["ingests"][0]["options"]
    assert record["state_keys"] == STATE_KEYS
    assert record["image_keys"] == ["agentview_image", "robot0_eye_in_hand_image"]


def test_robomimic_demos_in_natural_order_and_labels_by_index(cli, tmp_path):
    src = tmp_path / "many.hdf5"
    write_robomimic(src, lengths=[3] * 11, seed=3)
    eps = list(get_reader("robomimic").read(src, ReadOptions()).episodes)
    assert [e.source_key for e in eps] == [f"demo_{i}" for i in range(1, 12)]
    assert [e.source_index for e in eps] == list(range(1, 12))
    labels = tmp_path / "labels.csv"
    labels.write_text("episode_index,success\n10,false\n")
    r = cli("ingest", tmp_path / "s", src, "--labels", labels)
    assert r.exit_code == 0, r
    e = Store.open(tmp_path / "s").episodes
    assert e[S.SOURCE_KEY].tolist()[9] == "demo_10"
    assert e[S.SUCCESS].tolist()[9] is False and e[S.TERMINATED].tolist()[9]
    assert e[S.SUCCESS].isna().sum() == 0 and e[S.SUCCESS].sum() == 10
    # A label for an episode the source does not hold (a typo, another source's file) is refused.
    for text, field, name in (("episode_index,success\n12,false\n", "episode_index", "12"),
                              ("source_key,success\ndemo_12,false\n", "source_key", "'demo_12'")):
        labels.write_text(text)
        assert bad(cli, tmp_path / "s2", src, "--labels", labels) == (
            f"{labels}: {field}: names episode {name}, which is not in the source")


def test_robomimic_state_keys_filter_and_task(cli, tmp_path):
    src = tmp_path / "lift.hdf5"
    written = write_robomimic(src, lengths=(4, 5, 6, 7), masks={"train": ["demo_1", "demo_2", "demo_4"],
                                                                 "valid": ["demo_3"]})
    store = tmp_path / "store"
    r = cli("ingest", store, src, "--state-keys", "robot0_gripper_qpos,object", "--filter", "train",
            "--task", "lift the cube", "--json")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout)["episodes_added"] == 3
    s = Store.open(store)
    eps = list(s.iter_episodes())
    assert [e.source_key for e in eps] == ["demo_1", "demo_2", "demo_4"]
    for ep in eps:
        w = written[ep.source_key]
        np.testing.assert_array_equal(ep.state, state_of(w["obs"], ["robot0_gripper_qpos", "object"]))
        assert ep.task == "lift the cube"  # --task wins over env_name
    assert s.features[S.OBS_STATE]["names"][:3] == ["robot0_gripper_qpos_0", "robot0_gripper_qpos_1", "object_0"]
    rec = s.manifest["ingests"][0]["options"]
    assert rec["state_keys"] == ["robot0_gripper_qpos", "object"] and rec["filter_key"] == "train"
    # The same file read with another filter is another ingest, not "already in the store".
    r = cli("ingest", store, src, "--filter", "valid", "--state-keys", "robot0_gripper_qpos,object")
    assert r.exit_code == 0, r
    assert r.stdout.strip() == f"ingested 1 episode (6 frames) from {src} [robomimic] into {store}"
    assert Store.open(store).episodes[S.SOURCE_KEY].tolist() == ["demo_1", "demo_2", "demo_4", "demo_3"]
    r = cli("ingest", store, src, "--filter", "valid", "--state-keys", "robot0_gripper_qpos,object")
    assert r.exit_code == 0 and "already in" in r.stdout


def test_robomimic_gzip_images_drop_and_resize(cli, tmp_path):
    src = tmp_path / "image.hdf5"
    written = write_robomimic(src, lengths=(4, 3), cameras=("agentview",), compress=True, exclude_next_obs=True)
    with h5py.File(src) as f:
        assert f["data/demo_1/obs/agentview_image"].compression == "gzip" and "next_obs" not in f["data/demo_1"]
    r = cli("ingest", tmp_path / "drop", src, "--images", "drop")
    assert r.exit_code == 0, r
    assert Store.open(tmp_path / "drop").image_columns == []
    r = cli("ingest", tmp_path / "small", src, "--image-size", "8x6")
    assert r.exit_code == 0, r
    ep = next(Store.open(tmp_path / "small").iter_episodes())
    frames = decode_frames(ep.images["observation.images.agentview_image"])
    assert frames.shape == (4, 6, 8, 3)
    np.testing.assert_array_equal(ep.state, state_of(written["demo_1"]["obs"], STATE_KEYS))


def test_robomimic_shaped_rewards_need_the_success_reward(cli, tmp_path):
    """With reward_shaping, every step earns partial credit < 1: a positive last reward is not success."""
    src = tmp_path / "dense.hdf5"
    written = write_robomimic(src, lengths=(5, 5), reward_shaping=True, success=[True, False])
    assert written["demo_2"]["rewards"][-1] > 0
    assert cli("ingest", tmp_path / "s", src).exit_code == 0
    assert Store.open(tmp_path / "s").episodes[S.SUCCESS].tolist() == [True, None]


def test_robomimic_bad_inputs(cli, tmp_path):
    good = tmp_path / "good.hdf5"
    write_robomimic(good, lengths=(6, 5, 7), cameras=("agentview",), masks={"train": ["demo_1"], "valid": ["demo_2"]})
    store = tmp_path / "store"
    # A bad first ingest creates nothing.
    assert bad(cli, store, good, "--filter", "test") == f"{good}: mask/test: no such filter key (have: train, valid)"
    assert not store.exists()
    empty_mask = tmp_path / "empty_mask.hdf5"
    write_robomimic(empty_mask, lengths=(6, 5), masks={"train": ["demo_1", "demo_2"], "valid": []})
    assert bad(cli, store, empty_mask, "--filter", "valid") == f"{empty_mask}: mask/valid: lists no demos"
    assert not store.exists()
    assert cli("ingest", store, good).exit_code == 0

    def variant(name, edit, **kw):
        p = tmp_path / f"{name}.hdf5"
        write_robomimic(p, lengths=(6, 5, 7), cameras=("agentview",), seed=len(name), **kw)
        with h5py.File(p, "a") as f:
            edit(f)
        return p

    nomask = variant("nomask", lambda f: None)
    assert bad(cli, store, nomask, "--filter", "train") == \
        f"{nomask}: mask/train: no such filter key (the file has no mask group)"
    assert bad(cli, store, nomask, "--state-keys", "joint_pos") == (
        f"{nomask}: data/demo_1/obs/joint_pos: no such observation key (have: agentview_image, object, "
        "robot0_eef_pos, robot0_eef_quat, robot0_gripper_qpos)")
    assert bad(cli, store, nomask, "--state-keys", "object,agentview_image") == (
        f"{nomask}: data/demo_1/obs/agentview_image: is a camera stream, not a state vector; it is stored as "
        "observation.images.agentview_image")

    def drop(key):
        return lambda f: f.__delitem__(key)

    def replace(key, fn):
        def edit(f):
            a = f[key][()]
            del f[key]
            f[key] = fn(a)
        return edit

    def set_nan(f):
        f["data/demo_1/obs/robot0_eef_pos"][2, 1] = np.nan

    def empty(f):
        for k in ("actions", "rewards", "dones", "states"):
            replace(f"data/demo_2/{k}", lambda a: a[:0])(f)
        for k in list(f["data/demo_2/obs"]):
            replace(f"data/demo_2/obs/{k}", lambda a: a[:0])(f)

    cases = {
        "noactions": (drop("data/demo_2/actions"), "data/demo_2/actions: missing dataset"),
        "nokey": (drop("data/demo_3/obs/object"), "data/demo_3/obs/object: missing dataset"),
        "short": (replace("data/demo_2/obs/object", lambda a: a[:-1]),
                  "data/demo_2/obs/object: has 4 frames but actions has 5"),
        "narrow": (replace("data/demo_2/obs/object", lambda a: a[:, :9]),
                   "data/demo_2/obs/object: has 9 numbers per frame but demo_1 has 10"),
        "rewards": (replace("data/demo_3/rewards", lambda a: a[:3]), "data/demo_3/rewards: has 3 frames but actions has 7"),
        "nan": (set_nan, "data/demo_1/obs/robot0_eef_pos: contains NaN or inf (first at index (2, 1))"),
        "empty": (empty, "data/demo_2/actions: episode is empty (0 frames)"),
        "numsamples": (lambda f: f["data/demo_1"].attrs.__setitem__("num_samples", 99),
                       "data/demo_1.attrs[num_samples]: is 99 but actions has 6 frames"),
        "envargs": (lambda f: f["data"].attrs.__setitem__("env_args", "{not json"),
                    "data.attrs[env_args]: is not valid JSON: Expecting property name enclosed in double quotes: "
                    "line 1 column 2 (char 1)"),
        "raw": (drop("data/demo_1/obs"), "data/demo_1/obs: missing group (a raw robomimic file holds only simulator "
                "states; extract observations with robomimic's dataset_states_to_obs.py)"),
        "floatimage": (replace("data/demo_3/obs/agentview_image", lambda a: a.astype(np.float32)),
                       "data/demo_3/obs/agentview_image: expected uint8 (T, H, W, C) frames, got float32 "
                       "(7, 12, 12, 3)"),
        "actiondim": (replace("data/demo_2/actions", lambda a: a[:, :6]),
                      None),  # caught by the store: the width differs from the store's 7
    }
    for name, (edit, expected) in cases.items():
        p = variant(name, edit)
        msg = bad(cli, store, p)
        if expected is not None:
            assert msg == f"{p}: {expected}", name
        else:
            assert msg.startswith(f"{p}[demo_2]: action: has 6 numbers per frame but the store"), msg

    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"not an hdf5 file " * 20)
    assert bad(cli, store, garbage, "--format", "robomimic") == f"{garbage}: cannot be opened as HDF5: file signature not found"
    assert bad(cli, store, garbage) == \
        f"{garbage}: cannot tell the format; pass --format (aloha, robomimic, lerobot, minari, rlds)"
    truncated = tmp_path / "truncated.hdf5"
    full = good.read_bytes()
    truncated.write_bytes(full[: len(full) // 2])
    assert bad(cli, store, truncated, "--format", "robomimic") == (
        f"{truncated}: cannot be opened as HDF5: truncated file: eof = {len(full) // 2}, sblock->base_addr = 0, "
        f"stored_eof = {len(full)}")
    assert len(Store.open(store).episodes) == 3


# ================================================================================== Minari

def test_minari_round_trips_exactly_from_any_path(cli, tmp_path):
    ds_dir, buffers = write_minari(tmp_path / "datasets", lengths=(5, 4, 6), terminated=[True, True, False],
                                   rewards_last=[1.0, 0.0, 1.0])
    data = ds_dir / "data"
    ids = []
    for i, src in enumerate((ds_dir, data, data / "main_data.hdf5")):
        store = tmp_path / f"store{i}"
        r = cli("ingest", store, src)  # format detected from each path form
        assert r.exit_code == 0, r
        assert r.stdout.strip() == f"ingested 3 episodes (15 frames) from {src} [minari] into {store}"
        s = Store.open(store)
        ids.append(s.episodes[S.EPISODE_ID].tolist())
    eps = list(s.iter_episodes())
    assert ids[0] == ids[1] == ids[2]
    assert [e.source_key for e in eps] == ["episode_0", "episode_1", "episode_2"]
    for ep, b in zip(eps, buffers):
        np.testing.assert_array_equal(ep.state, np.stack(b["observations"][:-1]))  # the final observation dropped
        np.testing.assert_array_equal(ep.action, np.stack(b["actions"]))
        np.testing.assert_array_equal(ep.reward, np.asarray(b["rewards"], dtype=np.float32))
        assert ep.task == "D4RL/door/human-v2"
    # terminated with a positive last reward -> success; terminated with 0, or truncated -> unknown
    assert [e.success for e in eps] == [True, None, None]
    assert s.manifest["ingests"][0]["options"]["state_keys"] == ["observations"]
    assert s.features[S.OBS_STATE]["names"] == [f"observations_{i}" for i in range(6)]


@pytest.mark.parametrize("data_format", ["hdf5", "arrow", "parquet"])
def test_minari_dict_obs_jpeg_images_and_infos_success(cli, tmp_path, data_format):
    ds_dir, buffers = write_minari(tmp_path / "d", dataset_id="mujoco/fetch/push-v0", data_format=data_format,
                                   dict_obs=True, image_hw=32, success_info=[True, False, True],
                                   terminated=[True, False, False], rewards_last=[-1.0, 5.0, -1.0])
    store = tmp_path / "store"
    r = cli("ingest", store, ds_dir, "--task", "push the block")
    assert r.exit_code == 0, r
    s = Store.open(store)
    eps = list(s.iter_episodes())
    keys = ["achieved_goal", "desired_goal", "observation"]
    for ep, b in zip(eps, buffers):
        np.testing.assert_array_equal(ep.state, state_of({k: b["observations"][k][:-1] for k in keys}, keys))
        np.testing.assert_array_equal(ep.action, np.stack(b["actions"]))
        # Minari's JPEG bytes are kept byte for byte
        assert ep.images["observation.images.pixels"] == [
            _encode_jpeg(f).tobytes() for f in b["observations"]["pixels"][:-1]]
        assert ep.task == "push the block"
    # infos/success at the last step decides, whatever the rewards and terminations say
    assert [e.success for e in eps] == [True, False, True]
    assert s.episodes[S.TRUNCATED].tolist() == [False, False, False]
    rec = s.manifest["ingests"][0]["options"]
    assert rec["state_keys"] == keys and rec["image_keys"] == ["pixels"]
    assert s.features[S.OBS_STATE]["names"][:4] == ["achieved_goal_0", "achieved_goal_1", "achieved_goal_2",
                                                    "desired_goal_0"]

    r = cli("ingest", tmp_path / "two", ds_dir, "--state-keys", "observation,desired_goal", "--images", "drop")
    assert r.exit_code == 0, r
    s2 = Store.open(tmp_path / "two")
    assert s2.image_columns == [] and s2.state_dim == 9
    ep = next(s2.iter_episodes())
    np.testing.assert_array_equal(ep.state, state_of({k: buffers[0]["observations"][k][:-1]
                                                      for k in ("observation", "desired_goal")},
                                                     ["observation", "desired_goal"]))


def test_minari_raw_images_without_jpeg_encoding(cli, tmp_path):
    ds_dir, buffers = write_minari(tmp_path / "d", dict_obs=True, image_hw=32, jpeg_encoding=False)
    with h5py.File(ds_dir / "data" / "main_data.hdf5") as f:
        assert f["episode_0/observations/pixels"].shape == (6, 32, 32, 3)
    r = cli("ingest", tmp_path / "s", ds_dir)
    assert r.exit_code == 0, r
    ep = next(Store.open(tmp_path / "s").iter_episodes())
    np.testing.assert_array_equal(decode_frames(ep.images["observation.images.pixels"]),
                                  np.stack(buffers[0]["observations"]["pixels"][:-1]))


def test_minari_image_space_by_hand():
    """Minari's is_image_space: a uint8 Box of at least 32 x 32 over 0..255; a malformed shape is not one."""
    from aloe_cli.formats.minari import _is_image_space

    box = {"type": "Box", "dtype": "uint8", "low": 0, "high": 255}
    assert _is_image_space(dict(box, shape=[32, 48, 3])) is True
    assert _is_image_space(dict(box, shape=[31, 48, 3])) is False
    assert _is_image_space(dict(box, shape=[32, 48, 3], high=1)) is False
    assert _is_image_space(dict(box, shape=["32", "48"])) is False  # strings: not a shape, no TypeError
    assert _is_image_space(None) is None


def test_minari_backends_store_the_same_episodes(cli, tmp_path):
    ids = {}
    for fmt in ("hdf5", "arrow", "parquet"):
        ds_dir, _ = write_minari(tmp_path / fmt, data_format=fmt, success_info=[True, False, False])
        assert cli("ingest", tmp_path / f"s-{fmt}", ds_dir).exit_code == 0
        e = Store.open(tmp_path / f"s-{fmt}").episodes
        ids[fmt] = (e[S.EPISODE_ID].tolist(), e[S.SUCCESS].tolist())
    assert ids["hdf5"] == ids["arrow"] == ids["parquet"]


def test_minari_bad_inputs(cli, tmp_path):
    good, _ = write_minari(tmp_path / "good")
    store = tmp_path / "store"
    assert cli("ingest", store, good).exit_code == 0
    n = [0]

    def variant(edit):
        n[0] += 1
        d, _ = write_minari(tmp_path / f"v{n[0]}", seed=n[0])
        h5 = d / "data" / "main_data.hdf5"
        with h5py.File(h5, "a") as f:
            edit(f)
        return d, h5

    def replace(key, fn):
        def edit(f):
            a = f[key][()]
            del f[key]
            f[key] = fn(a)
        return edit

    def empty(f):
        for k in ("actions", "rewards", "terminations", "truncations"):
            replace(f"episode_1/{k}", lambda a: a[:0])(f)
        replace("episode_1/observations", lambda a: a[:1])(f)

    cases = [
        (replace("episode_1/observations", lambda a: a[:-1]),
         "episode_1/observations: has 4 rows but actions has 4; Minari stores T+1 observations (the last is the "
         "final observation)"),
        (lambda f: f.__delitem__("episode_2/rewards"), "episode_2/rewards: missing dataset"),
        (replace("episode_1/rewards", lambda a: a[:3]), "episode_1/rewards: has 3 frames but actions has 4"),
        (lambda f: f["episode_0/actions"].__setitem__((1, 2), np.nan),
         "episode_0/actions: contains NaN or inf (first at index (1, 2))"),
        (empty, "episode_1/actions: episode is empty (0 frames)"),
        (lambda f: [f.__delitem__(k) for k in list(f)], "has no episode_{id} groups"),
    ]
    for edit, expected in cases:
        d, h5 = variant(edit)
        msg = bad(cli, store, d)
        assert msg == f"{h5}: {expected}", msg

    # --filter is robomimic's alone: the refusal names it, not Minari (which it named, then refused itself)
    assert bad(cli, store, good, "--filter", "train", "--force") == "--filter: applies to robomimic sources, not minari"

    d, _ = write_minari(tmp_path / "corrupt")
    h5 = d / "data" / "main_data.hdf5"
    h5.write_bytes(b"not an hdf5 file " * 20)
    assert bad(cli, store, d) == f"{h5}: cannot be opened as HDF5: file signature not found"

    d, _ = write_minari(tmp_path / "zarr")
    meta = d / "data" / "metadata.json"
    m = json.loads(meta.read_text())
    meta.write_text(json.dumps({**m, "data_format": "zarr"}))
    assert bad(cli, store, d) == f"{meta}: data_format: 'zarr' is not a Minari storage format (hdf5, arrow, parquet)"
    meta.write_text("{not json")
    assert bad(cli, store, d, "--format", "minari") == \
        f"{meta}: cannot be parsed as JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"

    d, _ = write_minari(tmp_path / "arrow", data_format="arrow")
    part = d / "data" / "1" / "part-0.arrow"
    feather.write_feather(feather.read_table(part).drop_columns(["rewards"]), part)
    assert bad(cli, store, d) == f"{d / 'data' / '1'}: rewards: missing column"
    d, _ = write_minari(tmp_path / "parquet", data_format="parquet")
    part = d / "data" / "2" / "part-0.parquet"
    part.write_bytes(part.read_bytes()[:100])
    assert bad(cli, store, d).startswith(f"{part}: cannot be read: ")
    assert len(Store.open(store).episodes) == 3


# ================================================================================== Mobile ALOHA

CAMS = ("cam_high", "cam_left_wrist", "cam_right_wrist")


def test_mobile_aloha_jpeg_bytes_base_action_and_effort(cli, tmp_path):
    src = tmp_path / "mobile"
    src.mkdir()
    written = [write_aloha_episode(src / f"episode_{i}.hdf5", T=6 + i, seed=i, sim=False, cams=CAMS, effort=True,
                                   compress=True, base_action=True) for i in range(2)]
    store = tmp_path / "store"
    r = cli("ingest", store, src)
    assert r.exit_code == 0, r
    s = Store.open(store)
    assert s.image_columns == [f"observation.images.{c}" for c in CAMS]
    for ep, w in zip(s.iter_episodes(), written):
        for c in CAMS:
            assert ep.images[f"observation.images.{c}"] == w["jpeg"][c]  # byte-identical JPEG
        np.testing.assert_array_equal(ep.extras["observation.base_action"], w["base_action"].astype(np.float32))
        np.testing.assert_array_equal(ep.extras["observation.effort"], w["effort"].astype(np.float32))
        np.testing.assert_array_equal(ep.state, w["qpos"].astype(np.float32))
    assert s.extra_columns == {"observation.base_action": 2, "observation.effort": 14, "observation.qvel": 14}
    r = cli("ingest", tmp_path / "small", src, "--image-size", "8x6")
    assert r.exit_code == 0, r
    ep = next(Store.open(tmp_path / "small").iter_episodes())
    assert decode_frames(ep.images["observation.images.cam_high"]).shape == (6, 6, 8, 3)


def test_mobile_aloha_frames_in_the_recorders_camera_order(cli, tmp_path):
    """ALOHA's recorder writes compress_len's rows in its camera order (the 4-camera static rig:
    cam_high, cam_low, cam_left_wrist, cam_right_wrist), not the file's sorted one; a frame's length
    comes from its bytes, so every JPEG is read whole, and a file without compress_len reads the same."""
    cams = ("cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist")
    src = tmp_path / "src"
    src.mkdir()
    w = write_aloha_episode(src / "episode_0.hdf5", T=6, sim=False, cams=cams, compress=True)
    with h5py.File(src / "episode_0.hdf5") as f:
        assert f["compress_len"][1].tolist() == [len(b) for b in w["jpeg"]["cam_low"]]  # the recorder's order
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(src / "episode_0.hdf5", bare / "episode_0.hdf5")
    with h5py.File(bare / "episode_0.hdf5", "a") as f:
        del f["compress_len"]
    for d in (src, bare):
        assert cli("ingest", tmp_path / f"store-{d.name}", d).exit_code == 0
        ep = next(Store.open(tmp_path / f"store-{d.name}").iter_episodes())
        for c in cams:
            assert ep.images[f"observation.images.{c}"] == w["jpeg"][c]  # byte-identical JPEG, whole
        decoded = decode_frames(ep.images["observation.images.cam_left_wrist"])
        assert decoded.shape == w["images"]["cam_left_wrist"].shape


def _replace(key, fn):
    def edit(f):
        a = f[key][()]
        del f[key]
        f[key] = fn(a)
    return edit


def test_mobile_aloha_bad_compress_len(cli, tmp_path):
    store = tmp_path / "store"
    cases = {
        "short": (_replace("compress_len", lambda a: a[:2]),
                  "compress_len: expected shape (3, 6) (cameras, frames), got (2, 6)"),
        "long": (lambda f: f["compress_len"].__setitem__((1, 2), 1e6),
                 "compress_len: holds lengths outside 0..{max_len}"),
        "cut": (_replace("observations/images/cam_left_wrist", lambda a: np.where(np.arange(a.shape[1]) < 100, a, 0)
                         .astype(np.uint8)),
                "observations/images/cam_left_wrist: frame 0 is not a zero-padded JPEG (no end-of-image marker FF D9 "
                "before the padding)"),
        "raw": (_replace("observations/images/cam_high", lambda a: np.zeros((6, 4, 4, 3), np.float32)), None),
    }
    for name, (edit, expected) in cases.items():
        d = tmp_path / name
        d.mkdir()
        write_aloha_episode(d / "episode_0.hdf5", T=6, cams=CAMS, compress=True)
        with h5py.File(d / "episode_0.hdf5", "a") as f:
            max_len = f["observations/images/cam_high"].shape[1]
            edit(f)
        msg = bad(cli, store, d)
        if expected is None:
            assert msg == (f"{d / 'episode_0.hdf5'}: observations/images/cam_high: expected zero-padded JPEG bytes "
                           "uint8 (T, max_len), got float32 (6, 4, 4, 3)"), msg
        else:
            assert msg == f"{d / 'episode_0.hdf5'}: {expected.format(max_len=max_len)}", msg


# ================================================================================== detection

def test_each_source_is_detected_by_exactly_one_reader(tmp_path):
    aloha = tmp_path / "aloha"
    aloha.mkdir()
    write_aloha_episode(aloha / "episode_0.hdf5", T=3, cams=())
    robomimic = tmp_path / "low_dim.hdf5"
    write_robomimic(robomimic, lengths=(3,))
    minari, _ = write_minari(tmp_path / "m")
    arrow, _ = write_minari(tmp_path / "a", data_format="arrow")
    expected = {aloha: "aloha", aloha / "episode_0.hdf5": "aloha", robomimic: "robomimic", minari: "minari",
                minari / "data": "minari", minari / "data" / "main_data.hdf5": "minari", arrow: "minari"}
    for path, name in expected.items():
        assert [n for n in ("aloha", "robomimic", "minari") if get_reader(n).detect(path)] == [name], path
    for path in (tmp_path, tmp_path / "m", minari / "data" / "metadata.json"):
        assert not any(get_reader(n).detect(path) for n in ("aloha", "robomimic", "minari")), path


def test_minari_text_observations_are_not_state(cli, tmp_path):
    """MiniGrid-style Dict spaces carry a Text 'mission': not a number, so not part of the state."""
    ds_dir, buffers = write_minari(tmp_path / "d", dict_obs=True, lengths=(3, 2))
    with h5py.File(ds_dir / "data" / "main_data.hdf5", "a") as f:
        for i, b in enumerate(buffers):
            T = len(b["actions"])
            f[f"episode_{i}/observations"].create_dataset("mission", data=["open the door"] * (T + 1),
                                                          dtype=h5py.string_dtype(encoding="utf-8"))
    r = cli("ingest", tmp_path / "s", ds_dir)
    assert r.exit_code == 0, r
    assert Store.open(tmp_path / "s").manifest["ingests"][0]["options"]["state_keys"] == [
        "achieved_goal", "desired_goal", "observation"]
    msg = bad(cli, tmp_path / "s2", ds_dir, "--state-keys", "mission")
    assert msg == f"{ds_dir / 'data' / 'main_data.hdf5'}: episode_0/observations/mission: is not numeric (dtype object)"


def test_an_option_the_format_does_not_read_is_refused(cli, tmp_path, aloha_dir):
    """`--split` is RLDS's, `--filter` robomimic's: given to another format it would be ignored and every
    episode ingested, so it is refused before the store is touched. The line names the formats that read it
    (it named Minari for --filter, which Minari then refused)."""
    src, aloha = tmp_path / "demo.hdf5", aloha_dir[0]
    write_robomimic(src, lengths=(6, 5))
    for argv, src_, message in (
            (["--split", "val"], src, "Error: --split: applies to rlds sources, not robomimic"),
            (["--filter", "train"], aloha, "Error: --filter: applies to robomimic sources, not aloha"),
            (["--state-keys", "qpos"], aloha,
             "Error: --state-keys: applies to robomimic, lerobot, minari, rlds sources, not aloha")):
        r = cli("ingest", tmp_path / "store", src_, *argv)
        assert r.exit_code == 2 and r.stderr == message + "\n", r
        assert not (tmp_path / "store").exists()
