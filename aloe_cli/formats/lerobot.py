"""LeRobotDataset v2.0/v2.1 and v3.0 folders, read with pyarrow (and PyAV for video features).

Layout (huggingface/lerobot datasets/utils.py, lerobot_dataset.py,
scripts/convert_dataset_v21_to_v30.py): ``meta/info.json`` names the ``codebase_version``,
``fps``, the ``features`` ({name: {dtype, shape, names}}) and the ``data_path`` /
``video_path`` templates.

- v2.x: one Parquet file per episode (``data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet``),
  ``meta/episodes.jsonl`` {episode_index, tasks, length}, ``meta/tasks.jsonl`` {task_index, task};
  videos ``videos/chunk-XXX/<key>/episode_XXXXXX.mp4``, a frame at its ``timestamp``.
- v3.0: many episodes per file (``data/chunk-XXX/file-XXX.parquet``); ``meta/episodes/chunk-XXX/file-XXX.parquet``
  gives each episode's file (``data/chunk_index``, ``data/file_index``), its rows
  (``dataset_from_index``..``dataset_to_index``, global) and per video key the mp4 file and
  ``from_timestamp`` (a frame is at ``from_timestamp + timestamp``); ``meta/tasks.parquet``.

Columns: ``observation.state`` -> state (``--state-keys`` concatenates others), ``action``,
``next.reward`` -> reward, the last ``next.success`` -> success (else unknown),
``intervention`` or ``complementary_info.is_intervention`` -> is_intervention, other numeric
``observation.*`` -> extras, ``task_index`` -> task text. ``image`` features (struct {bytes,
path}) are kept byte for byte; ``video`` features are decoded and stored as PNG.

The store has one task per episode: an episode whose ``task_index`` changes keeps its first frame's
task, and the reader warns (`Source.warnings`, one line for them all). Features none of the above
reads (a ``complementary_info.*`` number, a string feature), other than LeRobot's bookkeeping
(``BOOKKEEPING``), are named in one warning and in the ingest's record (``features_not_read``).
An ``aloe/policy_id`` column in ``meta/episodes`` (aloe's export writes it) gives each episode's policy_id, and an
``aloe/success`` column its outcome (true, false; null: unknown, then the last ``next.success`` if there is one). Where
both say an outcome and differ, ``aloe/success`` is kept and the reader warns (one line for them all). Both are the
source's: as for any reader's outcome, ``--labels`` overrides them and ``--success``/``--policy-id`` fill only gaps.

Episodes stream: each data file is read front to back in record batches and cut into
episodes, so memory holds one episode (plus one batch), never the dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from .. import schema as S
from ..episode import Episode
from ..errors import BadInput, plural
from . import ReadOptions, Source, iter_files, read_json_object
from ._images import encode_frames, jpeg_passthrough

INFO = "meta/info.json"
EPISODES_JSONL = "meta/episodes.jsonl"
TASKS_JSONL = "meta/tasks.jsonl"
EPISODES_DIR = "meta/episodes"
TASKS_PARQUET = "meta/tasks.parquet"
V2 = ("v2.0", "v2.1")
V3 = ("v3.0",)

ACTION = "action"
REWARD = "next.reward"
SUCCESS = "next.success"
INTERVENTION = ("intervention", "complementary_info.is_intervention")
TIMESTAMP = "timestamp"
TASK_INDEX = "task_index"
EPISODE_INDEX = "episode_index"
# What LeRobot writes for every dataset and the store rebuilds (its own frame numbers, the terminal frame) or
# does not need: not reported as features not read.
BOOKKEEPING = frozenset({TIMESTAMP, "frame_index", EPISODE_INDEX, "index", TASK_INDEX, "next.done"})
# Columns aloe's export adds to meta/episodes/*.parquet to trace rows to the store (read from episodes.jsonl too).
EP_EPISODE_ID, EP_POLICY_ID, EP_SUCCESS = "aloe/episode_id", "aloe/policy_id", "aloe/success"

_NUMERIC = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
            "float16", "float32", "float64"}
_BATCH_ROWS = 4096


# ---------------------------------------------------------------------------- metadata

@dataclass
class _Meta:
    root: Path
    info_path: Path
    version: str
    fps: float
    features: dict
    data_path: str
    video_path: str | None
    chunks_size: int | None  # v2.x only
    robot_type: str | None


def _load_info(root: Path) -> _Meta:
    path = root / INFO
    info = read_json_object(path)
    for key in ("codebase_version", "fps", "features", "data_path"):
        if key not in info:
            raise BadInput("missing", path, key)
    version = info["codebase_version"]
    if version not in V2 + V3:
        raise BadInput(f"{version!r} is not supported (v2.0, v2.1 or v3.0)", path, "codebase_version")
    fps = info["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise BadInput(f"{fps!r} is not a positive number", path, "fps")
    feats = info["features"]
    if not isinstance(feats, dict) or not all(isinstance(v, dict) and "dtype" in v for v in feats.values()):
        raise BadInput("must map each feature name to {dtype, shape, names}", path, "features")
    if not isinstance(info["data_path"], str):
        raise BadInput("is not a path template", path, "data_path")
    chunks = None  # v3.0 files are named by their own chunk_index/file_index
    if version in V2:
        if "chunks_size" not in info:
            raise BadInput("missing", path, "chunks_size")
        chunks = info["chunks_size"]
        if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks <= 0:
            raise BadInput(f"{chunks!r} is not a positive integer", path, "chunks_size")
    if info.get("video_path") is not None and not isinstance(info["video_path"], str):
        raise BadInput("is not a path template", path, "video_path")
    return _Meta(root, path, version, float(fps), feats, info["data_path"], info.get("video_path"),
                 chunks, info.get("robot_type"))


def _finite_number(value) -> bool:
    """A finite int or float (numpy's too), not a bool, not null."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and bool(np.isfinite(value)))


def _index(value, path: Path, field: str, where: str = "") -> int:
    """A non-negative whole number read from metadata, or BadInput naming the file and field."""
    if not (_finite_number(value) and value == int(value) and value >= 0):
        raise BadInput(f"{where}{'null' if value is None else repr(value)} is not a non-negative integer", path, field)
    return int(value)


def _seconds(value, path: Path, field: str, where: str = "") -> float:
    """A finite number of seconds read from metadata, or BadInput naming the file and field."""
    if not _finite_number(value):
        raise BadInput(f"{where}{'null' if value is None else repr(value)} is not a number", path, field)
    return float(value)


def _shape_size(meta: _Meta, key: str) -> int:
    shape = meta.features[key].get("shape") or [1]
    try:
        return int(np.prod([int(d) for d in shape]))
    except (TypeError, ValueError):
        raise BadInput(f"shape {shape!r} is not a list of integers", meta.info_path, key) from None


def _dim_names(meta: _Meta, key: str, dim: int) -> list[str] | None:
    names = meta.features[key].get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if isinstance(names, list) and len(names) == dim and all(isinstance(n, str) for n in names):
        return list(names)
    return None


def _image_column(key: str) -> str:
    if key.startswith(S.OBS_IMAGES_PREFIX):
        return key
    return S.OBS_IMAGES_PREFIX + key.removeprefix(S.OBS_PREFIX)


def _format(meta: _Meta, template_key: str, template: str, **values) -> Path:
    try:
        return meta.root / template.format(**values)
    except (KeyError, IndexError, ValueError) as e:
        raise BadInput(f"{template!r} has a placeholder this reader does not fill: {e}",
                       meta.info_path, template_key) from None


@dataclass
class _Plan:
    state_keys: list[str]
    dims: dict[str, int]  # numeric column -> numbers per frame
    extras: list[str]
    flags: dict[str, str]  # role (reward, success, intervention) -> column
    images: dict[str, str]  # image feature -> store column
    videos: dict[str, str]  # video feature -> store column
    columns: list[str]  # what to read from the data files
    names: dict[str, list[str]] = field(default_factory=dict)
    not_read: list[str] = field(default_factory=list)  # features none of the above reads (BOOKKEEPING aside)


def _plan(meta: _Meta, options: ReadOptions) -> _Plan:
    feats = meta.features
    numeric = sorted(k for k, v in feats.items() if v["dtype"] in _NUMERIC)
    state_keys = options.state_keys or [S.OBS_STATE]
    for k in state_keys:
        if k not in feats:
            avail = ", ".join(n for n in numeric if n.startswith(S.OBS_PREFIX)) or "none"
            raise BadInput(f"no such feature; pass --state-keys with some of: {avail}", meta.info_path, k)
        if feats[k]["dtype"] not in _NUMERIC:
            raise BadInput(f"dtype {feats[k]['dtype']!r} is not numeric", meta.info_path, k)
    if ACTION not in feats:
        raise BadInput("no such feature", meta.info_path, ACTION)
    if feats[ACTION]["dtype"] not in _NUMERIC:
        raise BadInput(f"dtype {feats[ACTION]['dtype']!r} is not numeric", meta.info_path, ACTION)
    extras = [k for k in numeric if k.startswith(S.OBS_PREFIX) and k not in state_keys and k != S.OBS_STATE]
    flags = {}
    for role, keys in (("reward", (REWARD,)), ("success", (SUCCESS,)), ("intervention", INTERVENTION)):
        for k in keys:
            if k in feats and feats[k]["dtype"] in _NUMERIC:
                flags[role] = k
                break
    images, videos = {}, {}
    if options.images == "keep":
        images = {k: _image_column(k) for k, v in sorted(feats.items()) if v["dtype"] == "image"}
        videos = {k: _image_column(k) for k, v in sorted(feats.items()) if v["dtype"] == "video"}
        if videos and not isinstance(meta.video_path, str):
            raise BadInput("missing, but the dataset has video features", meta.info_path, "video_path")
    dims = {k: _shape_size(meta, k) for k in [*state_keys, ACTION, *extras, *flags.values()]}
    columns = list(dict.fromkeys([*state_keys, ACTION, *extras, *flags.values(), *images]))
    columns += [k for k in (TIMESTAMP, TASK_INDEX, EPISODE_INDEX) if k in feats]
    names = {}
    parts = [_dim_names(meta, k, dims[k]) for k in state_keys]
    if all(p is not None for p in parts):
        names[S.OBS_STATE] = [n for p in parts for n in p]
    if (a := _dim_names(meta, ACTION, dims[ACTION])) is not None:
        names[ACTION] = a
    for k in extras:
        if (e := _dim_names(meta, k, dims[k])) is not None:
            names[k] = e
    read = {*state_keys, ACTION, *extras, *flags.values(), *images, *videos}
    chosen = set()  # left out on purpose: cameras under --images drop, observation.state under --state-keys
    if options.images != "keep":
        chosen |= {k for k, v in feats.items() if v["dtype"] in ("image", "video")}
    if options.state_keys:
        chosen.add(S.OBS_STATE)
    not_read = sorted(k for k in feats if k not in read and k not in chosen and k not in BOOKKEEPING)
    return _Plan(state_keys, dims, extras, flags, images, videos, columns, names, not_read)


# ---------------------------------------------------------------------------- episode index

@dataclass
class _Ep:
    index: int
    length: int | None  # from the metadata (v2.x); None when unknown
    tasks: list[str]
    data_file: Path
    start: int  # first row in data_file
    stop: int | None  # one past the last row; None: to the end of the file
    videos: dict[str, tuple[Path, float]]  # video feature -> (mp4, from_timestamp)
    meta_file: Path
    policy_id: str | None = None  # aloe's export's EP_POLICY_ID; None where there is none
    success: bool | None = None  # aloe's export's EP_SUCCESS; None where there is none (or it is null: unknown)


def _policy_id(value, path: Path, where: str) -> str | None:
    """An EP_POLICY_ID value: a string (the store's "unknown" read as none), or BadInput."""
    if value is None or value == "" or value == S.UNKNOWN_POLICY_ID:
        return None
    if not isinstance(value, str):
        raise BadInput(f"{where}{value!r} is not a string", path, EP_POLICY_ID)
    return value


def _success(value, path: Path, where: str) -> bool | None:
    """An EP_SUCCESS value: true, false or null (unknown, read as none), or BadInput."""
    if value is None:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise BadInput(f"{where}{value!r} is not true, false or null", path, EP_SUCCESS)
    return bool(value)


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    rows = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot be read: {e}", path) from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise BadInput(f"line {n} is not JSON: {e}", path) from None
        if not isinstance(row, dict):
            raise BadInput(f"line {n} is not a JSON object", path)
        for k in required:
            if k not in row:
                raise BadInput(f"line {n} has no such field", path, k)
        rows.append(row)
    return rows


def _episodes_v2(meta: _Meta, plan: _Plan) -> list[_Ep]:
    path = meta.root / EPISODES_JSONL
    if not path.is_file():
        raise BadInput("missing file", path)
    out = []
    rows = [(_index(r[EPISODE_INDEX], path, EPISODE_INDEX), r) for r in _read_jsonl(path, (EPISODE_INDEX,))]
    for idx, row in sorted(rows, key=lambda x: x[0]):
        chunk = idx // meta.chunks_size
        data = _format(meta, "data_path", meta.data_path, episode_chunk=chunk, episode_index=idx,
                       chunk_index=chunk)
        videos = {k: (_format(meta, "video_path", meta.video_path, episode_chunk=chunk, video_key=k,
                              episode_index=idx, chunk_index=chunk), 0.0) for k in plan.videos}
        tasks = row.get("tasks") or []
        length = _index(row["length"], path, "length", f"episode {idx}: ") if "length" in row else None
        where = f"episode {idx}: "
        out.append(_Ep(idx, length, [t for t in tasks if isinstance(t, str)], data, 0, None, videos, path,
                       _policy_id(row.get(EP_POLICY_ID), path, where), _success(row.get(EP_SUCCESS), path, where)))
    return out


def _episodes_v3(meta: _Meta, plan: _Plan) -> list[_Ep]:
    files = iter_files(meta.root / EPISODES_DIR, "*/*.parquet")
    if not files:
        raise BadInput("no chunk-XXX/file-XXX.parquet files", meta.root / EPISODES_DIR)
    needed = [EPISODE_INDEX, "data/chunk_index", "data/file_index", "dataset_from_index", "dataset_to_index"]
    for k in plan.videos:
        needed += [f"videos/{k}/chunk_index", f"videos/{k}/file_index", f"videos/{k}/from_timestamp"]
    rows = []
    for f in files:
        pf = _open_parquet(f)
        have = set(pf.schema_arrow.names)
        for k in needed:
            if k not in have:
                raise BadInput("missing column", f, k)
        cols = needed + [k for k in ("tasks", EP_POLICY_ID, EP_SUCCESS) if k in have]
        try:
            d = pf.read(columns=cols).to_pydict()
        except _PARQUET_ERRORS as e:
            raise BadInput(f"cannot be read as Parquet: {_first_line(e)}", f) from None
        for i in range(len(d[EPISODE_INDEX])):
            r = {k: d[k][i] for k in cols}
            for k in needed:  # indices and timestamps: numbers, checked before any is used
                check = _seconds if k.endswith("from_timestamp") else _index
                where = "" if k == EPISODE_INDEX else f"episode {r[EPISODE_INDEX]}: "
                r[k] = check(r[k], f, k, where)
            rows.append((r, f))
    rows.sort(key=lambda r: r[0][EPISODE_INDEX])
    # Rows are global frame indices; a data file starts at its first episode's dataset_from_index.
    base: dict[tuple, int] = {}
    for r, _ in rows:
        key = (r["data/chunk_index"], r["data/file_index"])
        base[key] = min(base.get(key, r["dataset_from_index"]), r["dataset_from_index"])
    out = []
    for r, f in rows:
        key = (r["data/chunk_index"], r["data/file_index"])
        lo, hi = r["dataset_from_index"], r["dataset_to_index"]
        if hi <= lo:
            raise BadInput(f"episode {r[EPISODE_INDEX]}: dataset_to_index {hi} is not after dataset_from_index {lo}",
                           f, "dataset_to_index")
        data = _format(meta, "data_path", meta.data_path, chunk_index=key[0], file_index=key[1])
        videos = {}
        for k in plan.videos:
            mp4 = _format(meta, "video_path", meta.video_path, video_key=k,
                          chunk_index=r[f"videos/{k}/chunk_index"], file_index=r[f"videos/{k}/file_index"])
            videos[k] = (mp4, r[f"videos/{k}/from_timestamp"])
        tasks = [t for t in (r.get("tasks") or []) if isinstance(t, str)]
        where = f"episode {r[EPISODE_INDEX]}: "
        policy, success = _policy_id(r.get(EP_POLICY_ID), f, where), _success(r.get(EP_SUCCESS), f, where)
        out.append(_Ep(r[EPISODE_INDEX], hi - lo, tasks, data, lo - base[key], hi - base[key], videos, f, policy,
                       success))
    return out


def _load_tasks(meta: _Meta) -> dict[int, str]:
    if meta.version in V2:
        path = meta.root / TASKS_JSONL
        if not path.is_file():
            return {}
        rows = _read_jsonl(path, (TASK_INDEX, "task"))
        return {_index(r[TASK_INDEX], path, TASK_INDEX): str(r["task"]) for r in rows}
    path = meta.root / TASKS_PARQUET
    if not path.is_file():
        return {}
    import pandas as pd

    try:
        df = pd.read_parquet(path)
    except _PARQUET_ERRORS as e:
        raise BadInput(f"cannot be read as Parquet: {_first_line(e)}", path) from None
    if TASK_INDEX not in df.columns:
        raise BadInput("missing column", path, TASK_INDEX)
    texts = df["task"] if "task" in df.columns else df.index  # written with the task text as the index
    return {_index(i, path, TASK_INDEX): str(t) for i, t in zip(df[TASK_INDEX], texts)}


# ---------------------------------------------------------------------------- reading rows

# What a damaged Parquet file raises: Arrow's errors, and UnicodeDecodeError (a ValueError) from
# damaged schema metadata (the pandas JSON).
_PARQUET_ERRORS = (OSError, pa.ArrowException, ValueError)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _open_parquet(path: Path):
    import pyarrow.parquet as pq

    if not path.is_file():
        raise BadInput("missing file", path)
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(size - 4, 0))
        tail = f.read(4)
    if size < 12 or head != b"PAR1" or tail != b"PAR1":
        raise BadInput("is not a Parquet file (no PAR1 magic bytes at both ends)", path)
    try:
        # pre_buffer=False: with it, iter_batches caches every row group read so far (the whole file).
        return pq.ParquetFile(path, pre_buffer=False)
    except _PARQUET_ERRORS as e:
        raise BadInput(f"cannot be read as Parquet: {_first_line(e)}", path) from None


class _Rows:
    """Rows [start, stop) of one Parquet file, read front to back in record batches."""

    def __init__(self, path: Path, columns: list[str], declared: set[str]):
        self.path = path
        self.pf = _open_parquet(path)
        have = set(self.pf.schema_arrow.names)
        for c in columns:
            if c not in have and c in declared:
                raise BadInput("missing column (meta/info.json declares it)", path, c)
        self.columns = [c for c in columns if c in have]
        self._restart()

    def _restart(self) -> None:
        self.batches: list[tuple[int, pa.RecordBatch]] = []
        self.it = self.pf.iter_batches(batch_size=_BATCH_ROWS, columns=self.columns)
        self.read = 0

    def take(self, start: int, stop: int | None) -> pa.Table | None:
        """The rows, or None when the file ends first. Going backwards re-reads from the top."""
        if start < (self.batches[0][0] if self.batches else self.read):
            self._restart()
        self.batches = [(o, b) for o, b in self.batches if o + b.num_rows > start]
        try:
            while stop is None or self.read < stop:
                b = next(self.it, None)
                if b is None:
                    break
                self.batches.append((self.read, b))
                self.read += b.num_rows
        except _PARQUET_ERRORS as e:
            raise BadInput(f"cannot be read as Parquet: {_first_line(e)}", self.path) from None
        if stop is None:
            stop = self.read
        if self.read < stop:
            return None
        pieces = []
        for o, b in self.batches:
            lo, hi = max(start, o), min(stop, o + b.num_rows)
            if lo < hi:
                pieces.append(b.slice(lo - o, hi - lo))
        if not pieces:
            return pa.Table.from_batches([], schema=self.pf.schema_arrow.remove_metadata()).select(self.columns)
        return pa.Table.from_batches(pieces)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)


def _numbers(table: pa.Table, col: str, dim: int, file: Path, ep: int) -> np.ndarray:
    """A numeric column (scalars, or fixed- or variable-size lists) as float32 (N, dim)."""
    import pyarrow.compute as pc

    arr = table.column(col).combine_chunks()
    n = len(arr)
    if arr.null_count:
        t = int(np.flatnonzero(~np.asarray(arr.is_valid()))[0])
        raise BadInput(f"episode {ep} frame {t} is null", file, col)
    if _is_list(arr.type):
        if pa.types.is_fixed_size_list(arr.type):
            lengths = np.full(n, arr.type.list_size)
        else:
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        values = arr.flatten()
        nested = False
        while _is_list(values.type):  # 2-D features: check the total only
            values, nested = values.flatten(), True
        bad = np.flatnonzero(lengths != dim) if not nested else np.zeros(0, int)
        if bad.size:
            t = int(bad[0])
            raise BadInput(f"episode {ep} frame {t} has {int(lengths[t])} numbers, meta/info.json shape says {dim}",
                           file, col)
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
                or pa.types.is_boolean(values.type)):
            raise BadInput(f"holds {values.type}, not numbers", file, col)
        if values.null_count:
            raise BadInput(f"episode {ep} has null numbers", file, col)
        out = values.to_numpy(zero_copy_only=False).astype(np.float32)
        if out.size != n * dim:
            raise BadInput(f"episode {ep} has {out.size} numbers for {n} frames of {dim}", file, col)
        return out.reshape(n, dim)
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type):
        if dim != 1:
            raise BadInput(f"holds one number per frame, meta/info.json shape says {dim}", file, col)
        return arr.to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, 1)
    raise BadInput(f"holds {arr.type}, not numbers", file, col)


def _finite(a: np.ndarray, file: Path, col: str, ep: int) -> np.ndarray:
    bad = ~np.isfinite(a)
    if bad.any():
        t = int(np.argwhere(bad)[0][0])
        raise BadInput(f"episode {ep} frame {t} contains NaN or inf", file, col)
    return a


def _image_bytes(meta: _Meta, table: pa.Table, col: str, file: Path, ep: int) -> list[bytes]:
    arr = table.column(col).combine_chunks()
    if pa.types.is_struct(arr.type):
        names = [arr.type.field(i).name for i in range(arr.type.num_fields)]
        data = arr.field("bytes").to_pylist() if "bytes" in names else [None] * len(arr)
        paths = arr.field("path").to_pylist() if "path" in names else [None] * len(arr)
    elif pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        data, paths = arr.to_pylist(), [None] * len(arr)
    else:
        raise BadInput(f"holds {arr.type}, not images (struct of bytes and path)", file, col)
    out = []
    for t, (b, p) in enumerate(zip(data, paths)):
        if b is None and p:
            img = Path(p) if Path(p).is_absolute() else meta.root / p
            try:
                b = img.read_bytes()
            except OSError as e:
                raise BadInput(f"episode {ep} frame {t}: image file {p!r} cannot be read ({e.strerror})",
                               file, col) from None
        if b is None:
            raise BadInput(f"episode {ep} frame {t} has neither image bytes nor a path", file, col)
        out.append(b)
    return out


def decode_video(path: Path, times: np.ndarray, fps: float, size: tuple[int, int] | None, field: str,
                 ep: int) -> list[bytes]:
    """Frames of an mp4 nearest to `times` (seconds), within half a frame period, as PNG bytes."""
    import av

    if not path.is_file():
        raise BadInput(f"missing video file (episode {ep})", path, field)
    tol = max(0.5 / fps, 1e-4)
    lo, hi = float(times.min()) - tol, float(times.max()) + tol
    try:  # one colour converter for every frame (frame.to_ndarray builds a new one each call)
        from av.video.reformatter import VideoReformatter

        to_rgb = VideoReformatter().reformat
    except ImportError:  # pragma: no cover - older PyAV
        to_rgb = None
    ts, frames = [], []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BadInput("has no video stream", path, field)
            stream = container.streams.video[0]
            if lo > 0:
                container.seek(int(lo / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                t = frame.time
                if t is None or t < lo:
                    continue
                if t > hi:
                    break
                ts.append(t)
                frames.append(to_rgb(frame, format="rgb24").to_ndarray() if to_rgb else
                              frame.to_ndarray(format="rgb24"))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:  # damaged metadata strings raise the latter
        raise BadInput(f"cannot be decoded as video: {_first_line(e)}", path, field) from None
    if not ts:
        raise BadInput(f"episode {ep}: no video frame between {lo + tol:.3f} s and {hi - tol:.3f} s", path, field)
    ts_arr = np.asarray(ts)
    order = np.argsort(ts_arr, kind="stable")
    ts_arr = ts_arr[order]
    pos = np.clip(np.searchsorted(ts_arr, times), 1, len(ts_arr) - 1) if len(ts_arr) > 1 else np.zeros(len(times), int)
    if len(ts_arr) > 1:
        left_closer = np.abs(times - ts_arr[pos - 1]) <= np.abs(ts_arr[pos] - times)
        pos = np.where(left_closer, pos - 1, pos)
    miss = np.flatnonzero(np.abs(ts_arr[pos] - times) > tol)
    if miss.size:
        i = int(miss[0])
        raise BadInput(f"episode {ep} frame {i}: no video frame within {tol:.4f} s of {times[i]:.4f} s", path, field)
    picked = np.stack([frames[order[p]] for p in pos])
    return encode_frames(picked, size, compress_level=1)


# ---------------------------------------------------------------------------- reader

class LeRobotReader:
    name = "lerobot"
    reads = frozenset({'state_keys', 'images', 'image_size'})  # the ReadOptions it uses

    def detect(self, path: Path) -> bool:
        info = Path(path) / INFO
        if not info.is_file():
            return False
        try:
            d = json.loads(info.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        return isinstance(d, dict) and "codebase_version" in d and "features" in d

    def read(self, path: Path, options: ReadOptions) -> Source:
        root = Path(path)
        if not root.is_dir():
            raise BadInput("is not a LeRobotDataset folder (meta/, data/)", root)
        meta = _load_info(root)
        plan = _plan(meta, options)
        if plan.videos:
            try:
                import av  # noqa: F401
            except ImportError:
                raise BadInput("decoding video features needs PyAV: pip install 'aloe-cli[video]' "
                               "(or pass --images drop)", meta.info_path, next(iter(plan.videos))) from None
        episodes = _episodes_v2(meta, plan) if meta.version in V2 else _episodes_v3(meta, plan)
        tasks = _load_tasks(meta)
        src = Source(
            episodes=iter(()),
            fps=meta.fps,
            names=plan.names,
            info={"codebase_version": meta.version, "robot_type": meta.robot_type,
                  "state_keys": plan.state_keys, "video_keys": sorted(plan.videos),
                  "features_not_read": plan.not_read},
        )
        if plan.not_read:
            src.warnings.append(f"{plural(len(plan.not_read), 'feature')} not read (the store has no column for "
                                f"{'it' if len(plan.not_read) == 1 else 'them'}): {', '.join(plan.not_read)}")
        src.episodes = self._episodes(meta, plan, episodes, tasks, options, src.warnings)
        return src

    def _episodes(self, meta: _Meta, plan: _Plan, episodes: list[_Ep], tasks: dict[int, str],
                  options: ReadOptions, warnings: list[str]):
        rows: _Rows | None = None
        declared = set(meta.features)
        changes: list[str] = []  # per episode whose task changes: "episode 4: 'stack' -> 'unstack'"
        differ: list[str] = []  # per episode whose EP_SUCCESS and last next.success differ: "episode 2: false, ..."
        for ep in episodes:
            if rows is None or rows.path != ep.data_file:
                rows = _Rows(ep.data_file, plan.columns, declared)
            table = rows.take(ep.start, ep.stop)
            if table is None:
                raise BadInput(f"episode {ep.index} needs rows {ep.start}..{ep.stop - 1} of {ep.data_file}, "
                               f"which has {rows.read}", ep.meta_file, "dataset_to_index")
            yield _episode(meta, plan, ep, table, tasks, options, changes, differ)
        if changes:
            n = len(changes)
            warnings.append(f"{plural(n, 'episode')} change{'s' if n == 1 else ''} task within the episode "
                            f"({changes[0]}); each keeps its first frame's task")
        if differ:
            n = len(differ)
            where = EPISODES_DIR if meta.version in V3 else EPISODES_JSONL
            warnings.append(f"{EP_SUCCESS} in {where} differs from the last {SUCCESS} for {plural(n, 'episode')} "
                            f"({differ[0]}); the store keeps {EP_SUCCESS}")


def _task_change(table: pa.Table, tasks: dict[int, str], file: Path, ep: int) -> tuple[int | None, str | None]:
    """The episode's first frame's task_index, and where a later frame's differs, "a -> b" (the first other
    one; task texts where the tasks file gives them). Every frame's task_index must be in the tasks file."""
    ti = _numbers(table, TASK_INDEX, 1, file, ep)[:, 0].astype(np.float64)
    if not ti.size:
        return None, None
    bad = np.flatnonzero(~np.isfinite(ti) | (ti != np.round(ti)) | (~np.isin(ti, list(tasks)) if tasks else False))
    if bad.size:
        t = int(bad[0])
        why = "is not in the tasks file" if tasks else "is not an integer"
        raise BadInput(f"episode {ep} frame {t}: task_index {ti[t]:g} {why}", file, TASK_INDEX)
    first = int(ti[0])
    other = np.flatnonzero(ti != ti[0])
    if not other.size:
        return first, None
    then = int(ti[other[0]])
    if tasks:
        return first, f"{tasks[first]!r} -> {tasks[then]!r}"
    return first, f"task_index {first} -> {then}"


def _episode(meta: _Meta, plan: _Plan, ep: _Ep, table: pa.Table, tasks: dict[int, str],
             options: ReadOptions, changes: list[str], differ: list[str]) -> Episode:
    file, n = ep.data_file, table.num_rows
    if EPISODE_INDEX in table.column_names:
        found = _numbers(table, EPISODE_INDEX, 1, file, ep.index)[:, 0]
        wrong = np.flatnonzero(found != ep.index)
        if wrong.size:
            raise BadInput(f"row {ep.start + int(wrong[0])} belongs to episode {int(found[wrong[0]])}, "
                           f"but the metadata places episode {ep.index} there", file, EPISODE_INDEX)
    if ep.length is not None and n != ep.length:
        raise BadInput(f"episode {ep.index} says {ep.length} frames, but {file.name} has {n}",
                       ep.meta_file, "length")

    def nums(col: str) -> np.ndarray:
        return _numbers(table, col, plan.dims[col], file, ep.index)

    state = np.concatenate([_finite(nums(k), file, k, ep.index) for k in plan.state_keys], axis=1)
    action = _finite(nums(ACTION), file, ACTION, ep.index)
    extras = {k: _finite(nums(k), file, k, ep.index) for k in plan.extras if k in table.column_names}
    reward = success = interv = None
    if "reward" in plan.flags and plan.flags["reward"] in table.column_names:
        reward = _finite(nums(plan.flags["reward"]), file, plan.flags["reward"], ep.index)[:, 0]
    if "success" in plan.flags and plan.flags["success"] in table.column_names and n:
        success = bool(nums(plan.flags["success"])[-1, 0] != 0)
    if ep.success is not None:  # aloe's export's outcome, null where unknown (next.success cannot say so)
        if success is not None and success != ep.success:
            differ.append(f"episode {ep.index}: {str(ep.success).lower()}, {SUCCESS} {str(success).lower()}")
        success = ep.success
    if "intervention" in plan.flags and plan.flags["intervention"] in table.column_names:
        interv = nums(plan.flags["intervention"])[:, 0] != 0
    timestamp = None
    if TIMESTAMP in table.column_names:
        timestamp = _finite(_numbers(table, TIMESTAMP, 1, file, ep.index), file, TIMESTAMP, ep.index)[:, 0]
    task = ep.tasks[0] if ep.tasks else None
    if TASK_INDEX in table.column_names and n:
        first, change = _task_change(table, tasks, file, ep.index)
        if tasks:
            task = tasks[first]
        if change is not None:
            changes.append(f"episode {ep.index}: {change}")
    images = {}
    for k, col in plan.images.items():
        images[col] = jpeg_passthrough(_image_bytes(meta, table, k, file, ep.index), options.image_size, file, k)
    if plan.videos and n:
        times = timestamp.astype(np.float64) if timestamp is not None else np.arange(n) / meta.fps
        for k, col in plan.videos.items():
            mp4, offset = ep.videos[k]
            images[col] = decode_video(mp4, offset + times, meta.fps, options.image_size, k, ep.index)
    return Episode(state=state, action=action, source_key=f"episode_{ep.index:06d}", source_index=ep.index,
                   reward=reward, is_intervention=interv, success=success, task=task, timestamp=timestamp,
                   extras=extras, images=images, policy_id=ep.policy_id)


READER = LeRobotReader()
