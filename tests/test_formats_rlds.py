"""RLDS / Open X-Embodiment TFDS folders: TFRecords framed and Examples serialised here, read without TensorFlow.

Layout facts (google-research/rlds README, kpertsch/rlds_dataset_builder, tensorflow/datasets
core/example_serializer.py, tensorflow/core/example/{example,feature}.proto,
tensorflow/core/lib/io/record_writer): `<name>/<version>/{dataset_info.json, features.json,
<name>-<split>.tfrecord-XXXXX-of-NNNNN}`; a record is uint64 length, uint32 masked CRC-32C of
the length, the data, uint32 masked CRC-32C of the data; one record is one episode whose
`tf.train.Example` keys are feature paths joined by `/`; sequences are flattened (T*A floats),
bools are int64, images and text are one bytes entry per step.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("google.protobuf")

from aloe_cli import schema as S  # noqa: E402
from aloe_cli.formats._tfrecord import crc32c, example_classes, masked_crc32c  # noqa: E402
from aloe_cli.store import Store  # noqa: E402

NAME = "toy_rlds"
VERSION = "1.0.0"


def snapshot(store: Path) -> dict:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != S.LOCK_FILE}


# ---------------------------------------------------------------------------- CRC-32C and protos, by hand

@pytest.mark.parametrize("lanes", [False, True])
def test_crc32c_known_vectors(lanes):
    assert crc32c(b"123456789", lanes=lanes) == 0xE3069283  # the CRC catalogue's check value
    # RFC 3720 (iSCSI) B.4 test vectors.
    assert crc32c(bytes(32), lanes=lanes) == 0x8A9136AA
    assert crc32c(b"\xff" * 32, lanes=lanes) == 0x62A8AB43
    assert crc32c(bytes(range(32)), lanes=lanes) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1)), lanes=lanes) == 0x113FDB5C


def test_crc32c_lanes_match_the_plain_loop():
    rng = np.random.default_rng(0)
    for n in (4, 5, 63, 1000, 2048, 4099, 70001):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32c(data, lanes=True) == crc32c(data, lanes=False), n


def test_masked_crc_by_hand():
    # c = 0xE3069283: (c >> 15) = 0x0001C60D, (c << 17) mod 2**32 = (c & 0x7FFF) << 17 = 0x25060000,
    # rotated = 0x2507C60D, + 0xA282EAD8 = 0xC78AB0E5 (mod 2**32).
    assert masked_crc32c(b"123456789") == 0xC78AB0E5


def test_example_wire_format_by_hand():
    # Example{features(1): Features{feature(1): entry{key(1): "a", value(2): Feature{int64_list(3): {value(1): [1]}}}}}
    wire = bytes.fromhex("0a0c" "0a0a" "0a0161" "1205" "1a03" "0a0101")
    C = example_classes()
    ex = C["Example"]()
    ex.features.feature["a"].int64_list.value.append(1)
    assert ex.SerializeToString() == wire
    back = C["Example"].FromString(wire)
    assert list(back.features.feature["a"].int64_list.value) == [1]
    # float_list is field 2, bytes_list field 1 (packed floats: tag 0a, 4 bytes little-endian).
    f = C["Feature"]()
    f.float_list.value.append(1.5)
    assert f.SerializeToString() == bytes.fromhex("1206" "0a04") + struct.pack("<f", 1.5)
    f = C["Feature"]()
    f.bytes_list.value.append(b"x\x00")
    assert f.SerializeToString() == bytes.fromhex("0a04" "0a02") + b"x\x00"


# ---------------------------------------------------------------------------- fixtures

def frame_record(data: bytes) -> bytes:
    """One TFRecord record, framed as tensorflow's record_writer does."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def image_bytes(arr: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def tensor(shape, dtype="float32", desc=""):
    cls = "scalar.Scalar" if not shape else "tensor_feature.Tensor"
    return {"pythonClassName": f"tensorflow_datasets.core.features.{cls}",
            "tensor": {"shape": {"dimensions": [str(d) for d in shape]} if shape else {}, "dtype": dtype,
                       "encoding": "none"}, "description": desc}


def image_feature(shape, fmt):
    return {"pythonClassName": "tensorflow_datasets.core.features.image_feature.Image",
            "image": {"shape": {"dimensions": [str(d) for d in shape]}, "dtype": "uint8", "encodingFormat": fmt}}


TEXT = {"pythonClassName": "tensorflow_datasets.core.features.text_feature.Text", "text": {}}


def fdict(d: dict) -> dict:
    """A TFDS FeaturesDict in features.json."""
    return {"pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
            "featuresDict": {"features": d}}


def steps_feature(step: dict) -> dict:
    """The `steps` Dataset feature of an RLDS features.json: a sequence of `step` dicts."""
    return {"pythonClassName": "tensorflow_datasets.core.features.dataset_feature.Dataset",
            "sequence": {"feature": fdict(step), "length": "-1"}}


def features_json(observation: dict, action) -> dict:
    """features.json as TFDS writes it for rlds_dataset_builder's example builder."""
    return fdict({
        "steps": steps_feature({
            "observation": fdict(observation),
            "action": action,
            "discount": tensor([], "float32"),
            "reward": tensor([], "float32"),
            "is_first": tensor([], "bool"),
            "is_last": tensor([], "bool"),
            "is_terminal": tensor([], "bool"),
            "language_instruction": TEXT,
            "language_embedding": tensor([8], "float32"),
        }),
        "episode_metadata": fdict({"file_path": TEXT}),
    })


STANDARD_OBS = {
    "image": image_feature([12, 16, 3], "png"),
    "wrist_image": image_feature([12, 16, 3], "jpeg"),
    "state": tensor([10], "float32"),
    "joint_velocity": tensor([3], "float32"),
}


def make_episode(T: int, seed: int, terminal: bool, last_reward: float, task: str) -> dict:
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 255, size=(T, 12, 16, 3), dtype=np.uint8)
    return {
        "T": T,
        "steps/observation/image": [image_bytes(i, "PNG") + b"\x00\x00" for i in imgs],  # trailing NULs kept
        "steps/observation/wrist_image": [image_bytes(i, "JPEG") for i in imgs],
        "steps/observation/state": rng.normal(size=(T, 10)).astype(np.float32),
        "steps/observation/joint_velocity": rng.normal(size=(T, 3)).astype(np.float32),
        "steps/action": rng.normal(size=(T, 7)).astype(np.float32),
        "steps/discount": np.ones(T, np.float32),
        "steps/reward": np.r_[np.zeros(T - 1), last_reward].astype(np.float32),
        "steps/is_first": np.r_[1, np.zeros(T - 1)].astype(np.int64),
        "steps/is_last": np.r_[np.zeros(T - 1), 1].astype(np.int64),
        "steps/is_terminal": np.r_[np.zeros(T - 1), int(terminal)].astype(np.int64),
        "steps/language_instruction": [task.encode()] * T,
        "steps/language_embedding": rng.normal(size=(T, 8)).astype(np.float32),
        "episode_metadata/file_path": [f"/raw/episode_{seed}.npy".encode()],
    }


def serialise(ep: dict) -> bytes:
    """An episode dict -> tf.train.Example bytes, flattened the way TFDS's example_serializer does."""
    ex = example_classes()["Example"]()
    for key, v in ep.items():
        if key == "T":
            continue
        f = ex.features.feature[key]
        if isinstance(v, list):
            f.bytes_list.value.extend(v)
        elif v.dtype.kind == "f":
            f.float_list.value.extend(v.reshape(-1).tolist())
        else:
            f.int64_list.value.extend(v.reshape(-1).tolist())
    return ex.SerializeToString()


def write_rlds(root: Path, splits: dict[str, list[list[dict]]], observation=None, action=None) -> Path:
    """`splits`: split name -> shards -> episodes. Returns the <name>/<version> folder."""
    d = root / NAME / VERSION
    d.mkdir(parents=True)
    info_splits = []
    for split, shards in splits.items():
        n = len(shards)
        for i, eps in enumerate(shards):
            with open(d / f"{NAME}-{split}.tfrecord-{i:05d}-of-{n:05d}", "wb") as f:
                for ep in eps:
                    f.write(frame_record(serialise(ep)))
        info_splits.append({"filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}", "name": split,
                            "numBytes": "0", "shardLengths": [str(len(e)) for e in shards]})
    (d / "dataset_info.json").write_text(json.dumps({
        "citation": "", "description": "toy", "fileFormat": "tfrecord", "moduleName": f"{NAME}.{NAME}_dataset_builder",
        "name": NAME, "releaseNotes": {VERSION: "Initial release."}, "splits": info_splits,
        "version": VERSION}, indent=2))
    (d / "features.json").write_text(json.dumps(
        features_json(observation or STANDARD_OBS, action or tensor([7], "float32")), indent=2))
    return d


@pytest.fixture
def dataset(tmp_path):
    train = [[make_episode(6, 0, True, 1.0, "put the cup in the sink"),
              make_episode(9, 1, False, 0.0, "open the drawer")],
             [make_episode(5, 2, True, 0.0, "put the cup in the sink")]]
    val = [[make_episode(4, 3, True, 1.0, "wipe the table")]]
    return write_rlds(tmp_path / "tfds", {"train": train, "val": val}), train, val


# ---------------------------------------------------------------------------- round trips

def test_round_trip_through_cli_with_detection(cli, tmp_path, dataset):
    src, train, val = dataset
    store = tmp_path / "store"
    r = cli("ingest", store, src.parent)  # <name>/ with one version folder inside
    assert r.exit_code == 0, r
    assert r.stdout.strip() == f"ingested 4 episodes (24 frames) from {src.parent} [rlds] into {store}"
    s = Store.open(store)
    got = list(s.iter_episodes())
    written = [e for shard in train for e in shard] + [e for shard in val for e in shard]
    assert [g.source_key for g in got] == ["train/episode_000000", "train/episode_000001",
                                           "train/episode_000002", "val/episode_000000"]
    # --labels by episode_index: positions in the whole read, unique across splits.
    labels = tmp_path / "labels.csv"
    labels.write_text("episode_index,success\n1,false\n3,false\n")
    r = cli("ingest", tmp_path / "labelled", src, "--labels", labels)
    assert r.exit_code == 0, r
    assert Store.open(tmp_path / "labelled").episodes["success"].tolist() == [True, False, None, False]
    for g, e in zip(got, written):
        np.testing.assert_array_equal(g.state, e["steps/observation/state"])
        np.testing.assert_array_equal(g.action, e["steps/action"])
        np.testing.assert_array_equal(g.reward, e["steps/reward"])
        np.testing.assert_array_equal(g.extras["observation.joint_velocity"], e["steps/observation/joint_velocity"])
        assert g.images["observation.images.image"] == e["steps/observation/image"]  # bytes, trailing NULs too
        assert g.images["observation.images.wrist_image"] == e["steps/observation/wrist_image"]
        assert g.task == e["steps/language_instruction"][0].decode()
        assert not g.is_intervention.any()
    # terminal + positive last reward = success; is_last without is_terminal, or no reward: unknown.
    assert [g.success for g in got] == [True, None, None, True]
    assert [g.terminated for g in got] == [True, False, False, True]
    assert s.manifest["ingests"][0]["options"]["splits"] == ["train", "val"]
    assert "observation.language_embedding" not in s.features  # not an observation


def test_split_option(cli, tmp_path, dataset):
    src, _, val = dataset
    r = cli("ingest", tmp_path / "store", src, "--split", "val", "--json")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout)["episodes_added"] == 1
    got = list(Store.open(tmp_path / "store").iter_episodes())
    np.testing.assert_array_equal(got[0].action, val[0][0]["steps/action"])
    msg = bad(cli, tmp_path / "s2", src, "--split", "test")
    assert msg == f"{src}/dataset_info.json: splits: 'test' is not a split of this dataset (train, val)"


def test_state_from_observation_keys_and_action_dict(cli, tmp_path):
    """No observation/state: numeric observations by sorted name; a dict action is concatenated."""
    obs = {"joint_position": tensor([7], "float64"), "gripper_position": tensor([1], "float64"),
           "image": image_feature([12, 16, 3], "jpeg")}
    action = {"pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
              "featuresDict": {"features": {"world_vector": tensor([3]), "gripper_closedness_action": tensor([1]),
                                            "terminate_episode": tensor([], "int32")}}}
    rng = np.random.default_rng(5)
    eps = []
    for T in (5, 7):
        base = make_episode(T, T, False, 0.0, "stack blocks")
        ep = {k: v for k, v in base.items() if not k.startswith(("steps/observation/", "steps/action"))}
        ep.update({"steps/observation/joint_position": rng.normal(size=(T, 7)),
                   "steps/observation/gripper_position": rng.uniform(size=(T, 1)),
                   "steps/observation/image": base["steps/observation/wrist_image"],
                   "steps/action/world_vector": rng.normal(size=(T, 3)).astype(np.float32),
                   "steps/action/gripper_closedness_action": rng.normal(size=(T, 1)).astype(np.float32),
                   "steps/action/terminate_episode": np.r_[np.zeros(T - 1), 1].astype(np.int64)})
        eps.append(ep)
    src = write_rlds(tmp_path / "tfds", {"train": [eps]}, observation=obs, action=action)
    assert cli("ingest", tmp_path / "a", src, "--images", "drop").exit_code == 0
    s = Store.open(tmp_path / "a")
    got = list(s.iter_episodes())
    e = eps[1]
    # float64 is stored by TFDS as a float_list (float32 on the wire).
    np.testing.assert_array_equal(got[1].state, np.concatenate(
        [e["steps/observation/gripper_position"], e["steps/observation/joint_position"]], axis=1).astype(np.float32))
    np.testing.assert_array_equal(got[1].action, np.concatenate(
        [e["steps/action/gripper_closedness_action"], e["steps/action/terminate_episode"][:, None],
         e["steps/action/world_vector"]], axis=1))
    assert s.features[S.ACTION]["names"] == ["gripper_closedness_action", "terminate_episode", "world_vector.0",
                                             "world_vector.1", "world_vector.2"]
    assert s.image_columns == []
    assert s.manifest["ingests"][0]["options"]["state_keys"] == [
        "steps/observation/gripper_position", "steps/observation/joint_position"]
    # --state-keys picks the state; the other numeric observation becomes an extra column.
    assert cli("ingest", tmp_path / "b", src, "--state-keys", "joint_position").exit_code == 0
    s = Store.open(tmp_path / "b")
    got = list(s.iter_episodes())
    np.testing.assert_array_equal(got[0].state, eps[0]["steps/observation/joint_position"].astype(np.float32))
    np.testing.assert_array_equal(got[0].extras["observation.gripper_position"],
                                  eps[0]["steps/observation/gripper_position"].astype(np.float32))
    assert got[0].images["observation.images.image"] == eps[0]["steps/observation/image"]


def test_image_size_reencodes(cli, tmp_path, dataset):
    from aloe_cli.formats._images import decode_frames

    src, train, _ = dataset
    assert cli("ingest", tmp_path / "store", src, "--image-size", "8x6", "--split", "train").exit_code == 0
    got = list(Store.open(tmp_path / "store").iter_episodes())
    assert decode_frames(got[0].images["observation.images.image"]).shape == (6, 6, 8, 3)


def test_detect_is_strict(tmp_path, dataset):
    from aloe_cli.formats import detect_format, get_reader

    src, _, _ = dataset
    r = get_reader("rlds")
    assert r.detect(src) and r.detect(src.parent) and detect_format(src) == "rlds"
    assert not r.detect(tmp_path) and not r.detect(src / "features.json")
    other = tmp_path / "other"
    other.mkdir()
    (other / "features.json").write_text((src / "features.json").read_text())
    (other / "dataset_info.json").write_text((src / "dataset_info.json").read_text())
    assert not r.detect(other)  # no TFRecord shards


# ---------------------------------------------------------------------------- bad input

def bad(cli, store: Path, *args) -> str:
    before = snapshot(store) if store.exists() else None
    r = cli("ingest", store, *args)
    assert r.exit_code == 2, r
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
    assert (snapshot(store) if store.exists() else None) == before
    return r.stderr.strip().removeprefix("Error: ")


def record_offsets(path: Path) -> list[tuple[int, int]]:
    """(start, data length) of each record, from the framing."""
    raw, out, pos = path.read_bytes(), [], 0
    while pos < len(raw):
        (n,) = struct.unpack("<Q", raw[pos:pos + 8])
        out.append((pos, n))
        pos += 12 + n + 4
    return out


@pytest.fixture
def store_with_one(cli, tmp_path):
    store = tmp_path / "store"
    src = write_rlds(tmp_path / "first", {"train": [[make_episode(5, 9, True, 1.0, "x")]]})
    assert cli("ingest", store, src).exit_code == 0
    return store


def test_bad_framing(cli, tmp_path, dataset, store_with_one):
    src, _, _ = dataset
    store = store_with_one
    shard = src / f"{NAME}-train.tfrecord-00000-of-00002"
    original = shard.read_bytes()
    (start, n) = record_offsets(shard)[1]

    raw = bytearray(original)
    raw[start + 12 + n // 2] ^= 0x01  # one bit of record 1's data
    shard.write_bytes(bytes(raw))
    stored = struct.unpack("<I", raw[start + 12 + n:start + 16 + n])[0]
    computed = masked_crc32c(bytes(raw[start + 12:start + 12 + n]))
    assert bad(cli, store, src) == (f"{shard}: record 1: data CRC mismatch (stored 0x{stored:08x}, "
                                    f"computed 0x{computed:08x})")

    raw = bytearray(original)
    raw[start + 8] ^= 0xFF  # record 1's length CRC
    shard.write_bytes(bytes(raw))
    stored = struct.unpack("<I", raw[start + 8:start + 12])[0]
    computed = masked_crc32c(bytes(raw[start:start + 8]))
    assert bad(cli, store, src) == (f"{shard}: record 1: length CRC mismatch (stored 0x{stored:08x}, "
                                    f"computed 0x{computed:08x})")

    shard.write_bytes(original[: start + 12 + 100])  # record 1 cut after 100 bytes of data
    assert bad(cli, store, src) == f"{shard}: record 1: truncated: the record needs {n + 4} more bytes, 100 left"
    shard.write_bytes(original[: start + 5])
    assert bad(cli, store, src) == f"{shard}: record 1: truncated: the record header needs 12 bytes, 5 left"

    shard.write_bytes(original[:start] + frame_record(b"\xff\xff\xff"))  # framed fine, not an Example
    assert bad(cli, store, src).startswith(f"{shard}: record 1: is not a tf.train.Example (")

    shard.write_bytes(original)
    (src / f"{NAME}-train.tfrecord-00001-of-00002").unlink()
    assert bad(cli, store, src) == f"{src}: train: shard 00001 of 00002 is missing"


def rewrite(src: Path, fn) -> None:
    p = src / "features.json"
    tree = json.loads(p.read_text())
    fn(tree["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"]["features"])
    p.write_text(json.dumps(tree))


def test_bad_features_and_values(cli, tmp_path, store_with_one):
    store = store_with_one
    ep = lambda: [[make_episode(6, 4, True, 1.0, "t")]]  # noqa: E731
    shard = f"{NAME}-train.tfrecord-00000-of-00001"

    src = write_rlds(tmp_path / "a", {"train": ep()})
    rewrite(src, lambda f: f["observation"]["featuresDict"]["features"]["state"]["tensor"]["shape"].update(
        dimensions=["9"]))
    assert bad(cli, store, src) == (f"{src}/{shard}: steps/observation/state: record 0 has 60 values, "
                                    "but 6 steps x shape [9] in features.json make 54")

    src = write_rlds(tmp_path / "b", {"train": ep()})
    rewrite(src, lambda f: f["action"]["tensor"]["shape"].update(dimensions=["5"]))
    assert bad(cli, store, src) == (f"{src}/{shard}: steps/action: record 0 has 42 values, not a whole number "
                                    "of steps of shape [5] (features.json)")

    src = write_rlds(tmp_path / "c", {"train": ep()})
    rewrite(src, lambda f: f.pop("action"))
    assert bad(cli, store, src) == f"{src}/features.json: steps/action: no steps/action feature"

    src = write_rlds(tmp_path / "d", {"train": ep()})
    rewrite(src, lambda f: f["observation"]["featuresDict"]["features"].update(depth=tensor([2], "float32")))
    assert bad(cli, store, src) == (f"{src}/{shard}: steps/observation/depth: record 0 has no such key "
                                    "(features.json declares it)")

    e = make_episode(6, 4, True, 1.0, "t")
    e["steps/action"][2, 5] = np.nan
    src = write_rlds(tmp_path / "e", {"train": [[e]]})
    assert bad(cli, store, src) == f"{src}/{shard}: steps/action: record 0 step 2 contains NaN or inf"

    src = write_rlds(tmp_path / "f", {"train": ep()})
    (src / "features.json").write_text("{not json")
    assert bad(cli, store, src, "--format", "rlds").startswith(f"{src}/features.json: cannot be parsed as JSON: ")

    src = write_rlds(tmp_path / "h", {"train": ep()})
    info = json.loads((src / "dataset_info.json").read_text())
    (src / "dataset_info.json").write_text(json.dumps(dict(info, fileFormat="array_record")))
    assert bad(cli, store, src) == (f"{src}/dataset_info.json: fileFormat: 'array_record' is not supported "
                                    "(only tfrecord)")

    src = write_rlds(tmp_path / "g", {"train": ep()})
    assert bad(cli, store, src, "--state-keys", "joint_position") == (
        f"{src}/features.json: --state-keys: 'joint_position' is not a per-step feature "
        "(numeric observations: joint_velocity, state)")


def test_raw_pixel_tensors(cli, tmp_path, store_with_one):
    """uint8 (H, W, 3) and (H, W, 1) per-step tensors are cameras, stored as lossless PNG; a
    channels-first one and a scalar without a fixed shape are refused in one line."""
    from aloe_cli.formats._images import decode_frames

    rng = np.random.default_rng(3)
    obs = {"state": tensor([10], "float32"), "rgb": tensor([6, 8, 3], "uint8"), "depth": tensor([6, 8, 1], "uint8")}
    e = make_episode(5, 4, True, 1.0, "t")
    del e["steps/observation/image"], e["steps/observation/wrist_image"], e["steps/observation/joint_velocity"]
    rgb, depth = rng.integers(0, 256, (5, 6, 8, 3)), rng.integers(0, 256, (5, 6, 8, 1))
    e["steps/observation/rgb"], e["steps/observation/depth"] = rgb, depth  # int64 lists, as TFDS writes uint8
    src = write_rlds(tmp_path / "ok", {"train": [[e]]}, observation=obs)
    assert cli("ingest", tmp_path / "s", src).exit_code == 0
    ep = next(Store.open(tmp_path / "s").iter_episodes())
    np.testing.assert_array_equal(decode_frames(ep.images["observation.images.rgb"]), rgb)
    np.testing.assert_array_equal(decode_frames(ep.images["observation.images.depth"]), np.repeat(depth, 3, -1))

    e["steps/observation/rgb"] = rgb.transpose(0, 3, 1, 2)
    src = write_rlds(tmp_path / "chw", {"train": [[e]]}, observation=dict(obs, rgb=tensor([3, 6, 8], "uint8")))
    assert bad(cli, store_with_one, src) == (f"{src}/features.json: steps/observation/rgb: a uint8 tensor of shape "
                                             "[3, 6, 8] is not an image (H, W, 1|3|4); pass --images drop to leave "
                                             "the camera streams out")
    assert cli("ingest", tmp_path / "dropped", src, "--images", "drop").exit_code == 0

    e["steps/observation/rgb"] = rgb
    src = write_rlds(tmp_path / "reward", {"train": [[e]]}, observation=obs)
    rewrite(src, lambda f: f.update(reward=tensor([-1], "float32")))
    assert bad(cli, store_with_one, src) == (f"{src}/{NAME}-train.tfrecord-00000-of-00001: steps/reward: "
                                             "features.json gives it no fixed shape ([None]); expected the same "
                                             "number of values at every step")


def test_several_versions_and_missing_protobuf(cli, tmp_path, dataset, monkeypatch, store_with_one):
    import shutil
    import sys

    src, _, _ = dataset
    shutil.copytree(src, src.parent / "1.1.0")
    assert bad(cli, store_with_one, src.parent) == (f"{src.parent}: holds several versions (1.0.0, 1.1.0); "
                                                    "pass one of them")
    example_classes.cache_clear()
    monkeypatch.setitem(sys.modules, "google.protobuf", None)
    try:
        assert bad(cli, store_with_one, src) == (
            "--format rlds: reading RLDS needs the protobuf package: pip install 'aloe-cli[rlds]'")
    finally:
        monkeypatch.undo()
        example_classes.cache_clear()


def test_an_empty_split_is_bad_input(cli, tmp_path):
    d = write_rlds(tmp_path / "tfds", {"train": [[make_episode(4, 0, True, 1.0, "open the drawer")]], "val": [[]]})
    store = tmp_path / "store"
    assert bad(cli, store, d, "--split", "val") == f"{d}: holds no episodes (with --split val)"
    assert not store.exists()
    assert cli("ingest", store, d, "--split", "train").exit_code == 0


# ---------------------------------------------------------------------------- the final observation-only step

def d4rl_features_json(obs_len: int, act_len: int) -> dict:
    """features.json as TFDS's D4RL builders write it (tensorflow_datasets/d4rl/dataset_builder.py
    get_features_dict, a v2 mujoco config): one observation tensor, step infos, episode metadata."""
    return fdict({
        "steps": steps_feature({
            "observation": tensor([obs_len], "float32"),
            "action": tensor([act_len], "float32"),
            "reward": tensor([], "float32"),
            "is_terminal": tensor([], "bool"),
            "is_first": tensor([], "bool"),
            "is_last": tensor([], "bool"),
            "discount": tensor([], "float32"),
            "infos": fdict({"qpos": tensor([3], "float32"), "qvel": tensor([3], "float32"),
                            "action_log_probs": tensor([], "float32")}),
        }),
        "algorithm": TEXT,
        "iteration": tensor([], "int32"),
    })


def d4rl_episode(rng, T: int, terminal: bool, last_reward: float, next_obs: bool) -> tuple[dict, dict]:
    """One episode as tensorflow_datasets/d4rl/dataset_utils.py _get_episode builds it from D4RL's flat
    arrays: T real steps; where the episode ends in a terminal (or the file has next_observations) one more
    step holding the last next observation (zeros without next_observations), a zero action, reward and
    discount, is_last and is_terminal = whether it ended in a terminal; else the T-th step is is_last.
    Returns (the record's flattened features, the T real steps)."""
    real = {"observation": rng.normal(size=(T, 11)).astype(np.float32),
            "action": rng.uniform(-1, 1, size=(T, 3)).astype(np.float32),
            "reward": np.r_[rng.uniform(-1, 0, T - 1), last_reward].astype(np.float32),
            "qpos": rng.normal(size=(T, 3)).astype(np.float32), "qvel": rng.normal(size=(T, 3)).astype(np.float32),
            "logp": rng.normal(size=T).astype(np.float32)}
    obs, act, rew = real["observation"], real["action"], real["reward"]
    qpos, qvel, logp = real["qpos"], real["qvel"], real["logp"]
    discount = np.ones(T, np.float32)
    is_first, is_last, is_terminal = np.r_[1, np.zeros(T - 1)], np.zeros(T), np.zeros(T)
    if terminal:
        discount[-1] = 0.0  # the transition into the terminal state
    if terminal or next_obs:
        final = rng.normal(size=(1, 11)) if next_obs else np.zeros((1, 11))
        obs = np.concatenate([obs, final.astype(np.float32)])
        act, rew = np.concatenate([act, np.zeros((1, 3), np.float32)]), np.r_[rew, 0.0]
        discount = np.r_[discount, 0.0]
        is_first, is_last, is_terminal = np.r_[is_first, 0], np.r_[is_last, 1], np.r_[is_terminal, int(terminal)]
        qpos, qvel = np.concatenate([qpos, np.zeros((1, 3))]), np.concatenate([qvel, np.zeros((1, 3))])
        logp = np.r_[logp, 0.0]
    else:
        is_last[-1] = 1
    record = {
        "steps/observation": obs, "steps/action": act, "steps/reward": rew.astype(np.float32),
        "steps/discount": discount.astype(np.float32), "steps/is_first": is_first.astype(np.int64),
        "steps/is_last": is_last.astype(np.int64), "steps/is_terminal": is_terminal.astype(np.int64),
        "steps/infos/qpos": qpos.astype(np.float32), "steps/infos/qvel": qvel.astype(np.float32),
        "steps/infos/action_log_probs": logp.astype(np.float32),
        "algorithm": [b"SAC"], "iteration": np.array([1000], np.int64),
    }
    return record, real


@pytest.mark.parametrize("next_obs", [False, True])
def test_d4rl_final_observation_step_is_not_a_frame(cli, tmp_path, next_obs):
    """TFDS's D4RL datasets end a terminal episode (and, with next_observations, every episode) with a step
    that holds only the final observation: a zero action, reward and discount. It is not a frame, and the
    success reward is on the step before it."""
    rng = np.random.default_rng(7)
    cases = [(6, True, 1.0), (5, False, 1.0), (4, True, 0.0)]  # (real steps, ends in a terminal, last reward)
    built = [d4rl_episode(rng, T, term, r, next_obs) for T, term, r in cases]
    src = write_rlds(tmp_path / "tfds", {"train": [[rec for rec, _ in built]]})
    (src / "features.json").write_text(json.dumps(d4rl_features_json(11, 3), indent=2))
    store = tmp_path / "store"
    r = cli("ingest", store, src)
    assert r.exit_code == 0, r
    assert r.stdout.strip() == f"ingested 3 episodes (15 frames) from {src} [rlds] into {store}"
    s = Store.open(store)
    got = list(s.iter_episodes())
    for g, (_, real) in zip(got, built):
        np.testing.assert_array_equal(g.state, real["observation"])  # the one observation tensor is the state
        np.testing.assert_array_equal(g.action, real["action"])
        np.testing.assert_array_equal(g.reward, real["reward"])
    # terminal with a positive reward on the last real step: success; a time-out, or no reward: unknown.
    assert [g.success for g in got] == [True, None, None]
    assert [g.terminated for g in got] == [True, False, False]
    assert s.manifest["ingests"][0]["options"]["state_keys"] == ["steps/observation"]


def test_envlogger_final_step_with_cameras_and_oxe_last_steps_kept(cli, tmp_path):
    """An envlogger-style episode (dict observation, cameras) ends with the final observation and a zero
    action, reward and discount: dropped, cameras too. Open X-Embodiment last steps are real (discount 1),
    even with a zero action and no reward: kept."""
    T = 6
    logged = make_episode(T, 11, True, 0.0, "close the drawer")
    logged["steps/action"][-1] = 0.0
    logged["steps/reward"][-2] = 1.0  # the reward for the last action, on the step it was taken
    logged["steps/discount"][-1] = 0.0
    oxe = make_episode(5, 12, True, 0.0, "close the drawer")
    oxe["steps/action"][-1] = 0.0  # the robot held still at the end; discount 1: a real step
    src = write_rlds(tmp_path / "tfds", {"train": [[logged, oxe]]})
    store = tmp_path / "store"
    assert cli("ingest", store, src).exit_code == 0
    got = list(Store.open(store).iter_episodes())
    assert [len(g) for g in got] == [T - 1, 5]
    np.testing.assert_array_equal(got[0].action, logged["steps/action"][:-1])
    np.testing.assert_array_equal(got[0].state, logged["steps/observation/state"][:-1])
    np.testing.assert_array_equal(got[0].reward, logged["steps/reward"][:-1])
    np.testing.assert_array_equal(got[0].extras["observation.joint_velocity"],
                                  logged["steps/observation/joint_velocity"][:-1])
    assert got[0].images["observation.images.image"] == logged["steps/observation/image"][:-1]
    assert got[0].images["observation.images.wrist_image"] == logged["steps/observation/wrist_image"][:-1]
    np.testing.assert_array_equal(got[1].action, oxe["steps/action"])
    assert [g.success for g in got] == [True, None]
