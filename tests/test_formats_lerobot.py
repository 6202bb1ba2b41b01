"""LeRobotDataset v2.1 and v3.0: fixtures written here in LeRobot's exact layout, ingested by the real CLI.

Layout facts (huggingface/lerobot datasets/utils.py, lerobot_dataset.py, dataset_writer.py,
scripts/convert_dataset_v21_to_v30.py):
- features with shape (1,) are scalar columns; other vectors are fixed-size lists (HF datasets
  `Sequence(length=n)`), or variable-size lists when pandas rewrote the file (the v2.1 -> v3.0
  converter concatenates with pandas); `image` features are structs {bytes, path};
- v3.0 rows are global (`dataset_from_index`/`dataset_to_index`), `meta/tasks.parquet` has the
  task text as its pandas index, and a video frame lies at `from_timestamp + timestamp`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aloe_cli import schema as S
from aloe_cli.store import Store

FPS = 10
MOTORS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
TASKS = ["pick the cube", "open the drawer"]
VIDEO_HW = (32, 48)


def snapshot(store: Path) -> dict:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != S.LOCK_FILE}


def png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def video_frame(g: int) -> np.ndarray:
    """A smooth frame that differs clearly from its neighbours (global frame number g)."""
    h, w = VIDEO_HW
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 8 + 0.7 * g)
    gch = 128 + 100 * np.cos(y / 6 + 0.5 * g)
    b = np.full_like(x, 128 + 100 * np.sin(0.9 * g))
    return np.stack([r, gch, b], axis=-1).round().astype(np.uint8)


def write_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "8", "preset": "ultrafast", "g": "4"}  # short GOP: seeking is exercised
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def make_episodes(n=3, lengths=(6, 9, 7), seed=0, success=(True, False, True)):
    rng = np.random.default_rng(seed)
    eps, g = [], 0
    for i in range(n):
        T = lengths[i]
        interv = np.zeros(T, dtype=bool)
        if i == 1:
            interv[3:6] = True
        eps.append({
            "index": i, "T": T, "task_index": i % 2,
            "state": rng.normal(size=(T, 6)).astype(np.float32),
            "action": rng.normal(size=(T, 6)).astype(np.float32),
            "env": rng.normal(size=(T, 4)).astype(np.float32),
            "reward": np.r_[np.zeros(T - 1), float(success[i])].astype(np.float32),
            "success": np.r_[np.zeros(T - 1, bool), success[i]],
            "interv": interv,
            "images": [png(rng.integers(0, 255, size=(8, 10, 3), dtype=np.uint8)) for _ in range(T)],
            "video": np.stack([video_frame(g + t) for t in range(T)]),
        })
        g += T
    return eps


def features(image: bool, video: bool, interv_key: str = "intervention", v3: bool = False) -> dict:
    f = {
        "action": {"dtype": "float32", "shape": [6], "names": MOTORS},
        "observation.state": {"dtype": "float32", "shape": [6], "names": MOTORS},
        "observation.environment_state": {"dtype": "float32", "shape": [4], "names": None},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "next.success": {"dtype": "bool", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        interv_key: {"dtype": "bool", "shape": [1], "names": None},
    }
    if image:
        f["observation.images.wrist"] = {"dtype": "image", "shape": [8, 10, 3],
                                         "names": ["height", "width", "channels"]}
    if video:
        f["observation.images.top"] = {
            "dtype": "video", "shape": [*VIDEO_HW, 3], "names": ["height", "width", "channels"],
            "info": {"video.fps": float(FPS), "video.height": VIDEO_HW[0], "video.width": VIDEO_HW[1],
                     "video.channels": 3, "video.codec": "h264", "video.pix_fmt": "yuv420p",
                     "video.is_depth_map": False, "has_audio": False}}
    for k in ("timestamp",):
        f[k] = {"dtype": "float32", "shape": [1], "names": None}
    for k in ("frame_index", "episode_index", "index", "task_index"):
        f[k] = {"dtype": "int64", "shape": [1], "names": None}
    if v3:
        for k, v in f.items():
            if v["dtype"] != "video":
                v["fps"] = FPS
    return f


def frame_columns(ep: dict, image: bool, interv_key: str, g0: int) -> dict:
    T = ep["T"]
    cols = {
        "action": ep["action"], "observation.state": ep["state"], "observation.environment_state": ep["env"],
        "next.reward": ep["reward"], "next.success": ep["success"],
        "next.done": np.r_[np.zeros(T - 1, bool), True], interv_key: ep["interv"],
        "timestamp": (np.arange(T) / FPS).astype(np.float32),
        "frame_index": np.arange(T), "episode_index": np.full(T, ep["index"]),
        "index": g0 + np.arange(T), "task_index": np.full(T, ep["task_index"]),
    }
    if image:
        cols["observation.images.wrist"] = [{"bytes": b, "path": f"frame_{t:06d}.png"}
                                            for t, b in enumerate(ep["images"])]
    return cols


def arrow_table(cols: dict) -> pa.Table:
    """Columns as HF `datasets` writes them: fixed-size lists, scalars, image structs."""
    arrays = {}
    for k, v in cols.items():
        if isinstance(v, list):
            arrays[k] = pa.array(v, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        elif v.ndim == 2:
            arrays[k] = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1])
        else:
            arrays[k] = pa.array(v)
    return pa.table(arrays)


def pandas_table(cols: dict) -> pd.DataFrame:
    """The same columns as a pandas frame: vectors become per-row numpy arrays (variable lists)."""
    return pd.DataFrame({k: (list(v) if (isinstance(v, list) or v.ndim == 2) else v) for k, v in cols.items()})


def write_v21(root: Path, eps: list[dict], image=True, video=False, pandas=False,
              interv_key="intervention") -> Path:
    (root / "meta").mkdir(parents=True)
    info = {
        "codebase_version": "v2.1", "robot_type": "so100", "total_episodes": len(eps),
        "total_frames": sum(e["T"] for e in eps), "total_tasks": len(TASKS), "total_videos": len(eps) * video,
        "total_chunks": 1, "chunks_size": 1000, "fps": FPS, "splits": {"train": f"0:{len(eps)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4" if video else None,
        "features": features(image, video, interv_key),
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    with open(root / "meta/episodes.jsonl", "w") as f:
        for e in eps:
            row = {"episode_index": e["index"], "tasks": [TASKS[e["task_index"]]], "length": e["T"]}
            f.write(json.dumps(row) + "\n")
    with open(root / "meta/tasks.jsonl", "w") as f:
        for i, t in enumerate(TASKS):
            f.write(json.dumps({"task_index": i, "task": t}) + "\n")
    g = 0
    for e in eps:
        path = root / f"data/chunk-000/episode_{e['index']:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        cols = frame_columns(e, image, interv_key, g)
        if pandas:
            pandas_table(cols).to_parquet(path, index=False)
        else:
            pq.write_table(arrow_table(cols), path)
        if video:
            write_mp4(root / f"videos/chunk-000/observation.images.top/episode_{e['index']:06d}.mp4", e["video"])
        g += e["T"]
    return root


def write_v30(root: Path, eps: list[dict], files=((0, 1), (2,)), image=True, video=True, pandas=True,
              interv_key="complementary_info.is_intervention", chunks_size=1000) -> Path:
    """Episodes packed into data files (`files` lists the episodes of each), videos concatenated per file;
    `chunks_size` files to a chunk-XXX folder, the next file opening the next chunk at file-000."""
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    info = {
        "codebase_version": "v3.0", "robot_type": "so100", "total_episodes": len(eps),
        "total_frames": sum(e["T"] for e in eps), "total_tasks": len(TASKS), "chunks_size": chunks_size,
        "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": FPS,
        "splits": {"train": f"0:{len(eps)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4" if video else None,
        "features": features(image, video, interv_key, v3=True),
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    pd.DataFrame({"task_index": list(range(len(TASKS)))},
                 index=pd.Index(TASKS, name="task")).to_parquet(root / "meta/tasks.parquet")
    meta_rows, g = [], 0
    for n, members in enumerate(files):
        ci, fi = divmod(n, chunks_size)
        cols_list, frames, t0 = [], [], 0.0
        for i in members:
            e = eps[i]
            cols_list.append(frame_columns(e, image, interv_key, g))
            frames.append(e["video"])
            row = {"episode_index": i, "tasks": [TASKS[e["task_index"]]], "length": e["T"],
                   "data/chunk_index": ci, "data/file_index": fi,
                   "dataset_from_index": g, "dataset_to_index": g + e["T"]}
            if video:
                row.update({"videos/observation.images.top/chunk_index": ci,
                            "videos/observation.images.top/file_index": fi,
                            "videos/observation.images.top/from_timestamp": t0,
                            "videos/observation.images.top/to_timestamp": t0 + e["T"] / FPS})
            row.update({"stats/action/mean": e["action"].mean(0).tolist(),
                        "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            meta_rows.append(row)
            g += e["T"]
            t0 += e["T"] / FPS
        merged = {k: (sum((c[k] for c in cols_list), []) if isinstance(cols_list[0][k], list)
                      else np.concatenate([c[k] for c in cols_list])) for k in cols_list[0]}
        path = root / f"data/chunk-{ci:03d}/file-{fi:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        if pandas:
            pandas_table(merged).to_parquet(path, index=False)
        else:
            pq.write_table(arrow_table(merged), path, row_group_size=5)
        if video:
            write_mp4(root / f"videos/observation.images.top/chunk-{ci:03d}/file-{fi:03d}.mp4", np.concatenate(frames))
    pd.DataFrame(meta_rows).to_parquet(root / "meta/episodes/chunk-000/file-000.parquet", index=False)
    return root


def check_round_trip(store: Path, eps: list[dict], images=True, success_known=True) -> list:
    got = list(Store.open(store).iter_episodes())
    assert [e.source_key for e in got] == [f"episode_{e['index']:06d}" for e in eps]
    for g, e in zip(got, eps):
        np.testing.assert_array_equal(g.state, e["state"])
        np.testing.assert_array_equal(g.action, e["action"])
        np.testing.assert_array_equal(g.reward, e["reward"])
        np.testing.assert_array_equal(g.is_intervention, e["interv"])
        np.testing.assert_array_equal(g.extras["observation.environment_state"], e["env"])
        np.testing.assert_array_equal(g.timestamp, (np.arange(e["T"]) / FPS).astype(np.float32))
        assert g.task == TASKS[e["task_index"]]
        assert g.success is (bool(e["success"][-1]) if success_known else None)
        if images:
            assert g.images["observation.images.wrist"] == e["images"]  # byte for byte
    return got


# ---------------------------------------------------------------------------- v2.1

def test_v21_round_trips_through_cli_with_detection(cli, tmp_path):
    eps = make_episodes()
    src = write_v21(tmp_path / "so100_pick", eps)
    store = tmp_path / "store"
    r = cli("ingest", store, src)
    assert r.exit_code == 0, r
    assert r.stdout.strip() == f"ingested 3 episodes (22 frames) from {src} [lerobot] into {store}"
    got = check_round_trip(store, eps)
    assert got[1].is_intervention.sum() == 3 and got[1].success is False and got[1].terminated is True
    s = Store.open(store)
    assert s.fps == FPS
    assert s.features["observation.state"]["names"] == MOTORS
    assert s.image_columns == ["observation.images.wrist"]
    assert s.episodes["intervention_frames"].tolist() == [0, 3, 0]
    ingest = s.manifest["ingests"][0]
    assert ingest["format"] == "lerobot" and ingest["options"]["codebase_version"] == "v2.1"


def test_v21_pandas_variable_lists_and_no_success_column(cli, tmp_path):
    eps = make_episodes(seed=3)
    src = write_v21(tmp_path / "ds", eps, image=False, pandas=True)
    assert pq.read_schema(src / "data/chunk-000/episode_000000.parquet").field("action").type == pa.list_(pa.float32())
    info = json.loads((src / "meta/info.json").read_text())
    del info["features"]["next.success"]
    (src / "meta/info.json").write_text(json.dumps(info))
    r = cli("ingest", tmp_path / "store", src, "--format", "lerobot")
    assert r.exit_code == 0, r
    got = check_round_trip(tmp_path / "store", eps, images=False, success_known=False)
    assert all(g.terminated is False for g in got)  # unknown outcome counts as truncated


def test_image_struct_with_path_only(cli, tmp_path):
    """A dataset not yet pushed keeps image files on disk and only their path in the struct."""
    eps = make_episodes(seed=10)
    src = write_v21(tmp_path / "ds", eps)
    f = src / "data/chunk-000/episode_000001.parquet"
    t = pq.read_table(f)
    rows = []
    for i, b in enumerate(eps[1]["images"]):
        rel = f"images/observation.images.wrist/episode_000001/frame_{i:06d}.png"
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b)
        rows.append({"bytes": None, "path": rel})
    col = pa.array(rows, t.schema.field("observation.images.wrist").type)
    pq.write_table(t.set_column(t.schema.get_field_index("observation.images.wrist"), "observation.images.wrist",
                                col), f)
    assert cli("ingest", tmp_path / "store", src).exit_code == 0
    check_round_trip(tmp_path / "store", eps)


def test_state_keys_concatenate_and_images_drop(cli, tmp_path):
    eps = make_episodes(seed=4)
    src = write_v21(tmp_path / "ds", eps)
    r = cli("ingest", tmp_path / "store", src, "--state-keys", "observation.state,observation.environment_state",
            "--images", "drop")
    assert r.exit_code == 0, r
    s = Store.open(tmp_path / "store")
    assert s.state_dim == 10 and s.image_columns == [] and "observation.environment_state" not in s.features
    got = list(s.iter_episodes())
    np.testing.assert_array_equal(got[2].state, np.concatenate([eps[2]["state"], eps[2]["env"]], axis=1))


def test_image_size_reencodes(cli, tmp_path):
    from aloe_cli.formats._images import decode_frames

    eps = make_episodes(seed=5)
    src = write_v21(tmp_path / "ds", eps)
    assert cli("ingest", tmp_path / "store", src, "--image-size", "5x4").exit_code == 0
    got = list(Store.open(tmp_path / "store").iter_episodes())
    assert decode_frames(got[0].images["observation.images.wrist"]).shape == (6, 4, 5, 3)


def test_v21_video_decoded_at_timestamps(cli, tmp_path):
    pytest.importorskip("av")
    from aloe_cli.formats._images import decode_frames

    eps = make_episodes(seed=6)
    src = write_v21(tmp_path / "ds", eps, image=False, video=True)
    r = cli("ingest", tmp_path / "store", src)
    assert r.exit_code == 0, r
    got = list(Store.open(tmp_path / "store").iter_episodes())
    for g, e in zip(got, eps):
        check_video(decode_frames(g.images["observation.images.top"]), e["video"])


def check_video(decoded: np.ndarray, source: np.ndarray) -> None:
    """mp4 is lossy: mean |error| under 6 of 255 per frame, and each frame nearest its own source."""
    assert decoded.shape == source.shape
    err = np.abs(decoded.astype(int) - source.astype(int)).mean(axis=(1, 2, 3))
    assert err.max() < 6.0, err  # measured ~3.5 (yuv420p + H.264 crf 8); neighbouring frames differ by 30-53
    for t in range(len(source)):
        dists = [np.abs(decoded[t].astype(int) - s.astype(int)).mean() for s in source]
        assert int(np.argmin(dists)) == t


# ---------------------------------------------------------------------------- v3.0

def test_v30_multi_episode_files_videos_and_tasks(cli, tmp_path):
    pytest.importorskip("av")
    from aloe_cli.formats._images import decode_frames

    eps = make_episodes(n=3, lengths=(6, 9, 7), seed=7)
    src = write_v30(tmp_path / "ds", eps, files=((0, 1), (2,)))
    assert pq.read_schema(src / "data/chunk-000/file-000.parquet").field("action").type == pa.list_(pa.float32())
    store = tmp_path / "store"
    r = cli("ingest", store, src, "--json")
    assert r.exit_code == 0, r
    d = json.loads(r.stdout)
    assert d["format"] == "lerobot" and d["episodes_added"] == 3 and d["frames_added"] == 22
    got = check_round_trip(store, eps)
    for g, e in zip(got, eps):
        check_video(decode_frames(g.images["observation.images.top"]), e["video"])
    assert got[1].is_intervention.tolist() == eps[1]["interv"].tolist()
    assert Store.open(store).manifest["ingests"][0]["options"]["video_keys"] == ["observation.images.top"]


def test_v30_files_rolled_over_into_new_chunks(cli, tmp_path):
    """Each episode in a data file and mp4 of its own, each file in a chunk of its own (chunks_size 1).

    Mirrors lerobot 0.4.4's writer (LeRobotDataset.create, add_frame, save_episode, finalize) once a file passes
    data_files_size_in_mb / video_files_size_in_mb: it goes on at file-000 of the next chunk-XXX, and each video
    restarts at from_timestamp 0.
    """
    pytest.importorskip("av")
    from aloe_cli.formats._images import decode_frames

    eps = make_episodes(n=3, lengths=(6, 9, 7), seed=10)
    src = write_v30(tmp_path / "ds", eps, files=((0,), (1,), (2,)), pandas=False, chunks_size=1)
    assert sorted(str(p.relative_to(src)) for p in src.rglob("file-000.*") if "meta" not in p.parts) == [
        f"{kind}/chunk-{c:03d}/file-000.{ext}" for kind, ext in
        (("data", "parquet"), ("videos/observation.images.top", "mp4")) for c in range(3)]
    r = cli("ingest", tmp_path / "store", src)
    assert r.exit_code == 0, r
    got = check_round_trip(tmp_path / "store", eps)
    for g, e in zip(got, eps):
        check_video(decode_frames(g.images["observation.images.top"]), e["video"])


def test_v30_fixed_lists_streamed_across_batches(cli, tmp_path, monkeypatch):
    """Episodes cut out of record batches smaller than an episode (memory: one episode + one batch)."""
    from aloe_cli.formats import lerobot

    monkeypatch.setattr(lerobot, "_BATCH_ROWS", 4)
    eps = make_episodes(n=5, lengths=(6, 9, 7, 5, 8), seed=8, success=(True, False, True, True, False))
    # Rows in a file need not follow episode order: episode 1 comes after 2 in file-000 (read again from the top).
    src = write_v30(tmp_path / "ds", eps, files=((0, 2, 1), (4, 3)), video=False, pandas=False,
                    interv_key="intervention")
    assert pq.ParquetFile(src / "data/chunk-000/file-000.parquet").num_row_groups == 5
    r = cli("ingest", tmp_path / "store", src)
    assert r.exit_code == 0, r
    check_round_trip(tmp_path / "store", eps)


def test_v30_reader_yields_lazily(tmp_path):
    """The reader is a generator: the first episode comes before later data files are opened."""
    from aloe_cli.formats import ReadOptions, get_reader

    eps = make_episodes(seed=9)
    src = write_v30(tmp_path / "ds", eps, files=((0,), (1, 2)), video=False)
    (src / "data/chunk-000/file-001.parquet").write_bytes(b"not parquet")
    it = get_reader("lerobot").read(src, ReadOptions()).episodes
    first = next(it)
    np.testing.assert_array_equal(first.action, eps[0]["action"])
    with pytest.raises(Exception, match="is not a Parquet file"):
        next(it)


# ---------------------------------------------------------------------------- bad input

def bad(cli, store: Path, *args) -> str:
    before = snapshot(store) if store.exists() else None
    r = cli("ingest", store, *args)
    assert r.exit_code == 2, r
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
    assert (snapshot(store) if store.exists() else None) == before
    return r.stderr.strip().removeprefix("Error: ")


@pytest.fixture
def store_with_one(cli, tmp_path):
    store = tmp_path / "store"
    assert cli("ingest", store, write_v21(tmp_path / "first", make_episodes(seed=1), image=False)).exit_code == 0
    return store


def edit_info(src: Path, fn) -> None:
    info = json.loads((src / "meta/info.json").read_text())
    fn(info)
    (src / "meta/info.json").write_text(json.dumps(info))


def test_bad_info_json(cli, tmp_path, store_with_one):
    store = store_with_one
    src = write_v21(tmp_path / "a", make_episodes(seed=2), image=False)
    edit_info(src, lambda i: i.pop("fps"))
    assert bad(cli, store, src, "--format", "lerobot") == f"{src}/meta/info.json: fps: missing"

    src = write_v21(tmp_path / "b", make_episodes(seed=2), image=False)
    edit_info(src, lambda i: i.update(codebase_version="v1.6"))
    assert bad(cli, store, src) == (f"{src}/meta/info.json: codebase_version: 'v1.6' is not supported "
                                    "(v2.0, v2.1 or v3.0)")

    src = write_v21(tmp_path / "c", make_episodes(seed=2), image=False)
    edit_info(src, lambda i: i.update(data_path="data/{episode_group}.parquet"))
    assert bad(cli, store, src) == (f"{src}/meta/info.json: data_path: 'data/{{episode_group}}.parquet' has a "
                                    "placeholder this reader does not fill: 'episode_group'")

    src = write_v21(tmp_path / "d", make_episodes(seed=2), image=False)
    assert bad(cli, store, src, "--state-keys", "observation.joints") == (
        f"{src}/meta/info.json: observation.joints: no such feature; pass --state-keys with some of: "
        "observation.environment_state, observation.state")

    src = write_v21(tmp_path / "e", make_episodes(seed=2), image=False)
    (src / "meta/episodes.jsonl").unlink()
    assert bad(cli, store, src) == f"{src}/meta/episodes.jsonl: missing file"


def test_bad_columns_and_values(cli, tmp_path, store_with_one):
    store = store_with_one
    src = write_v21(tmp_path / "a", make_episodes(seed=2), image=False)
    f = src / "data/chunk-000/episode_000001.parquet"
    pq.write_table(pq.read_table(f).drop_columns(["action"]), f)
    assert bad(cli, store, src) == f"{f}: action: missing column (meta/info.json declares it)"

    src = write_v21(tmp_path / "b", make_episodes(seed=2), image=False, pandas=True)
    f = src / "data/chunk-000/episode_000000.parquet"
    df = pd.read_parquet(f)
    df.at[2, "observation.state"] = df.at[2, "observation.state"][:5]
    df.to_parquet(f, index=False)
    assert bad(cli, store, src) == (f"{f}: observation.state: episode 0 frame 2 has 5 numbers, "
                                    "meta/info.json shape says 6")

    src = write_v21(tmp_path / "c", make_episodes(seed=2), image=False)
    f = src / "data/chunk-000/episode_000002.parquet"
    t = pq.read_table(f)
    a = t.column("action").combine_chunks().flatten().to_numpy().copy()
    a[3 * 6 + 4] = np.nan
    t = t.set_column(t.schema.get_field_index("action"), "action",
                     pa.FixedSizeListArray.from_arrays(pa.array(a), 6))
    pq.write_table(t, f)
    assert bad(cli, store, src) == f"{f}: action: episode 2 frame 3 contains NaN or inf"

    src = write_v21(tmp_path / "d", make_episodes(seed=2), image=False)
    with open(src / "meta/episodes.jsonl", "a") as fh:
        fh.write(json.dumps({"episode_index": 3, "tasks": [], "length": 4}) + "\n")
    assert bad(cli, store, src) == f"{src}/data/chunk-000/episode_000003.parquet: missing file"

    src = write_v21(tmp_path / "e", make_episodes(seed=2), image=False)
    lines = (src / "meta/episodes.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"episode_index": 1, "tasks": [], "length": 99})
    (src / "meta/episodes.jsonl").write_text("\n".join(lines) + "\n")
    assert bad(cli, store, src) == (f"{src}/meta/episodes.jsonl: length: episode 1 says 99 frames, "
                                    "but episode_000001.parquet has 9")


def test_bad_parquet_files(cli, tmp_path, store_with_one):
    store = store_with_one
    src = write_v21(tmp_path / "a", make_episodes(seed=2), image=False)
    f = src / "data/chunk-000/episode_000001.parquet"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # truncated
    assert bad(cli, store, src) == f"{f}: is not a Parquet file (no PAR1 magic bytes at both ends)"

    src = write_v21(tmp_path / "b", make_episodes(seed=2), image=False)
    f = src / "data/chunk-000/episode_000000.parquet"
    f.write_bytes(b"PAR1" + b"\x07" * 64 + b"PAR1")  # magic bytes, garbage footer
    assert bad(cli, store, src).startswith(f"{f}: cannot be read as Parquet: ")


def test_bad_v30_metadata(cli, tmp_path, store_with_one):
    store = store_with_one
    src = write_v30(tmp_path / "a", make_episodes(seed=2), video=False)
    m = src / "meta/episodes/chunk-000/file-000.parquet"
    df = pd.read_parquet(m)
    df.loc[2, "dataset_to_index"] = 40
    df.to_parquet(m, index=False)
    assert bad(cli, store, src) == (f"{m}: dataset_to_index: episode 2 needs rows 0..24 of "
                                    f"{src}/data/chunk-000/file-001.parquet, which has 7")

    src = write_v30(tmp_path / "b", make_episodes(seed=2), video=False)
    m = src / "meta/episodes/chunk-000/file-000.parquet"
    pd.read_parquet(m).drop(columns=["dataset_from_index"]).to_parquet(m, index=False)
    assert bad(cli, store, src) == f"{m}: dataset_from_index: missing column"

    src = write_v30(tmp_path / "c", make_episodes(seed=2), video=False)
    m = src / "meta/episodes/chunk-000/file-000.parquet"
    df = pd.read_parquet(m)
    df.loc[0, "dataset_to_index"] += 1  # episode 0 would swallow a frame of episode 1
    df.loc[1, "dataset_from_index"] += 1
    df.to_parquet(m, index=False)
    assert bad(cli, store, src) == (f"{src}/data/chunk-000/file-000.parquet: episode_index: row 6 belongs to "
                                    "episode 1, but the metadata places episode 0 there")


def test_bad_video(cli, tmp_path, store_with_one):
    pytest.importorskip("av")
    store = store_with_one
    eps = make_episodes(seed=2)
    src = write_v30(tmp_path / "a", eps, image=False)
    mp4 = src / "videos/observation.images.top/chunk-000/file-001.mp4"
    mp4.unlink()
    assert bad(cli, store, src) == f"{mp4}: observation.images.top: missing video file (episode 2)"
    # --images drop needs no video at all.
    assert cli("ingest", store, src, "--images", "drop").exit_code == 0

    src = write_v30(tmp_path / "b", eps, image=False)
    m = src / "meta/episodes/chunk-000/file-000.parquet"
    df = pd.read_parquet(m)
    df.loc[1, "videos/observation.images.top/from_timestamp"] = 5.0  # past the end of file-000.mp4
    df.to_parquet(m, index=False)
    mp4 = src / "videos/observation.images.top/chunk-000/file-000.mp4"
    assert bad(cli, store, src) == (f"{mp4}: observation.images.top: episode 1: no video frame between "
                                    "5.000 s and 5.800 s")


def test_detect_is_strict(tmp_path):
    from aloe_cli.formats import get_reader

    r = get_reader("lerobot")
    src = write_v21(tmp_path / "ds", make_episodes(seed=2), image=False)
    assert r.detect(src)
    assert not r.detect(src / "meta") and not r.detect(tmp_path)
    (tmp_path / "x/meta").mkdir(parents=True)
    (tmp_path / "x/meta/info.json").write_text('{"fps": 30}')
    assert not r.detect(tmp_path / "x")


def test_video_without_pyav_is_a_clear_error(cli, tmp_path, monkeypatch, store_with_one):
    import sys

    src = write_v30(tmp_path / "a", make_episodes(seed=2), image=False, video=False)
    edit_info(src, lambda i: i.update(video_path="videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4")
              or i["features"].update({"observation.images.top": {"dtype": "video", "shape": [32, 48, 3],
                                                                   "names": None}}))
    monkeypatch.setitem(sys.modules, "av", None)
    assert bad(cli, store_with_one, src) == (
        f"{src}/meta/info.json: observation.images.top: decoding video features needs PyAV: "
        "pip install 'aloe-cli[video]' (or pass --images drop)")
    r = cli("ingest", store_with_one, src, "--images", "drop")
    assert r.exit_code == 0, r


def test_bad_indices_and_an_empty_dataset(cli, tmp_path, store_with_one):
    """Cases the fuzzer found: metadata numbers that are not whole numbers, and a dataset with no episodes."""
    store = store_with_one
    src = write_v21(tmp_path / "a", make_episodes(seed=2), image=False)
    (src / "meta/tasks.jsonl").write_text(json.dumps({"task_index": "x", "task": "pick"}) + "\n")
    assert bad(cli, store, src) == f"{src}/meta/tasks.jsonl: task_index: 'x' is not a non-negative integer"

    src = write_v21(tmp_path / "b", make_episodes(seed=2), image=False)
    f = src / "data/chunk-000/episode_000001.parquet"
    t = pq.read_table(f)
    i = t.schema.get_field_index("task_index")
    pq.write_table(t.set_column(i, "task_index", pa.nulls(t.num_rows, t.schema.field(i).type)), f)
    assert bad(cli, store, src) == f"{f}: task_index: episode 1 frame 0 is null"

    src = write_v30(tmp_path / "c", make_episodes(seed=2), video=False)
    m = src / "meta/episodes/chunk-000/file-000.parquet"
    df = pd.read_parquet(m)
    df["dataset_from_index"] = df["dataset_from_index"].astype(float)
    df.loc[1, "dataset_from_index"] = np.nan
    df.to_parquet(m, index=False)
    assert bad(cli, store, src) == f"{m}: dataset_from_index: episode 1: null is not a non-negative integer"

    src = write_v21(tmp_path / "d", make_episodes(seed=2), image=False)
    (src / "meta/episodes.jsonl").write_text("")
    assert bad(cli, store, src) == f"{src}: holds no episodes"
    assert bad(cli, tmp_path / "new-store", src) == f"{src}: holds no episodes"
    assert not (tmp_path / "new-store").exists()


# ---------------------------------------------------------------------------- what the store cannot hold

def set_task_index(path: Path, rows: slice, value: int) -> None:
    df = pd.read_parquet(path)
    df.loc[df.index[rows], "task_index"] = value
    df.to_parquet(path, index=False)


def test_a_task_that_changes_within_an_episode_is_one_warning(cli, tmp_path):
    """The store has one task per episode: each keeps its first frame's, and one line says how many did not."""
    eps = make_episodes(n=3, lengths=(6, 9, 7), seed=4)  # tasks: pick, drawer, pick
    src = write_v30(tmp_path / "ds", eps, video=False)
    set_task_index(src / "data/chunk-000/file-000.parquet", slice(6 + 4, 6 + 9), 0)  # episode 1: drawer -> pick
    set_task_index(src / "data/chunk-000/file-001.parquet", slice(2, 7), 1)  # episode 2: pick -> drawer
    store = tmp_path / "store"
    r = cli("ingest", store, src)
    assert r.exit_code == 0, r
    line = ("2 episodes change task within the episode (episode 1: 'open the drawer' -> 'pick the cube'); "
            "each keeps its first frame's task")
    assert r.stderr == f"warning: {line}\n"
    check_round_trip(store, eps)  # first frame's task, the rest as before
    r = cli("ingest", tmp_path / "store2", src, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["warnings"] == [line], r

    src = write_v21(tmp_path / "one", eps, image=False)
    set_task_index(src / "data/chunk-000/episode_000000.parquet", slice(5, 6), 1)
    r = cli("ingest", tmp_path / "store3", src)
    assert r.exit_code == 0, r
    assert r.stderr == ("warning: 1 episode changes task within the episode (episode 0: 'pick the cube' -> "
                        "'open the drawer'); each keeps its first frame's task\n")
    assert cli("ingest", tmp_path / "store4", write_v21(tmp_path / "same", eps)).stderr == ""


def test_a_later_frames_task_index_must_be_in_the_tasks_file(cli, tmp_path, store_with_one):
    src = write_v21(tmp_path / "ds", make_episodes(seed=2), image=False)
    f = src / "data/chunk-000/episode_000001.parquet"
    set_task_index(f, slice(3, 4), 7)
    assert bad(cli, store_with_one, src) == f"{f}: task_index: episode 1 frame 3: task_index 7 is not in the tasks file"


def add_feature(src: Path, name: str, feature: dict, values) -> None:
    """A feature in meta/info.json and a column of `values(n)` in every data file."""
    edit_info(src, lambda info: info["features"].__setitem__(name, feature))
    for f in sorted((src / "data").glob("chunk-*/*.parquet")):
        df = pd.read_parquet(f)
        df[name] = values(len(df))
        df.to_parquet(f, index=False)


def test_features_not_read_are_one_warning_and_recorded(cli, tmp_path):
    eps = make_episodes(seed=5)
    src = write_v30(tmp_path / "ds", eps, video=False)
    add_feature(src, "complementary_info.discrete_penalty", {"dtype": "float32", "shape": [1], "names": None},
                lambda n: np.full(n, -0.5, np.float32))
    add_feature(src, "observation.language", {"dtype": "string", "shape": [1], "names": None},
                lambda n: ["pick it"] * n)
    store = tmp_path / "store"
    r = cli("ingest", store, src)
    assert r.exit_code == 0, r
    not_read = ["complementary_info.discrete_penalty", "observation.language"]
    assert r.stderr == f"warning: 2 features not read (the store has no column for them): {', '.join(not_read)}\n"
    assert Store.open(store).manifest["ingests"][0]["options"]["features_not_read"] == not_read
    check_round_trip(store, eps)
    # Left out on purpose is not reported: cameras under --images drop, observation.state under --state-keys.
    src = write_v21(tmp_path / "v21", eps)
    r = cli("ingest", tmp_path / "s2", src, "--images", "drop", "--state-keys",
            "observation.environment_state", "--json")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout)["warnings"] == []
    assert Store.open(tmp_path / "s2").manifest["ingests"][0]["options"]["features_not_read"] == []


def test_policy_id_from_the_episodes_metadata(cli, tmp_path, store_with_one):
    """aloe's export writes aloe/policy_id in meta/episodes; none (or the store's "unknown") leaves --policy-id."""
    eps = make_episodes(seed=6)
    src = write_v30(tmp_path / "ds", eps, video=False)
    m = src / "meta/episodes/chunk-000/file-000.parquet"
    df = pd.read_parquet(m)
    df["aloe/policy_id"] = ["v3", None, S.UNKNOWN_POLICY_ID]
    df.to_parquet(m, index=False)
    r = cli("ingest", tmp_path / "s", src, "--policy-id", "human")
    assert r.exit_code == 0, r
    assert Store.open(tmp_path / "s").episodes[S.POLICY_ID].tolist() == ["v3", "human", "human"]
    df["aloe/policy_id"] = [1, 2, 3]
    df.to_parquet(m, index=False)
    assert bad(cli, store_with_one, src) == f"{m}: aloe/policy_id: episode 0: 1 is not a string"


def drop_feature(src: Path, name: str) -> None:
    """A dataset without the feature: not in meta/info.json, not a column of any data file."""
    edit_info(src, lambda info: info["features"].pop(name))
    for f in sorted((src / "data").glob("chunk-*/*.parquet")):
        pq.write_table(pq.read_table(f).drop_columns([name]), f)


def set_episodes_column(src: Path, name: str, values: list) -> Path:
    """A column of meta/episodes (v3.0) or a field of each meta/episodes.jsonl row (v2.1), as aloe's export adds."""
    m = src / "meta/episodes/chunk-000/file-000.parquet"
    if m.is_file():
        df = pd.read_parquet(m)
        df[name] = pd.Series(values, dtype=object)
        df.to_parquet(m, index=False)
        return m
    m = src / "meta/episodes.jsonl"
    rows = [json.loads(line) for line in m.read_text().splitlines()]
    m.write_text("".join(json.dumps({**r, name: v}) + "\n" for r, v in zip(rows, values)))
    return m


def outcomes(store: Path) -> tuple[list, list]:
    """The store's (success, terminated) per episode, success None where unknown."""
    eps = Store.open(store).episodes
    return [None if pd.isna(s) else bool(s) for s in eps[S.SUCCESS]], eps[S.TERMINATED].tolist()


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_success_from_the_episodes_metadata(cli, tmp_path, store_with_one, version):
    """aloe's export writes each episode's outcome as aloe/success in meta/episodes, null where it is unknown (and
    next.success only where every episode has one). It is the source's outcome, as aloe/policy_id is the source's
    policy_id: --success fills only the unknown ones (as --policy-id), a --labels row overrides it."""
    eps = make_episodes(seed=7)
    v3 = version == "v3.0"
    src = write_v30(tmp_path / "ds", eps, video=False) if v3 else write_v21(tmp_path / "ds", eps, image=False)
    drop_feature(src, "next.success")
    m = set_episodes_column(src, "aloe/success", [True, None, False])
    if v3:
        assert pq.read_schema(m).field("aloe/success").type == pa.bool_()  # nullable, as the export writes it
    r = cli("ingest", tmp_path / "s", src, "--json")
    assert r.exit_code == 0, r
    assert json.loads(r.stdout)["warnings"] == []
    assert outcomes(tmp_path / "s") == ([True, None, False], [True, False, True])
    assert cli("ingest", tmp_path / "filled", src, "--success", "true").exit_code == 0
    assert outcomes(tmp_path / "filled") == ([True, True, False], [True, True, True])
    labels = tmp_path / "labels.csv"
    labels.write_text("episode_index,success\n0,false\n1,unknown\n")
    assert cli("ingest", tmp_path / "labelled", src, "--labels", labels).exit_code == 0
    assert outcomes(tmp_path / "labelled") == ([False, None, False], [True, False, True])
    # All null, as without aloe/success (LeRobot's own datasets): unknown, as before.
    set_episodes_column(src, "aloe/success", [None, None, None])
    assert cli("ingest", tmp_path / "null", src).exit_code == 0
    assert outcomes(tmp_path / "null") == ([None, None, None], [False, False, False])
    m = set_episodes_column(src, "aloe/success", [1, 0, 1] if v3 else ["yes", "no", "yes"])
    got = "1" if v3 else "'yes'"
    assert bad(cli, store_with_one, src) == f"{m}: aloe/success: episode 0: {got} is not true, false or null"


def test_success_from_the_episodes_metadata_over_next_success(cli, tmp_path):
    """Where aloe/success and the last next.success both give an outcome and differ, aloe/success is kept and one
    line says so; where aloe/success is null, next.success gives the outcome."""
    eps = make_episodes(seed=8)  # next.success: true, false, true
    src = write_v30(tmp_path / "ds", eps, video=False)
    set_episodes_column(src, "aloe/success", [False, None, True])
    r = cli("ingest", tmp_path / "s", src)
    assert r.exit_code == 0, r
    assert r.stderr == ("warning: aloe/success in meta/episodes differs from the last next.success for 1 episode "
                        "(episode 0: false, next.success true); the store keeps aloe/success\n")
    assert outcomes(tmp_path / "s") == ([False, False, True], [True, True, True])
    set_episodes_column(src, "aloe/success", [True, False, True])  # as aloe's export writes both
    r = cli("ingest", tmp_path / "same", src)
    assert (r.exit_code, r.stderr) == (0, ""), r
    assert outcomes(tmp_path / "same") == ([True, False, True], [True, True, True])
