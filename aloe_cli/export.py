"""`aloe export`: the store's frames plus per-frame advantages and weights, for trainers elsewhere.

Teams whose policy is a large VLA trained with openpi or LeRobot take the store out as a
LeRobotDataset v3.0 (the layout of huggingface/lerobot ``datasets/utils.py``: ``DEFAULT_DATA_PATH``,
``DEFAULT_EPISODES_PATH``, ``DEFAULT_TASKS_PATH``, ``INFO_PATH``, ``STATS_PATH``)::

    OUT/meta/info.json                               codebase_version "v3.0", fps, features, counts, paths
    OUT/meta/tasks.parquet                           task text as the index, column task_index
    OUT/meta/episodes/chunk-000/file-000.parquet     one row per episode: tasks, length, data file, rows, stats/*
    OUT/meta/stats.json                              per feature: min, max, mean, std, count, q01..q99
    OUT/meta/aloe.json                               what was exported: store, scores, method, settings, weights
    OUT/data/chunk-000/file-000.parquet              frames, one row group per episode (more files past 100 MB)

Frame columns: ``action``, ``observation.state``, the store's other ``observation.*`` vectors and
cameras (``image`` features: struct {bytes, path}, the store's encoded frames byte for byte; see below),
``next.reward`` (when every frame has a logged reward), ``next.done`` (the last frame of a
terminated episode), ``next.success`` (when every episode has an outcome), ``intervention`` (as
LeRobot's DAgger recorder writes it), the LeRobot index columns, and three per-frame columns:

- ``aloe.advantage`` (float32): the advantage of the chunk starting at the frame (the scores'; for
  ``--method awr`` the Monte-Carlo one, which needs no scores: its reward and gamma are then
  ``--reward`` / ``--gamma``, as in `aloe improve`);
- ``aloe.weight`` (float32): that chunk's training weight under ``--method`` (1 for bc and
  conditioned; 0 outside the top fraction for filtered);
- ``aloe.advantage_positive`` (bool): RECAP's indicator (A above the 70th percentile, or a human's).

Frames without their own score row (``aloe score --stride``) take the values of the latest scored
chunk start before them, as `aloe improve` trains on them. Episodes keep the store's order
(``episode_index`` 0..E-1); the episodes table also carries ``aloe/episode_id``,
``aloe/policy_id`` and ``aloe/success`` so rows can be traced back to the store (LeRobot's loader
keeps them as episode metadata; `aloe ingest` of the export takes each episode's policy_id from
``aloe/policy_id``, which LeRobot has no field for, and its outcome from ``aloe/success``, null where it
is unknown: ``next.success`` cannot say unknown, so it is written only where every episode has an outcome).

Cameras: a LeRobot image feature has one shape (its ``add_frame`` refuses a frame of another), so a
camera whose frames change size (or channel count) is refused, naming the frame; ``aloe ingest
--image-size`` gives every frame one size. The channel count declared is the one the frames decode to
(LeRobot's loader keeps Pillow's mode: a grayscale PNG or JPEG is ``[H, W, 1]``, RGBA ``[H, W, 4]``), and
image statistics are per channel, shaped ``(C, 1, 1)``. Frames in another 8-bit mode (palette, CMYK,
1-bit) are re-encoded as the PNG of the pixels they show, since LeRobot would read a palette PNG as its
indices; 16-bit and float frames are refused (naming the ``--cameras`` that leaves the camera out). A
frame that cannot be decoded (of those read: every frame's header, and the statistics' sample) is refused
the same way. All this is checked before anything is written (and before awr fits its value network); a
re-encoded frame whose pixels turn out broken while the frames are written is refused in the same words.
Nothing is left in OUT_DIR either way. ``--cameras`` (`export`'s ``cameras``) exports only the cameras
named, ``none`` none at all (to leave out a depth camera, say); those left out are in no feature,
statistic or data column, and ``meta/aloe.json`` lists the cameras exported (``cameras``) and those left
out (``cameras_left_out``).

``timestamp`` is LeRobot's ``frame_index / fps``: an episode's own timestamps where the fps exported is
the one that episode was recorded at (its ``fps`` in the store's episodes table), otherwise worked out anew
(``--fps`` for a store without one, or another rate; an episode recorded at another rate, or at none), so a
store mixing sources of several rates exports every episode on the one clock. Frames are not resampled;
``meta/aloe.json`` counts the episodes recorded at another rate (``retimed_episodes``, by rate).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from . import schema as S
from .errors import BadInput
from .outdirs import check_output, temp_sibling
from .store import Store, vectors

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # LeRobot's DEFAULT_CHUNK_SIZE: files per chunk folder
DATA_FILES_SIZE_IN_MB = 100  # LeRobot's DEFAULT_DATA_FILE_SIZE_IN_MB
VIDEO_FILES_SIZE_IN_MB = 200  # LeRobot's DEFAULT_VIDEO_FILE_SIZE_IN_MB (no videos are written)
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
TASKS_PATH = "meta/tasks.parquet"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
ALOE_META_PATH = "meta/aloe.json"
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}  # LeRobot's DEFAULT_QUANTILES
FORMATS = ("lerobot",)
NO_CAMERAS = "none"  # --cameras none: export no camera

# LeRobot column names (lerobot/utils/constants.py).
LR_REWARD, LR_DONE, LR_SUCCESS, LR_INTERVENTION = "next.reward", "next.done", "next.success", "intervention"
INDEX_FEATURES = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64", "index": "int64",
                  "task_index": "int64"}


# ---------------------------------------------------------------------------- statistics

def sample_indices(n: int) -> np.ndarray:
    """LeRobot's frame sample for image statistics (compute_stats.sample_indices)."""
    num = max(min(100, n), min(int(n ** 0.75), 10_000))
    return np.round(np.linspace(0, n - 1, num)).astype(int)


def feature_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """min, max, mean, std, count and quantiles over axis 0 of (T,) or (T, d) numbers (shape (1,) or (d,))."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0), "count": np.array([x.shape[0]])}
    qs = np.quantile(x, list(QUANTILES.values()), axis=0)
    out.update({k: qs[i] for i, k in enumerate(QUANTILES)})
    return out


def image_stats(frames: list[bytes], fail: Callable[[int, str | Exception], Exception] | None = None
                ) -> dict[str, np.ndarray]:
    """Per-channel statistics in [0, 1] of a sample of encoded frames, shaped (C, 1, 1) as LeRobot's, C the
    channels they decode to (as exported: `export_mode`). `fail(t, why)`: the error to raise for frame t that
    cannot be decoded, `why` the exception decoding raised (default: Pillow's own)."""
    sample = sample_indices(len(frames))
    px = np.concatenate([_pixels(frames[i], i, fail) for i in sample])
    out = {k: v[:, None, None] for k, v in feature_stats(px).items() if k != "count"}
    out["count"] = np.array([len(sample)])
    return out


def aggregate_stats(per_episode: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Dataset statistics from episode statistics, as LeRobot's aggregate_feature_stats: count-weighted
    mean, pooled variance, min of the minima, max of the maxima, count-weighted quantiles."""
    counts = np.array([float(np.asarray(s["count"]).reshape(-1)[0]) for s in per_episode])
    total = counts.sum()

    def stack(key: str) -> np.ndarray:
        return np.stack([np.asarray(s[key], dtype=np.float64) for s in per_episode])

    means = stack("mean")
    c = counts.reshape((-1,) + (1,) * (means.ndim - 1))
    mean = (means * c).sum(0) / total
    var = ((stack("std") ** 2 + (means - mean) ** 2) * c).sum(0) / total
    out = {"min": stack("min").min(0), "max": stack("max").max(0), "mean": mean, "std": np.sqrt(var),
           "count": np.array([int(total)])}
    for q in QUANTILES:
        out[q] = (stack(q) * c).sum(0) / total
    return out


def _jsonable(stats: dict[str, np.ndarray]) -> dict:
    return {k: np.asarray(v).tolist() for k, v in stats.items()}


# ---------------------------------------------------------------------------- camera frames

# Pillow modes that LeRobot's loader decodes as they are (datasets.Image keeps the mode; ToTensor gives one
# plane per band), with their channel counts.
IMAGE_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
# Other 8-bit modes, exported as the PNG of the pixels they show (a palette PNG would be read as its indices).
CONVERT_MODES = {"1": "L", "P": "RGB", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}


class _PixelMode(ValueError):
    """A frame whose pixels a LeRobot image feature cannot hold (16-bit, float)."""


def export_mode(img) -> str:
    """The Pillow mode a decoded frame is exported in: its own (IMAGE_CHANNELS), or the one it converts to."""
    if img.mode in IMAGE_CHANNELS:
        return img.mode
    if img.mode == "P" and "transparency" in img.info:
        return "RGBA"
    if img.mode in CONVERT_MODES:
        return CONVERT_MODES[img.mode]
    raise _PixelMode(f"has {img.mode} pixels (Pillow's mode); a LeRobot image feature holds 8-bit "
                     f"{', '.join(IMAGE_CHANNELS)}")


def _why(e: Exception) -> str:
    """Pillow's complaint about bad bytes, without the object address it names for unknown formats."""
    from PIL import UnidentifiedImageError

    return "not an image Pillow can read" if isinstance(e, UnidentifiedImageError) else (str(e) or type(e).__name__)


def _undecodable(e: Exception) -> str:
    return str(e) if isinstance(e, _PixelMode) else f"cannot be decoded as an image: {_why(e)}"


def _pixels(data: bytes, t: int, fail: Callable[[int, str | Exception], Exception] | None) -> np.ndarray:
    """(H * W, C) values in [0, 1] of an encoded frame, decoded in its export mode."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        mode = export_mode(img)
        a = np.asarray(img if mode == img.mode else img.convert(mode), dtype=np.float64)
    except Exception as e:  # Pillow raises many types for bad bytes
        if fail is None:
            raise
        raise fail(t, e) from None
    return a.reshape(a.shape[0] * a.shape[1], -1) / 255.0


def _frame_shape(img) -> list[int]:
    """[height, width, channels] of an opened frame as exported (from its header: nothing is decoded)."""
    w, h = img.size
    return [int(h), int(w), IMAGE_CHANNELS[export_mode(img)]]


def _camera_frame(data: bytes) -> bytes:
    """A stored frame as exported: the bytes as they are, or the PNG of its pixels where its mode is not
    one LeRobot reads as is."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    mode = export_mode(img)
    if mode == img.mode:
        return data
    buf = io.BytesIO()
    img.convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def _dims(shape: list[int]) -> str:
    return "x".join(str(d) for d in shape)


def check_frames(frames: list, shape: list[int] | None, fail: Callable[[int, str | Exception], Exception]
                 ) -> list[int]:
    """The shape (`_frame_shape`) every one of an episode's frames of one camera has: `shape` (the first
    frame's when None). `fail(t, why)` is raised for frame t of another shape (`why` says so), or whose header
    cannot be read (`why`: the exception reading it raised)."""
    from PIL import Image

    for t, data in enumerate(frames):
        try:
            got = _frame_shape(Image.open(io.BytesIO(data)))
        except Exception as e:  # Pillow raises many types for bad bytes
            raise fail(t, e) from None
        if shape is None:
            shape = got
        elif got != shape:
            hint = " (aloe ingest --image-size WxH gives every frame one)" if got[:2] != shape[:2] else ""
            raise fail(t, f"is {_dims(got)} but the first frame is {_dims(shape)}; a LeRobot image feature has one "
                          f"shape{hint}")
    return shape


def export_frames(frames: list, fail: Callable[[int, str | Exception], Exception]) -> list[bytes]:
    """An episode's frames of one camera as exported (`_camera_frame`; their shapes checked by
    `check_frames`): `fail(t, why)` is raised for frame t whose pixels cannot be decoded (`why`: the exception
    decoding raised)."""
    out = []
    for t, data in enumerate(frames):
        try:
            out.append(_camera_frame(data))
        except Exception as e:  # Pillow raises many types for bad bytes
            raise fail(t, e) from None
    return out


def camera_name(col: str) -> str:
    """A camera's name as ``--cameras`` takes it: ``observation.images.<cam>`` -> ``<cam>``."""
    return col[len(S.OBS_IMAGES_PREFIX):] if col.startswith(S.OBS_IMAGES_PREFIX) else col


def parse_cameras(spec: str | None, field: str = "--cameras") -> list[str] | None:
    """``"wrist,top"`` -> ["wrist", "top"]; ``"none"`` -> [] (no camera); None -> None (every camera).
    Names are checked against a store by `select_cameras` (a camera called none is ``images.none``)."""
    if spec is None:
        return None
    names = [raw.strip() for raw in str(spec).split(",")]
    if names == [NO_CAMERAS]:
        return []
    if NO_CAMERAS in names:
        raise BadInput(f"{spec!r}: {NO_CAMERAS} stands alone (it exports no camera)", field=field)
    if "" in names:
        raise BadInput(f"empty name in {spec!r}", field=field)
    return names


def select_cameras(store: Store, cameras: list[str] | None, field: str = "--cameras") -> list[str]:
    """The camera columns `cameras` names, in the store's order: every camera for None, none for []. A name is
    the camera's (``<cam>`` of ``observation.images.<cam>``, `camera_name`), ``images.<cam>`` or the column's.
    A name the store has no camera for, or one named twice, is refused (BadInput listing the store's cameras)."""
    have = store.image_columns
    if cameras is None:
        return list(have)
    chosen = []
    for name in cameras:
        col = next((c for c in have if name in (c, camera_name(c), c.removeprefix(S.OBS_PREFIX))), None)
        if col is None:
            listed = ", ".join(camera_name(c) for c in have) or "none"
            raise BadInput(f"the store has no camera {name!r} (cameras: {listed})", store.root, field)
        if col in chosen:
            raise BadInput(f"camera {camera_name(col)!r} is named twice", store.root, field)
        chosen.append(col)
    return [c for c in have if c in chosen]


def _way_out(col: str, images: list[str]) -> str:
    """How to export the rest without camera `col`, of the cameras `images` being exported."""
    rest = ",".join(camera_name(c) for c in images if c != col) or NO_CAMERAS
    return f"leave the camera out with --cameras {rest}"


def _frame_failure(store: Store, col: str, e: int, episode_id: str, way_out: str | None = None
                   ) -> Callable[[int, str | Exception], BadInput]:
    """fail(t, why): the one-line error naming frame t of episode e's camera `col`, `why` what is wrong or the
    exception decoding the frame raised; a frame whose pixels no image feature holds (16-bit, float) is
    refused with `way_out` (`_way_out`) in the same line."""
    def fail(t: int, why: str | Exception) -> BadInput:
        text = why if isinstance(why, str) else _undecodable(why)
        if isinstance(why, _PixelMode) and way_out:
            text = f"{text}; {way_out}"
        return BadInput(f"episode {e} ({episode_id}) frame {t} {text}", store.root, col)

    return fail


def scan_cameras(store: Store, images: list[str]) -> tuple[dict[str, list[int]], dict[str, list[dict]]]:
    """Each camera's [height, width, channels] and per-episode image statistics, read before anything is
    written: a frame of another shape, or one that cannot be decoded, is refused here (BadInput naming it;
    one of 16-bit or float pixels names the ``--cameras`` that leaves its camera out of `images`)."""
    shapes: dict = dict.fromkeys(images)
    stats: dict[str, list[dict]] = {c: [] for c in images}
    if not images:
        return shapes, stats
    for e, (row, t) in enumerate(store.iter_episode_tables(columns=images)):
        for c in images:
            fail = _frame_failure(store, c, e, row[S.EPISODE_ID], _way_out(c, images))
            frames = t.column(c).to_pylist()
            shapes[c] = check_frames(frames, shapes[c], fail)
            stats[c].append(image_stats(frames, fail))  # decoded in the export mode, as the frames are written
    return shapes, stats


def _timestamps(stored: np.ndarray, fps: float, recorded_fps: float | None) -> np.ndarray:
    """LeRobot's timestamps, frame_index / fps: the episode's own where it was recorded at the exported rate.
    `recorded_fps`: the episode's (its row's fps), None or NaN where it has none (an RLDS source's, say)."""
    if recorded_fps is not None and math.isfinite(recorded_fps) and math.isclose(fps, recorded_fps, rel_tol=1e-9):
        return stored.astype(np.float32)
    return np.arange(len(stored), dtype=np.float32) / np.float32(fps)


# ---------------------------------------------------------------------------- export

def store_robot_type(store: Store, eps) -> str | None:
    """The robot_type that every ingest of `eps` recorded (a LeRobot source's meta/info.json), or None.

    None too when they differ or one recorded none (an ALOHA or robomimic source): a mixed export names no robot.
    """
    recorded = {i.get("id"): (i.get("options") or {}).get("robot_type") for i in store.manifest["ingests"]}
    ids = eps[S.INGEST_ID] if S.INGEST_ID in eps.columns else [None]
    found = {recorded.get(i) if isinstance(i, str) else None for i in ids}
    robot = found.pop() if len(found) == 1 else None
    return robot if isinstance(robot, str) and robot else None


def _null_columns(store: Store, columns: list[str]) -> set[str]:
    """Those of `columns` that are null on some frame, from the frames files' Parquet statistics."""
    import pyarrow.parquet as pq

    nulls = set()
    for rel in sorted(set(store.episodes[S.FRAMES_FILE])):
        md = pq.ParquetFile(store.root / rel).metadata
        for rg in range(md.num_row_groups):
            group = md.row_group(rg)
            for i in range(md.num_columns):
                chunk = group.column(i)
                path = chunk.path_in_schema  # "observation.x" or "observation.x.list.element" for vectors
                name = next((c for c in columns if path == c or path.startswith(c + ".")), None)
                st = chunk.statistics
                if name is not None and st is not None and st.has_null_count and st.null_count > 0:
                    nulls.add(name)
    return nulls


def export(store_path: str | os.PathLike, scores_dir: str | os.PathLike | None, out_dir: str | os.PathLike,
           to: str = "lerobot", method: str = "aloe", options: dict | None = None, force: bool = False,
           fps: float | None = None, robot_type: str | None = None, device: str = "cpu",
           data_files_size_in_mb: float = DATA_FILES_SIZE_IN_MB, cameras: list[str] | None = None,
           progress: Callable[[int, int], None] | None = None) -> dict:
    """Write the store with per-frame advantages, weights and indicators as a LeRobotDataset v3.0.

    `method`/`options`: how `aloe.weight` is computed (as `aloe improve` would weight the chunk).
    `cameras`: the cameras exported (names as `select_cameras` takes them; None: every camera, []: none).
    Writes into a temporary sibling of `out_dir`, renamed into place at the end. Returns a summary.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .formats.lerobot import EP_EPISODE_ID, EP_POLICY_ID, EP_SUCCESS
    from .improve import METHODS, OWN_ADVANTAGES, load_scores, method_options, select

    if to not in FORMATS:
        raise BadInput(f"unknown format {to!r}; available: {', '.join(FORMATS)}", field="--to")
    opts = method_options(method, options)
    if scores_dir is None and method in METHODS and method not in OWN_ADVANTAGES:
        raise BadInput(f"--method {method} takes its per-frame advantages from `aloe score` (--scores SCORES_DIR); "
                       f"only {', '.join(OWN_ADVANTAGES)} computes its own", field="--scores")
    out_dir = Path(out_dir).absolute()  # "." has no name: its temporary sibling would land inside it
    here = Path.cwd()
    if out_dir == here or out_dir in here.parents:  # --force would delete the working folder with it
        raise BadInput("is the current folder or holds it; name an export folder outside it", out_dir, "OUT_DIR")
    for path, what in ((store_path, "store"), (scores_dir, "scores")):
        if path is not None and (Path(path).absolute() == out_dir or out_dir in Path(path).absolute().parents):
            raise BadInput(f"holds the {what} {path}; name an export folder outside it", out_dir, "OUT_DIR")
    check_output(out_dir, "export", "OUT_DIR", replace=force)
    store = Store.open(store_path)
    eps = store.episodes
    if len(eps) == 0:
        raise BadInput("has no episodes to export", store.root)
    images = select_cameras(store, cameras)
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise BadInput(f"must be a positive number, got {fps}", field="--fps")
    fps = fps if fps is not None else store.fps
    if fps is None or not (math.isfinite(fps) and fps > 0):
        raise BadInput("the store records no frame rate; pass --fps", store.root / S.MANIFEST_FILE, "fps")
    fps_out = int(round(fps)) if abs(fps - round(fps)) < 1e-6 else float(fps)
    robot_type = robot_type if robot_type is not None else store_robot_type(store, eps)
    scores = None if scores_dir is None else load_scores(scores_dir, store, advantages=method not in OWN_ADVANTAGES)

    # ---- features
    extras = sorted(store.extra_columns)
    dropped = sorted(_null_columns(store, extras + images))
    extras = [c for c in extras if c not in dropped]
    images = [c for c in images if c not in dropped]
    has_reward = S.REWARD not in _null_columns(store, [S.REWARD])
    has_success = bool(eps[S.SUCCESS].notna().all())
    feats: dict[str, dict] = {}

    def vec(name: str, dim: int) -> dict:
        names = store.features.get(name, {}).get("names")
        return {"dtype": "float32", "shape": [dim], "names": names if isinstance(names, list) else None}

    feats[S.ACTION] = vec(S.ACTION, store.action_dim)
    feats[S.OBS_STATE] = vec(S.OBS_STATE, store.state_dim)
    for c in extras:
        feats[c] = vec(c, store.extra_columns[c])
    shapes, camera_stats = scan_cameras(store, images)  # before the weights (awr fits a value network)
    for c in images:
        feats[c] = {"dtype": "image", "shape": shapes[c], "names": ["height", "width", "channels"]}
    scalar = lambda dtype: {"dtype": dtype, "shape": [1], "names": None}  # noqa: E731
    if has_reward:
        feats[LR_REWARD] = scalar("float32")
    feats[LR_DONE] = scalar("bool")
    if has_success:
        feats[LR_SUCCESS] = scalar("bool")
    feats[LR_INTERVENTION] = scalar("bool")
    feats[S.EXPORT_ADVANTAGE] = scalar("float32")
    feats[S.EXPORT_WEIGHT] = scalar("float32")
    feats[S.EXPORT_POSITIVE] = scalar("bool")
    for k, dtype in INDEX_FEATURES.items():
        feats[k] = scalar(dtype)

    sel = select(store, method, scores, opts, device)
    n_frames = int(eps[S.LENGTH].sum())
    weight = np.ones(n_frames, np.float32) if sel.weights is None else np.asarray(sel.weights, np.float32)
    advantage = np.asarray(sel.advantages, np.float32)
    positive = np.asarray(sel.positive, bool)

    arrow_type = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_()}
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    fields = []
    for k, f in feats.items():
        if f["dtype"] == "image":
            fields.append(pa.field(k, image_type))
        elif f["shape"] == [1]:
            fields.append(pa.field(k, arrow_type[f["dtype"]]))
        else:
            fields.append(pa.field(k, pa.list_(arrow_type[f["dtype"]], f["shape"][0])))
    schema = pa.schema(fields)

    # ---- tasks, in order of first appearance (as LeRobot numbers them)
    task_text = [t if isinstance(t, str) else "" for t in eps[S.TASK]]
    tasks = list(dict.fromkeys(task_text))
    task_index = {t: i for i, t in enumerate(tasks)}

    # ---- stream the episodes into data files
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out_dir)  # (a killed run's are removed here)
    writer = None
    try:
        chunk_i, file_i, file_bytes, file_eps = 0, 0, 0, 0
        data_files = []
        limit = float(data_files_size_in_mb) * 1024 * 1024
        rows = []
        ep_stats: dict[str, list] = {k: [] for k in feats}
        g = 0
        retimed: dict[str, int] = {}  # episodes recorded at another rate: their frames are not resampled
        columns = [S.OBS_STATE, S.ACTION, S.REWARD, S.IS_INTERVENTION, S.TIMESTAMP, *extras, *images]
        for e, (row, t) in enumerate(store.iter_episode_tables(columns=columns)):
            T = t.num_rows
            sl = slice(g, g + T)
            cols: dict[str, np.ndarray | pa.Array] = {
                S.ACTION: vectors(t.column(S.ACTION), store.action_dim),
                S.OBS_STATE: vectors(t.column(S.OBS_STATE), store.state_dim),
            }
            for c in extras:
                cols[c] = vectors(t.column(c), store.extra_columns[c])
            terminated = bool(row[S.TERMINATED])
            done = np.zeros(T, bool)
            done[-1] = terminated
            if has_reward:
                cols[LR_REWARD] = t.column(S.REWARD).to_numpy(zero_copy_only=False).astype(np.float32)
            cols[LR_DONE] = done
            if has_success:
                succ = np.zeros(T, bool)
                succ[-1] = bool(row[S.SUCCESS])
                cols[LR_SUCCESS] = succ
            cols[LR_INTERVENTION] = t.column(S.IS_INTERVENTION).to_numpy(zero_copy_only=False).astype(bool)
            cols[S.EXPORT_ADVANTAGE] = advantage[sl]
            cols[S.EXPORT_WEIGHT] = weight[sl]
            cols[S.EXPORT_POSITIVE] = positive[sl]
            cols["timestamp"] = _timestamps(t.column(S.TIMESTAMP).to_numpy(zero_copy_only=False), fps, row[S.FPS])
            rate = row[S.FPS]
            if rate is not None and math.isfinite(rate) and not math.isclose(fps, rate, rel_tol=1e-9):
                retimed[f"{rate:g}"] = retimed.get(f"{rate:g}", 0) + 1
            cols["frame_index"] = np.arange(T, dtype=np.int64)
            cols["episode_index"] = np.full(T, e, dtype=np.int64)
            cols["index"] = np.arange(g, g + T, dtype=np.int64)
            cols["task_index"] = np.full(T, task_index[task_text[e]], dtype=np.int64)
            arrays = []
            for k, f in zip(feats, fields):
                if feats[k]["dtype"] == "image":
                    fail = _frame_failure(store, k, e, row[S.EPISODE_ID], _way_out(k, images))
                    data = export_frames(t.column(k).to_pylist(), fail)
                    arrays.append(pa.array([{"bytes": b, "path": None} for b in data], image_type))
                    ep_stats[k].append(camera_stats[k][e])
                    continue
                a = np.asarray(cols[k])
                if a.ndim == 2 and feats[k]["shape"] == [1]:  # LeRobot stores a (1,) feature as a scalar column
                    a = a[:, 0]
                if a.ndim == 2:
                    arrays.append(pa.FixedSizeListArray.from_arrays(
                        pa.array(np.ascontiguousarray(a, dtype=np.float32).reshape(-1)), a.shape[1]))
                else:
                    arrays.append(pa.array(a, f.type))
                ep_stats[k].append(feature_stats(a))
            table = pa.Table.from_arrays(arrays, schema=schema)
            if writer is not None and file_eps and file_bytes + table.nbytes > limit:
                writer.close()
                writer = None
                file_i += 1
                if file_i == CHUNKS_SIZE:
                    chunk_i, file_i = chunk_i + 1, 0
            if writer is None:
                rel = DATA_PATH.format(chunk_index=chunk_i, file_index=file_i)
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(tmp / rel, schema, compression="snappy")
                data_files.append(rel)
                file_bytes, file_eps = 0, 0
            writer.write_table(table, row_group_size=max(T, 1))  # one row group per episode
            file_bytes += table.nbytes
            file_eps += 1
            ep_row = {
                "episode_index": e,
                "tasks": [task_text[e]],
                "length": T,
                "data/chunk_index": chunk_i,
                "data/file_index": file_i,
                "dataset_from_index": g,
                "dataset_to_index": g + T,
            }
            for k in feats:
                for stat, v in ep_stats[k][-1].items():
                    ep_row[f"stats/{k}/{stat}"] = np.asarray(v).tolist()
            ep_row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                           EP_EPISODE_ID: row[S.EPISODE_ID], EP_POLICY_ID: row[S.POLICY_ID],
                           EP_SUCCESS: None if pd.isna(row[S.SUCCESS]) else bool(row[S.SUCCESS])})
            rows.append(ep_row)
            g += T
            if progress is not None:
                progress(g, n_frames)
        if writer is not None:
            writer.close()
            writer = None

        # ---- metadata
        ep_path = tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), ep_path)
        tasks_df = pd.DataFrame({"task_index": np.arange(len(tasks), dtype=np.int64)},
                                index=pd.Index(tasks, name="task"))
        tasks_df.to_parquet(tmp / TASKS_PATH)
        stats = {k: _jsonable(aggregate_stats(v)) for k, v in ep_stats.items()}
        (tmp / STATS_PATH).write_text(json.dumps(stats, indent=4))
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type,
            "total_episodes": len(rows),
            "total_frames": g,
            "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": data_files_size_in_mb,
            "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
            "fps": fps_out,
            "splits": {"train": f"0:{len(rows)}"},
            "data_path": DATA_PATH,
            "video_path": None,
            "features": feats,
        }
        (tmp / INFO_PATH).write_text(json.dumps(info, indent=4))
        summary = {
            "out": str(out_dir), "format": to, "codebase_version": CODEBASE_VERSION, "fps": fps_out, "store": str(store.root),
            "store_fingerprint": store.fingerprint, "scores": None if scores is None else str(scores.path),
            "method": method,
            "episodes": len(rows), "frames": g, "tasks": len(tasks), "data_files": data_files,
            "features": list(feats), "dropped_columns": dropped,
            "cameras": images, "cameras_left_out": [c for c in store.image_columns if c not in images + dropped],
            "retimed_episodes": dict(sorted(retimed.items(), key=lambda kv: float(kv[0]))),
            "outcomes": "next.success" if has_success else "not exported as next.success (some episodes have none)",
            **(sel.info or {}),
        }
        (tmp / ALOE_META_PATH).write_text(json.dumps(summary, indent=2, default=str) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir) if out_dir.is_dir() else out_dir.unlink()
        os.replace(tmp, out_dir)
    except BaseException:
        if writer is not None:
            writer.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary
