"""Minari (Farama): ``<root>/<namespace>/<name>-v<N>/data/`` with ``metadata.json`` and the episodes.

Layout (Farama-Foundation/Minari minari/dataset/minari_storage.py, _storages/hdf5_storage.py,
_storages/arrow_storage.py):

- ``metadata.json``: ``dataset_id``, ``total_episodes``, ``total_steps``, ``data_format``
  (hdf5 | arrow | parquet), ``observation_space`` and ``action_space`` (JSON strings),
  ``env_spec``, ``minari_version``, ``jpeg_encoding`` (newer versions).
- hdf5: ``main_data.hdf5`` with a group ``episode_{id}`` per episode: attrs ``id``,
  ``total_steps``, ``seed``; datasets ``observations`` (T+1 rows: the last is the final
  observation), ``actions``, ``rewards``, ``terminations``, ``truncations`` (T rows); group
  ``infos/`` (T+1 rows). Dict spaces are subgroups, Tuple spaces subgroups ``_index_i``.
- arrow/parquet: a folder ``<id>/`` per episode (``part-0.arrow`` or ``part-0.parquet`` and
  ``metadata.json``); every column has T+1 rows, actions/rewards/terminations/truncations
  padded by one row; Dict spaces are struct columns.
- Image spaces (uint8 Box, at least 32x32, bounds 0..255) are JPEG bytes where
  ``jpeg_encoding`` is on (a variable-length uint8 dataset, or a binary column).

The state is the observation leaves (``--state-keys``, or all numeric non-image leaves in
sorted order) concatenated. Outcome: ``infos/success`` (or ``infos/is_success``) at the last
step where present; else success where the last step terminated with a positive reward;
else unknown.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..episode import Episode
from ..errors import BadInput
from . import ReadOptions, Source, iter_files, read_json_object
from . import _hdf5 as H
from ._images import encode_frames, jpeg_passthrough

METADATA = "metadata.json"
MAIN = "main_data.hdf5"
_EPISODE = re.compile(r"episode_(\d+)")
_SUCCESS_KEYS = ("success", "is_success")
_STEP_KEYS = ("rewards", "terminations", "truncations")


def _locate(path: Path) -> tuple[Path, Path | None]:
    """(data folder, metadata.json or None) for a dataset dir, its data/ dir, the hdf5 or metadata file."""
    if path.is_file():
        meta = path.parent / METADATA
        return path.parent, meta if meta.is_file() else None
    for d in (path, path / "data"):
        if (d / METADATA).is_file():
            return d, d / METADATA
    return path, None


def _load_metadata(meta: Path | None) -> dict:
    if meta is None:
        return {}
    return read_json_object(meta)


def _space(m: dict, key: str, meta: Path | None) -> dict | None:
    raw = m.get(key)
    if raw is None:
        return None
    try:
        space = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as e:
        raise BadInput(f"is not a serialised space: {H.reason(e)}", meta, key) from None
    if not isinstance(space, dict):
        raise BadInput("is not a serialised space", meta, key)
    return space


def _subspace(space: dict | None, parts: list[str]) -> dict | None:
    for p in parts:
        if not isinstance(space, dict):
            return None
        subs = space.get("subspaces")
        if space.get("type") == "Dict" and isinstance(subs, dict):
            space = subs.get(p)
        elif space.get("type") == "Tuple" and isinstance(subs, list):
            m = re.fullmatch(r"_index_(\d+)|(\d+)", p)
            i = int(m.group(1) or m.group(2)) if m else -1
            space = subs[i] if 0 <= i < len(subs) else None
        else:
            return None
    return space if isinstance(space, dict) else None


def _is_image_space(space: dict | None) -> bool | None:
    """Minari's is_image_space on a serialised space; None when the space is not known."""
    if space is None:
        return None
    shape = space.get("shape")
    if space.get("type") != "Box" or not isinstance(shape, list) or len(shape) not in (2, 3) or \
            not all(isinstance(d, int) for d in shape):
        return False
    try:
        low, high = np.asarray(space.get("low"), dtype=float), np.asarray(space.get("high"), dtype=float)
    except (TypeError, ValueError):
        return False
    return (space.get("dtype") == "uint8" and shape[0] >= 32 and shape[1] >= 32
            and bool(np.all(low == 0)) and bool(np.all(high == 255)))


class Leaf:
    """One observation array: its key path, per-frame shape, dtype and how it is stored."""

    def __init__(self, key: str, frame_shape: tuple, dtype: np.dtype, jpeg: bool, image: bool):
        self.key, self.frame_shape, self.dtype, self.jpeg, self.image = key, frame_shape, dtype, jpeg, image

    @property
    def numeric(self) -> bool:
        return not self.image and self.dtype.kind in "biuf" and self.width > 0

    @property
    def width(self) -> int:
        return int(np.prod(self.frame_shape, dtype=np.int64))


def _classify(key: str, frame_shape: tuple, dtype: np.dtype, space: dict | None) -> Leaf:
    """Is a fixed-shape leaf a camera stream (raw pixels, or JPEG bytes padded to one length)?"""
    image = _is_image_space(space)
    if image and (dtype.kind == "S" or (dtype == np.uint8 and len(frame_shape) == 1)):
        return Leaf(key, frame_shape, dtype, jpeg=True, image=True)
    if image is None:  # no space: Minari's rule on the data itself
        image = dtype == np.uint8 and len(frame_shape) in (2, 3) and min(frame_shape[:2]) >= 32
    return Leaf(key, frame_shape, dtype, jpeg=False, image=bool(image))


def dim_names(key: str, width: int) -> list[str]:
    return [key] if width == 1 else [f"{key}_{i}" for i in range(width)]


class MinariReader:
    name = "minari"
    reads = frozenset({'state_keys', 'images', 'image_size'})  # the ReadOptions it uses

    def detect(self, path: Path) -> bool:
        if path.is_file():
            if path.name != MAIN:
                return False
            data, meta = _locate(path)
            if meta is None:
                return H.is_hdf5(path)
        else:
            data, meta = _locate(path)
            if meta is None:
                return False
        try:
            m = json.loads(meta.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        return isinstance(m, dict) and "data_format" in m

    def source_files(self, path: Path) -> list[Path]:
        """The files whose bytes make up the dataset `path` names, for ingest's content hash: whether `path`
        is the dataset folder, its data/ folder or main_data.hdf5, they include the metadata.json that says
        how to read the episodes (the data format, the observation space, the task), so a change to it is
        noticed. A folder: every file under it. A file: the file, the metadata.json beside it and, where
        that names the arrow or parquet format, the episode folders beside it too (what read() reads)."""
        path = Path(path)
        if path.is_dir():
            return sorted(p for p in path.rglob("*") if p.is_file())
        data, meta = _locate(path)
        if meta is None:
            return [path]
        try:
            fmt = json.loads(meta.read_text()).get("data_format", "hdf5")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):  # read() says what is wrong
            fmt = "hdf5"
        if fmt == "hdf5":
            return sorted({path, meta})
        return sorted({path} | {p for p in data.rglob("*") if p.is_file()})

    def read(self, path: Path, options: ReadOptions) -> Source:
        data, meta = _locate(path)
        if meta is None and not path.is_file():
            raise BadInput(f"no {METADATA} here or under data/", path)
        m = _load_metadata(meta)
        fmt = m.get("data_format", "hdf5")
        obs_space = _space(m, "observation_space", meta)
        task = m.get("dataset_id") if isinstance(m.get("dataset_id"), str) else None
        if fmt == "hdf5":
            backend = _HDF5(path if path.is_file() else data / MAIN, obs_space)
        elif fmt in ("arrow", "parquet"):
            backend = _Arrow(data, fmt, obs_space)
        else:
            raise BadInput(f"{fmt!r} is not a Minari storage format (hdf5, arrow, parquet)", meta, "data_format")
        leaves, first = backend.layout()
        state_keys = _state_keys(leaves, options, backend.source, first)
        widths = {k: leaves[k].width for k in state_keys}
        image_keys = [k for k, leaf in leaves.items() if leaf.image] if options.images == "keep" else []
        names = [n for k in state_keys for n in dim_names(k, widths[k])]
        info = {"state_keys": state_keys}
        if image_keys:
            info["image_keys"] = image_keys
        episodes = (_episode(raw, leaves, state_keys, image_keys, options)
                    for raw in backend.episodes(state_keys + image_keys))
        return Source(episodes=episodes, fps=None, names={"observation.state": names}, info=info, task=task)


def _state_keys(leaves: dict[str, Leaf], options: ReadOptions, source: Path, first: str) -> list[str]:
    where = f"{first}/observations"
    if options.state_keys:
        keys = list(options.state_keys)
        for k in keys:
            if k not in leaves:
                raise BadInput(f"no such observation key (have: {', '.join(leaves) or 'none'})", source,
                               f"{where}/{k}")
            if leaves[k].image:
                raise BadInput(f"is a camera stream, not a state vector; it is stored as "
                               f"observation.images.{_column(k)}", source, f"{where}/{k}")
            if not leaves[k].numeric:
                what = f"dtype {leaves[k].dtype}" if leaves[k].width else "no numbers per frame"
                raise BadInput(f"is not numeric ({what})", source, f"{where}/{k}")
        if len(set(keys)) != len(keys):
            raise BadInput(f"lists a key twice: {','.join(keys)}", field="--state-keys")
        return keys
    keys = sorted((k for k, leaf in leaves.items() if leaf.numeric), key=H.natural_key)
    if not keys:
        raise BadInput("no numeric (non-image) observation to make the state", source, where)
    return keys


def _column(key: str) -> str:
    return key.replace("/", ".")


def _field(raw: dict, name: str) -> str:
    """A field path inside the source: ``episode_3/actions`` (hdf5) or ``actions`` (an arrow episode folder)."""
    return f"{raw['where']}/{name}" if raw["where"] else name


def _steps(raw: dict) -> None:
    """Check actions, rewards, terminations, truncations (T rows each); set raw["T"]."""
    src = raw["source"]
    field = _field(raw, "actions")
    a = H.numeric(np.asarray(raw["actions"]), src, field)
    if a.ndim == 0:
        raise BadInput("expected (T, A), got a scalar", src, field)
    a = H.rows(a)
    T = a.shape[0]
    if T == 0:
        raise BadInput("episode is empty (0 frames)", src, field)
    if a.shape[1] == 0:
        raise BadInput(f"has no numbers per step (shape {np.shape(raw['actions'])})", src, field)
    H.check_finite(a, src, field)
    raw["actions"], raw["T"] = a, T
    for key in _STEP_KEYS:
        field = _field(raw, key)
        v = H.rows(H.frames(np.asarray(raw[key]), T, src, field))
        if v.shape[1] != 1:
            raise BadInput(f"expected one value per step, got shape {v.shape}", src, field)
        raw[key] = v[:, 0]


def _episode(raw: dict, leaves: dict[str, Leaf], state_keys, image_keys, options: ReadOptions) -> Episode:
    """Raw arrays of one episode (observations with T+1 rows) -> Episode with T frames."""
    _steps(raw)
    src, T = raw["source"], raw["T"]

    def obs_field(k: str) -> str:
        return _field(raw, "observations" if raw["flat_obs"] else f"observations/{k}")

    parts = []
    for k in state_keys:
        field = obs_field(k)
        a = H.rows(H.numeric(_obs_rows(raw["obs"][k], T, src, field), src, field))[:T]
        if a.shape[1] != leaves[k].width:
            raise BadInput(f"has {a.shape[1]} numbers per frame but the first episode has {leaves[k].width}",
                           src, field)
        H.check_finite(a, src, field)
        parts.append(a)
    images = {}
    for k in image_keys:
        images[f"observation.images.{_column(k)}"] = _image_frames(raw["obs"][k], leaves[k], T, src, obs_field(k),
                                                                   options)
    reward, term = raw["rewards"], raw["terminations"]
    success = None
    if raw["success"] is not None:
        field = _field(raw, raw["success_key"])
        s = H.numeric(np.asarray(raw["success"]).reshape(-1), src, field)
        if s.size == 0:
            raise BadInput("is empty", src, field)
        H.check_finite(s, src, field)
        success = bool(s[-1])
    elif bool(term[-1]) and reward[-1] > 0:
        success = True
    return Episode(state=np.concatenate(parts, axis=1), action=raw["actions"], source_key=raw["key"],
                   source_index=raw["id"], reward=reward, success=success, images=images)


def _obs_rows(a, T: int, src: Path, field: str):
    n = len(a) if not isinstance(a, np.ndarray) or a.ndim else 0
    if n != T + 1:
        hint = "; Minari stores T+1 observations (the last is the final observation)" if n == T else ""
        raise BadInput(f"has {n} rows but actions has {T}{hint}", src, field)
    return a


def _image_frames(a, leaf: Leaf, T: int, src: Path, field: str, options: ReadOptions) -> list[bytes]:
    a = _obs_rows(a, T, src, field)
    if leaf.jpeg:
        frames = []
        for t, x in enumerate(list(a)[:T]):
            if isinstance(x, (bytes, np.bytes_)):
                b = bytes(x)
            elif isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 1:
                b = x.tobytes()
            else:
                raise BadInput(f"frame {t} is not JPEG bytes", src, field)
            if not b.startswith(b"\xff\xd8"):
                raise BadInput(f"frame {t} is not a JPEG image", src, field)
            frames.append(b)
        return jpeg_passthrough(frames, options.image_size, src, field)
    arr = np.asarray(a)
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or 0 in arr.shape[1:3] or (
            arr.ndim == 4 and arr.shape[-1] not in (1, 3, 4)):
        raise BadInput(f"expected uint8 (T+1, H, W, C) frames, got {arr.dtype} {arr.shape}", src, field)
    arr = arr[:T]
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return encode_frames(arr, options.image_size)


# ---------------------------------------------------------------------------- HDF5 backend

class _HDF5:
    """``main_data.hdf5``: one group ``episode_{id}`` per episode."""

    def __init__(self, file: Path, obs_space: dict | None):
        self.source = file
        self.obs_space = obs_space
        if not file.is_file():
            raise BadInput("missing (data_format is hdf5)", file)

    def _episode_names(self, f) -> list[str]:
        names = [k for k in H.keys(f, self.source, "/") if _EPISODE.fullmatch(k)]
        if not names:
            raise BadInput("has no episode_{id} groups", self.source)
        return names

    def _leaves(self, node, prefix: str, field: str, out: dict, space: dict | None) -> None:
        import h5py

        if isinstance(node, h5py.Dataset):
            with H.guard(self.source, field):
                shape, dtype = node.shape, node.dtype
                vlen = h5py.check_vlen_dtype(dtype)
            if not shape:
                raise BadInput("expected one row per step, got a scalar", self.source, field)
            key = prefix or "observations"
            sub = _subspace(space, prefix.split("/")) if prefix else space
            if vlen is not None:  # variable-length rows: JPEG bytes (uint8) or text (str/bytes)
                jpeg = isinstance(vlen, np.dtype) and vlen == np.uint8
                out[key] = Leaf(key, tuple(shape[1:]), np.dtype(object), jpeg=jpeg, image=jpeg)
            else:
                out[key] = _classify(key, tuple(shape[1:]), dtype, sub)
            return
        for k in H.keys(node, self.source, field):
            child = H.get(node, k, self.source, f"{field}/{k}")
            self._leaves(child, f"{prefix}/{k}" if prefix else k, f"{field}/{k}", out, space)

    def layout(self) -> tuple[dict[str, Leaf], str]:
        with H.open_file(self.source) as f:
            first = self._episode_names(f)[0]
            g = H.get(f, first, self.source, first, "group")
            obs = H.get(g, "observations", self.source, f"{first}/observations")
            leaves: dict[str, Leaf] = {}
            self._leaves(obs, "", f"{first}/observations", leaves, self.obs_space)
        return leaves, first

    def episodes(self, keys: list[str]):
        import h5py

        src = self.source
        with H.open_file(src) as f:
            for name in self._episode_names(f):
                g = H.get(f, name, src, name, "group")
                raw = {"source": src, "where": name, "key": name, "id": int(_EPISODE.fullmatch(name).group(1))}
                acts = H.get(g, "actions", src, f"{name}/actions")
                raw["actions"] = self._flat(acts, f"{name}/actions") if isinstance(acts, h5py.Group) \
                    else H.read(acts, src, f"{name}/actions")
                for key in _STEP_KEYS:
                    raw[key] = H.dataset(g, key, src, f"{name}/{key}")
                obs = H.get(g, "observations", src, f"{name}/observations")
                raw["flat_obs"] = isinstance(obs, h5py.Dataset)
                raw["obs"] = {}
                for k in keys:
                    if raw["flat_obs"]:
                        if k != "observations":
                            raise BadInput(f"is one array, but the first episode's observations have key {k!r}",
                                           src, f"{name}/observations")
                        raw["obs"][k] = H.read(obs, src, f"{name}/observations")
                    else:
                        raw["obs"][k] = H.dataset(obs, k, src, f"{name}/observations/{k}")
                raw["success"] = None
                infos = H.get(g, "infos", src, f"{name}/infos", required=False)
                if isinstance(infos, h5py.Group):
                    for key in _SUCCESS_KEYS:
                        field = f"{name}/infos/{key}"
                        ds = H.get(infos, key, src, field, "dataset", required=False)
                        if ds is not None:
                            raw["success"], raw["success_key"] = H.read(ds, src, field), f"infos/{key}"
                            break
                yield raw

    def _flat(self, group, field: str) -> np.ndarray:
        """A Dict/Tuple action group flattened by sorted key into (T, A)."""
        leaves: dict[str, Leaf] = {}
        self._leaves(group, "", field, leaves, None)
        parts = []
        for k in sorted(leaves, key=H.natural_key):
            a = H.numeric(H.dataset(group, k, self.source, f"{field}/{k}"), self.source, f"{field}/{k}")
            if a.ndim == 0:
                raise BadInput("expected one row per step, got a scalar", self.source, f"{field}/{k}")
            parts.append(H.rows(a))
        if len({p.shape[0] for p in parts}) != 1:
            raise BadInput(f"action keys have different lengths {sorted({p.shape[0] for p in parts})}",
                           self.source, field)
        return np.concatenate(parts, axis=1)


# ---------------------------------------------------------------------------- arrow/parquet backend

_ARROW_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, MemoryError)


class _Arrow:
    """``data/<id>/part-*.{arrow,parquet}``: one folder per episode, T+1 rows in every column."""

    def __init__(self, data: Path, fmt: str, obs_space: dict | None):
        self.data, self.fmt, self.obs_space = data, fmt, obs_space
        self.source = data
        self.dirs = sorted((p for p in data.iterdir() if p.is_dir() and p.name.isdigit()),
                           key=lambda p: int(p.name)) if data.is_dir() else []
        if not self.dirs:
            raise BadInput(f"has no episode folders <id>/ (data_format is {fmt})", data)

    def _table(self, d: Path):
        import pyarrow as pa
        import pyarrow.feather as feather
        import pyarrow.parquet as pq

        files = iter_files(d, f"*.{self.fmt}")
        if not files:
            raise BadInput(f"has no .{self.fmt} files", d)
        try:
            tables = [feather.read_table(p) if self.fmt == "arrow" else pq.read_table(p) for p in files]
            table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            table.schema.names, table.column_names  # noqa: B018 - names are decoded lazily and may be corrupt
            return table
        except (pa.ArrowException, *_ARROW_ERRORS) as e:
            raise BadInput(f"cannot be read: {H.reason(e)}", files[0]) from None

    def _column(self, table, name: str, d: Path):
        import pyarrow as pa

        if name not in table.column_names:
            raise BadInput("missing column", d, name)
        try:
            return table.column(name).combine_chunks()
        except (pa.ArrowException, *_ARROW_ERRORS) as e:
            raise BadInput(f"cannot be read: {H.reason(e)}", d, name) from None

    def _leaves(self, col, prefix: str, space: dict | None, out: dict) -> None:
        """Struct columns (Dict/Tuple spaces) -> {key path: (leaf column, its space)}."""
        import pyarrow as pa

        if pa.types.is_struct(col.type):
            for i in range(col.type.num_fields):
                name = col.type.field(i).name
                self._leaves(col.field(i), f"{prefix}/{name}" if prefix else name, _subspace(space, [name]), out)
            return
        out[prefix or "observations"] = (col, space)

    def _leaf(self, key: str, col, space: dict | None, d: Path) -> Leaf:
        import pyarrow as pa

        if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
            return Leaf(key, (), np.dtype(object), jpeg=True, image=True)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)
                or pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type)
                or pa.types.is_large_list(col.type)):
            return Leaf(key, (), np.dtype(object), jpeg=False, image=False)  # text and the like: not state
        arr = _arrow_numpy(col, space, d, f"observations/{key}")
        return _classify(key, tuple(arr.shape[1:]), arr.dtype, space)

    def layout(self):
        d = self.dirs[0]
        cols: dict = {}
        self._leaves(self._column(self._table(d), "observations", d), "", self.obs_space, cols)
        return {k: self._leaf(k, c, s, d) for k, (c, s) in cols.items()}, d.name

    def episodes(self, keys: list[str]):
        import pyarrow as pa

        for d in self.dirs:
            table = self._table(d)
            raw = {"source": d, "where": "", "key": f"episode_{d.name}", "id": int(d.name), "flat_obs": False}
            for key in ("actions", *_STEP_KEYS):
                col = self._column(table, key, d)
                if pa.types.is_struct(col.type):
                    sub: dict = {}
                    self._leaves(col, "", None, sub)
                    parts = [_arrow_numpy(c, None, d, f"{key}/{k}")
                             for k, (c, _) in sorted(sub.items(), key=lambda kv: H.natural_key(kv[0]))]
                    if len({p.shape[0] for p in parts}) != 1:
                        raise BadInput("action keys have different lengths", d, key)
                    a = np.concatenate([H.rows(p) for p in parts], axis=1)
                else:
                    a = _arrow_numpy(col, None, d, key)
                raw[key] = a[:-1]  # Minari pads these columns to T+1 rows
            cols: dict = {}
            self._leaves(self._column(table, "observations", d), "", self.obs_space, cols)
            raw["obs"] = {}
            for k in keys:
                if k not in cols:
                    raise BadInput("missing observation key (the first episode has it)", d, f"observations/{k}")
                col, space = cols[k]
                if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
                    raw["obs"][k] = col.to_pylist()
                else:
                    raw["obs"][k] = _arrow_numpy(col, space, d, f"observations/{k}")
            raw["success"] = None
            if "infos" in table.column_names:
                infos = self._column(table, "infos", d)
                if pa.types.is_struct(infos.type):
                    for key in _SUCCESS_KEYS:
                        idx = infos.type.get_field_index(key)
                        if idx >= 0:
                            raw["success"] = _arrow_numpy(infos.field(idx), None, d, f"infos/{key}")
                            raw["success_key"] = f"infos/{key}"
                            break
            yield raw


def _arrow_numpy(col, space: dict | None, src: Path, field: str) -> np.ndarray:
    """A column as numpy: fixed/variable lists stacked to (N, k), reshaped by the space's shape."""
    import pyarrow as pa

    try:
        if col.null_count:
            raise BadInput(f"has {col.null_count} null rows", src, field)
        t = col.type
        if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
            if pa.types.is_struct(t) or pa.types.is_binary(t) or pa.types.is_string(t):
                raise BadInput(f"expected numbers, got {t}", src, field)
            return np.asarray(col.to_numpy(zero_copy_only=False))
        flat = col.flatten()
        if flat.null_count:
            raise BadInput("has null values", src, field)
        n = len(col)
        values = np.asarray(flat.to_numpy(zero_copy_only=False))
        if values.ndim != 1:
            raise BadInput(f"expected numbers, got {t}", src, field)
        if n == 0 or values.size % n:
            raise BadInput("rows have different lengths" if n else "has no rows", src, field)
        arr = values.reshape(n, values.size // n)
        shape = space.get("shape") if isinstance(space, dict) else None
        if isinstance(shape, list) and all(isinstance(v, int) for v in shape) and \
                int(np.prod(shape)) == arr.shape[1]:
            arr = arr.reshape(n, *shape)
        return arr
    except BadInput:
        raise
    except (pa.ArrowException, *_ARROW_ERRORS) as e:
        raise BadInput(f"cannot be read: {H.reason(e)}", src, field) from None


READER = MinariReader()
