"""The episode store: a directory of Parquet files plus a JSON manifest.

Layout (a public contract, documented in the README)::

    STORE/aloe.json          manifest: format version, fps, features, ingest history
    STORE/episodes.parquet   one row per episode
    STORE/frames/part-*.parquet   frames; one file per ingest, one row group per episode

Writes are atomic. A writer stages new frame files under ``STORE/.staging/``, then writes
a journal (``.aloe-txn.json``, by rename: the commit point) naming every rename and
deletion, then carries it out and removes the journal. A crash before the journal leaves
the store as before (the staging folder is swept later); a crash after it is rolled
forward by the next open. One writer at a time (``fcntl`` lock on ``.aloe.lock``).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import schema as S
from .episode import Episode, first_non_finite
from .errors import BadInput, StoreBusy, StoreError, is_count


WRITE_WAIT_S = 10.0  # how long a writer waits for another's commit before giving up (StoreBusy)
READ_BATCH_BYTES = 64 << 20  # episodes in consecutive row groups of one frames file are read together, up to this


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _crashpoint(name: str) -> None:
    """Fault injection for the atomicity tests: ALOE_CRASH_AT=<name> kills the process here."""
    if os.environ.get("ALOE_CRASH_AT") == name:
        os._exit(137)


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def vectors(arr: pa.Array | pa.ChunkedArray, dim: int | None = None) -> np.ndarray:
    """A (fixed- or variable-size) list column as a float32 (N, dim) array; null rows become NaN."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    n = len(arr)
    if pa.types.is_fixed_size_list(arr.type):
        dim = arr.type.list_size
    if arr.null_count:
        valid = np.asarray(arr.is_valid())
        out = np.full((n, dim or 0), np.nan, dtype=np.float32)
        if valid.any():
            out[valid] = vectors(arr.filter(pa.array(valid)), dim)
        return out
    flat = np.asarray(arr.flatten(), dtype=np.float32)
    if dim is None:
        dim = flat.size // max(n, 1)
    return flat.reshape(n, dim)


@dataclass
class FrameArrays:
    """Selected frame columns of many episodes, concatenated in store order."""

    episode_ids: list[str]
    starts: np.ndarray  # (E,) first frame of each episode in the concatenated arrays
    lengths: np.ndarray  # (E,)
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.lengths.sum())

    def episode_of_frame(self) -> np.ndarray:
        """(N,) index of the episode each frame belongs to."""
        return np.repeat(np.arange(len(self.lengths)), self.lengths)


@dataclass
class IngestResult:
    store: str
    source: str
    format: str
    ingest_id: str | None
    added: list[str]
    duplicates: int = 0
    replaced: int = 0
    relabelled: int = 0  # episodes already in the store given this ingest's labels (--force)
    skipped_unchanged: bool = False
    dropped_columns: list[str] = field(default_factory=list)
    frames: int = 0
    warnings: list[str] = field(default_factory=list)  # the reader's (Source.warnings), one line each

    def to_dict(self) -> dict:
        return {
            "store": self.store,
            "source": self.source,
            "format": self.format,
            "ingest_id": self.ingest_id,
            "episodes_added": len(self.added),
            "frames_added": self.frames,
            "duplicates_skipped": self.duplicates,
            "episodes_replaced": self.replaced,
            "episodes_relabelled": self.relabelled,
            "unchanged": self.skipped_unchanged,
            "dropped_columns": self.dropped_columns,
            "warnings": self.warnings,
        }


# Entries of a store directory that are the store's own machinery, not content.
_INTERNAL = frozenset({S.STAGING_DIR, S.LOCK_FILE, S.TXN_FILE, S.TXN_FILE + ".tmp"})


def _read_manifest(root: Path) -> dict | None:
    """STORE/aloe.json, checked; None when there is none."""
    path = root / S.MANIFEST_FILE
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"cannot be parsed: {e}", path) from None
    _check_manifest(manifest, path)
    return manifest


def _check_manifest(m, path: Path) -> None:
    """Raise StoreError naming the field when aloe.json's content is not a manifest this aloe can use."""
    if not isinstance(m, dict):
        raise StoreError(f"expected a JSON object, got {type(m).__name__}", path)
    version = m.get("format_version")
    if not is_count(version):
        raise StoreError("missing or not a positive integer", path, "format_version")
    if version > S.FORMAT_VERSION:
        raise StoreError(
            f"store format {version} is newer than this aloe understands ({S.FORMAT_VERSION}); upgrade aloe",
            path, "format_version")
    for key in ("features", "ingests"):
        if key not in m:
            raise StoreError("missing", path, key)
    fps = m.get("fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float))
                            or not np.isfinite(fps) or fps <= 0):
        raise StoreError(f"expected a positive number or null, got {fps!r}", path, "fps")
    if not isinstance(m["ingests"], list) or not all(isinstance(i, dict) for i in m["ingests"]):
        raise StoreError("expected a list of objects", path, "ingests")
    features = m["features"]
    if not isinstance(features, dict):
        raise StoreError(f"expected an object, got {type(features).__name__}", path, "features")
    for name in (S.OBS_STATE, S.ACTION):
        if name not in features:
            raise StoreError("missing", path, f"features.{name}")
    for name, f in features.items():
        where = f"features.{name}"
        if not isinstance(f, dict) or not isinstance(f.get("dtype"), str):
            raise StoreError("expected an object with a dtype", path, where)
        shape = f.get("shape")
        if f["dtype"] == "image" and shape is None:
            continue
        minimum = 1 if name in (S.OBS_STATE, S.ACTION) or f["dtype"] == "image" else 0
        if not isinstance(shape, list) or not shape or not all(is_count(d, minimum) for d in shape):
            raise StoreError(f"expected a list of {'positive' if minimum else 'non-negative'} integers, "
                             f"got {shape!r}", path, f"{where}.shape")


def _episodes_frame(table: pa.Table, path: Path) -> pd.DataFrame:
    """episodes.parquet as a DataFrame, once its columns, types, missing values and ids are checked."""
    for f in S.EPISODES_SCHEMA:
        if f.name not in table.column_names:
            raise StoreError("missing column", path, f.name)
        col = table.column(f.name)
        if col.type != f.type:
            try:
                col = col.cast(f.type)
            except pa.ArrowException:
                raise StoreError(f"expected {f.type} values, got {col.type}", path, f.name) from None
            table = table.set_column(table.column_names.index(f.name), f.name, col)
        if not f.nullable and col.null_count:
            row = int(np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))[0])
            raise StoreError(f"missing value (first in row {row})", path, f.name)
    df = table.to_pandas()
    for name in (S.LENGTH, S.ROW_GROUP):
        negative = np.flatnonzero(df[name].to_numpy() < 0)
        if len(negative):
            raise StoreError(f"negative value {df[name].iloc[negative[0]]} in row {negative[0]}", path, name)
    dup = df[S.EPISODE_ID].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        eid = df[S.EPISODE_ID].iloc[row]
        first = int(np.flatnonzero((df[S.EPISODE_ID] == eid).to_numpy())[0])
        raise StoreError(f"episode id {eid!r} appears more than once (rows {first} and {row})", path, S.EPISODE_ID)
    return df


# The frame columns every frames file has (the first columns of S.frames_schema).
_BASE_FRAME_COLUMNS = S.frames_schema(1, 1).names


def _leaves_of(md: pq.FileMetaData, columns: list[str] | None) -> list[int]:
    """The Parquet leaf columns of `columns` (vector column `c` is the leaf `c.list.element`); None: all."""
    paths = [md.schema.column(k).path for k in range(md.num_columns)]
    return [k for k, p in enumerate(paths)
            if columns is None or any(p == c or p.startswith(c + ".") for c in columns)]


def ids_fingerprint(episodes: pd.DataFrame) -> str:
    """sha256 (16 hex digits) of an episodes table's ids in order: `Store.fingerprint`. Commits append
    rows (`ingest --force` drops the rows it replaces and appends their successors), so the store's
    first n rows hash to the store's fingerprint when it had n, unless a --force dropped one since."""
    h = hashlib.sha256()
    for eid in episodes[S.EPISODE_ID]:
        h.update(eid.encode())
    return h.hexdigest()[:16]


def labels_fingerprint(episodes: pd.DataFrame) -> str:
    """sha256 (16 hex digits) of an episodes table's outcome labels (`S.LABEL_COLUMNS`), row by row."""
    h = hashlib.sha256()
    for row in episodes[list(S.LABEL_COLUMNS)].itertuples(index=False):
        h.update(repr(tuple(None if pd.isna(v) else v for v in row)).encode())  # itertuples: Python scalars
    return h.hexdigest()[:16]


def _check_finite(a: np.ndarray, valid: np.ndarray | None, path: Path, which: str, name: str) -> None:
    """Raise StoreError when a loaded float column holds NaN or inf (null rows, where `valid` is False, may)."""
    idx = first_non_finite(a, valid)
    if idx is not None:
        raise StoreError(f"{which} contains NaN or inf (first at index {idx})", path, name)


class Store:
    """An episode store on disk. Open with `Store.open(path)`; write with `store.writer(...)`."""

    def __init__(self, root: Path, manifest: dict | None):
        self.root = Path(root)
        self.manifest = manifest
        self._episodes: pd.DataFrame | None = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, root: str | os.PathLike, create: bool = False) -> "Store":
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise StoreError("is not a directory", root)
        if (root / S.TXN_FILE).exists():
            with _Lock(root, WRITE_WAIT_S):  # a writer may be carrying its journal out right now
                _roll_forward(root)
        manifest = _read_manifest(root)
        if manifest is None:
            if create:
                above = next(p for p in (root.absolute(), *root.absolute().parents) if p.exists())
                if not above.is_dir():  # found now, not when the first commit (after a robot's episode) fails
                    raise StoreError(f"cannot be created: {above} is not a directory", root)
                if root.exists() and any(p.name not in _INTERNAL for p in root.iterdir()):
                    raise StoreError(f"is not empty and is not an aloe store (no {S.MANIFEST_FILE}); "
                                     "choose a new or empty directory", root)
                from .outdirs import check_new_store

                check_new_store(root)
                return cls(root, None)
            if root.exists() and any(root.iterdir()):
                raise StoreError(f"is not an aloe store (no {S.MANIFEST_FILE})", root)
            raise StoreError("store does not exist (run `aloe ingest` or `aloe rollout` first)", root)
        return cls(root, manifest)

    def _reload(self) -> None:
        """Read the store again as it is on disk; a writer does once it holds the lock, because another
        process may have committed (an ingest, a compaction) since this Store was opened."""
        _roll_forward(self.root)
        self.manifest = _read_manifest(self.root)
        self._episodes = None

    @property
    def exists(self) -> bool:
        return self.manifest is not None

    # ------------------------------------------------------------------ metadata
    @property
    def features(self) -> dict:
        return (self.manifest or {}).get("features", {})

    @property
    def fps(self) -> float | None:
        return (self.manifest or {}).get("fps")

    @property
    def state_dim(self) -> int:
        return int(self.features[S.OBS_STATE]["shape"][0])

    @property
    def action_dim(self) -> int:
        return int(self.features[S.ACTION]["shape"][0])

    @property
    def extra_columns(self) -> dict[str, int]:
        return {k: int(v["shape"][0]) for k, v in self.features.items()
                if k.startswith(S.OBS_PREFIX) and k != S.OBS_STATE and v.get("dtype") != "image"}

    @property
    def image_columns(self) -> list[str]:
        return sorted(k for k, v in self.features.items() if v.get("dtype") == "image")

    @property
    def fingerprint(self) -> str:
        """Identifies the store's content: a hash of its episode ids in order."""
        return ids_fingerprint(self.episodes)

    @property
    def labels_fingerprint(self) -> str:
        """Identifies the episodes' outcome labels (success, terminated, truncated, policy_id), which the
        critic's rewards and its policy split come from: `ingest --force --labels` changes them, not the ids."""
        return labels_fingerprint(self.episodes)

    @property
    def episodes(self) -> pd.DataFrame:
        if self._episodes is None:
            path = self.root / S.EPISODES_FILE
            if self.manifest is not None and not path.exists() and self.manifest["ingests"]:
                raise StoreError(f"missing, but {S.MANIFEST_FILE} lists {len(self.manifest['ingests'])} ingests",
                                 path)
            if self.manifest is None or not path.exists():
                self._episodes = S.EPISODES_SCHEMA.empty_table().to_pandas()
            else:
                try:
                    table = pq.read_table(path)
                except (OSError, pa.ArrowException) as e:
                    raise StoreError(f"cannot be read: {e}", path) from None
                self._episodes = _episodes_frame(table, path)
        return self._episodes

    # ------------------------------------------------------------------ reading
    def _frames_file(self, rel: str) -> pq.ParquetFile:
        path = self.root / rel
        try:
            return pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as e:
            raise StoreError(f"cannot be read: {e}", path) from None

    def _select(self, episode_ids: Iterable[str] | None) -> pd.DataFrame:
        eps = self.episodes
        if episode_ids is None:
            return eps
        wanted = list(episode_ids)
        index = {e: i for i, e in enumerate(eps[S.EPISODE_ID])}
        missing = [e for e in wanted if e not in index]
        if missing:
            raise BadInput(f"unknown episode id {missing[0]!r}", self.root, S.EPISODE_ID)
        return eps.iloc[[index[e] for e in wanted]]

    def _read_runs(self, rows: pd.DataFrame, columns: list[str] | None) -> Iterator[tuple[Path, int, int, pa.Table]]:
        """Read the frames of `rows` in runs: (frames file, first row, end row, table of those rows' frames).

        A run is rows whose episodes lie in consecutive row groups of one file, read in one call up to
        about `READ_BATCH_BYTES` of the columns read (a compacted store reads in a few calls, not one per
        episode; camera frames not asked for do not shorten the runs). A row group past the file's end,
        or whose frame count is not the episode's `length`, is refused, naming the frames file. One
        frames file is open at a time: a store fed by rollouts holds a file per episode, more than a
        process may have open (`ulimit -n`)."""
        needed = columns if columns is not None else _BASE_FRAME_COLUMNS
        files = rows[S.FRAMES_FILE].to_numpy(copy=True)  # _follow_rewrite updates these two in place
        groups = rows[S.ROW_GROUP].to_numpy(dtype=np.int64, copy=True)
        lengths = rows[S.LENGTH].to_numpy(dtype=np.int64)
        ids = rows[S.EPISODE_ID].to_numpy()
        rel, f, i = None, None, 0
        try:
            while i < len(rows):
                if files[i] != rel:
                    if f is not None:
                        f.close()
                        f = None
                    try:
                        f = self._frames_file(files[i])
                    except StoreError:
                        if (self.root / files[i]).exists():
                            raise
                        self._follow_rewrite(ids[i:], files[i:], groups[i:])
                        f = self._frames_file(files[i])
                    rel = files[i]
                    path = self.root / rel
                    names = set(f.schema_arrow.names)
                    missing = [c for c in needed if c not in names]
                    if missing:
                        raise StoreError("missing column", path, missing[0])
                    leaves = _leaves_of(f.metadata, columns)
                j, size = i, 0
                while j < len(rows) and files[j] == rel and (j == i or (groups[j] == groups[j - 1] + 1
                                                                         and size < READ_BATCH_BYTES)):
                    rg = int(groups[j])
                    if rg >= f.num_row_groups:
                        raise StoreError(f"episode {ids[j]}: the episodes table says row group {rg}, but the file "
                                         f"has {f.num_row_groups}", path, S.ROW_GROUP)
                    meta = f.metadata.row_group(rg)
                    if meta.num_rows != lengths[j]:
                        raise StoreError(f"episode {ids[j]} has {meta.num_rows} frames but the episodes table "
                                         f"says {lengths[j]}", path, S.LENGTH)
                    size += sum(meta.column(k).total_uncompressed_size for k in leaves)
                    j += 1
                try:
                    table = f.read_row_groups([int(g) for g in groups[i:j]], columns=columns)
                except (OSError, pa.ArrowException) as e:
                    raise StoreError(f"cannot be read: {e}", path) from None
                yield path, i, j, table
                i = j
        finally:
            if f is not None:
                f.close()

    def _follow_rewrite(self, ids: np.ndarray, files: np.ndarray, groups: np.ndarray) -> None:
        """The frames file of episode ids[0] is gone: another process rewrote the store (`aloe compact`,
        `ingest --force`) since this Store read its episodes table. Read the store again and take these
        episodes from where they are now (`files`, `groups`, updated in place, and in this Store's
        table), so a long read survives a compaction; refuse, naming the episode, one that was removed
        (an episode's id comes from its content, so a changed one is a removed one). A file goes only
        once its episodes' new place is committed (`_roll_forward` renames before it deletes)."""
        gone = self.root / files[0]
        eps = Store.open(self.root).episodes  # waits for a writer that is carrying its journal out
        index = pd.Index(eps[S.EPISODE_ID])
        pos = index.get_indexer(ids)
        if (pos < 0).any():
            raise StoreError(f"episode {ids[pos < 0][0]} was removed by another process while this one read "
                             "the store (an `ingest --force`?); run again", gone, S.EPISODE_ID)
        now = eps.iloc[pos]
        if now[S.FRAMES_FILE].iloc[0] == files[0]:
            raise StoreError(f"missing, but the episodes table names it for episode {ids[0]}", gone, S.FRAMES_FILE)
        files[:] = now[S.FRAMES_FILE].to_numpy()
        groups[:] = now[S.ROW_GROUP].to_numpy(dtype=np.int64)
        mine = self._episodes.copy()  # this Store keeps its episodes and labels; only where they lie moves
        at = index.get_indexer(mine[S.EPISODE_ID])
        for col in (S.FRAMES_FILE, S.ROW_GROUP):
            mine.loc[at >= 0, col] = eps[col].to_numpy()[at[at >= 0]]
        self._episodes = mine

    def iter_episode_tables(self, episode_ids: Iterable[str] | None = None,
                            columns: list[str] | None = None) -> Iterator[tuple[pd.Series, pa.Table]]:
        """Yield (episode row, frames table) one episode at a time, read in runs (`_read_runs`)."""
        rows = self._select(episode_ids)
        lengths = rows[S.LENGTH].to_numpy(dtype=np.int64)
        for _, lo, hi, table in self._read_runs(rows, columns):
            offset = 0
            for k in range(lo, hi):
                yield rows.iloc[k], table.slice(offset, int(lengths[k]))
                offset += int(lengths[k])

    def iter_episodes(self, episode_ids: Iterable[str] | None = None) -> Iterator[Episode]:
        """Yield stored episodes as `Episode` objects, one row group at a time."""
        extras = self.extra_columns
        for row, t in self.iter_episode_tables(episode_ids):
            reward = t.column(S.REWARD)
            yield Episode(
                state=vectors(t.column(S.OBS_STATE)),
                action=vectors(t.column(S.ACTION)),
                source_key=row[S.SOURCE_KEY],
                reward=None if reward.null_count == len(reward) else reward.to_numpy(zero_copy_only=False),
                is_intervention=t.column(S.IS_INTERVENTION).to_numpy(zero_copy_only=False),
                success=None if pd.isna(row[S.SUCCESS]) else bool(row[S.SUCCESS]),
                terminated=bool(row[S.TERMINATED]),
                task=row[S.TASK],
                policy_id=row[S.POLICY_ID],
                timestamp=t.column(S.TIMESTAMP).to_numpy(),
                extras={k: vectors(t.column(k), d) for k, d in extras.items() if k in t.column_names},
                images={k: t.column(k).to_pylist() for k in self.image_columns if k in t.column_names},
                episode_id=row[S.EPISODE_ID],
            )

    def load_frames(self, columns: list[str] | None = None,
                    episode_ids: Iterable[str] | None = None) -> FrameArrays:
        """Load columns of the chosen episodes into contiguous numpy arrays (memory ~ frames).

        List columns become float32 (N, dim); scalar columns become 1-d arrays. Frames are read
        and converted a run of row groups at a time (`_read_runs`); a bad value is reported with
        its episode.
        """
        columns = columns or [S.OBS_STATE, S.ACTION]
        rows = self._select(episode_ids)
        lengths = rows[S.LENGTH].to_numpy(dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        ids = rows[S.EPISODE_ID].to_numpy()
        n = int(lengths.sum())
        out: dict[str, np.ndarray] = {}
        for path, lo, hi, table in self._read_runs(rows, columns):
            for name in columns:
                col = table.column(name)
                try:
                    a = self._frame_array(col, name, path, None)
                except StoreError:
                    offset = 0  # name the episode: convert the run's episodes one at a time
                    for k in range(lo, hi):
                        self._frame_array(col.slice(offset, int(lengths[k])), name, path, ids[k])
                        offset += int(lengths[k])
                    raise
                if name not in out:
                    out[name] = np.empty((n,) + a.shape[1:], dtype=a.dtype)
                out[name][starts[lo]:starts[lo] + len(a)] = a
        for name in columns:  # a store with no episodes selected
            out.setdefault(name, np.empty((0,), dtype=np.float32))
        return FrameArrays(list(ids), starts, lengths, out)

    def _frame_array(self, col: pa.ChunkedArray, name: str, path: Path, eid: str | None) -> np.ndarray:
        """One frames column as numpy, refusing a wrong width or NaN/inf (`eid`: the episode it is, None: several)."""
        which = "an episode" if eid is None else f"episode {eid}"
        if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
            dim = (self.features.get(name, {}).get("shape") or [None])[0]
            try:
                a = vectors(col, dim)
            except ValueError:
                raise StoreError(f"{which} does not have {dim} numbers in every frame", path, name) from None
            if dim is not None and a.shape[1] != dim:
                raise StoreError(f"has {a.shape[1]} numbers per frame but {S.MANIFEST_FILE} says {dim}", path, name)
        elif name == S.REWARD:
            a = col.to_numpy(zero_copy_only=False).astype(np.float32)  # nulls -> nan
        else:
            a = col.to_numpy(zero_copy_only=False)
        if a.dtype.kind == "f":
            nullable = col.null_count and name not in (S.OBS_STATE, S.ACTION)
            _check_finite(a, pc.is_valid(col).to_numpy(zero_copy_only=False) if nullable else None, path,
                          which, name)
        return a

    # ------------------------------------------------------------------ writing
    def writer(self, source: str, fmt: str, content_hash: str | None = None, options: dict | None = None,
               replace_hash: bool = False, wait_s: float | None = WRITE_WAIT_S,
               on_wait: Callable[[], None] | None = None) -> "StoreWriter":
        """A writer holding the store's lock; waits `wait_s` seconds (None: without limit) for another
        process's write to finish, then raises StoreBusy."""
        return StoreWriter(self, source, fmt, content_hash, options or {}, replace_hash,
                           _Lock(self.root, wait_s, on_wait))

    def find_ingest(self, content_hash: str) -> dict | None:
        for ing in (self.manifest or {}).get("ingests", []):
            if ing.get("content_hash") == content_hash:
                return ing
        return None


class _Lock:
    """An exclusive advisory lock on STORE/.aloe.lock (one writer at a time). Taking it waits up to
    `wait_s` seconds for another process to let go (None: as long as it takes), calling `on_wait()`
    once if it has to wait at all, then raises StoreBusy."""

    def __init__(self, root: Path, wait_s: float | None = 0.0, on_wait: Callable[[], None] | None = None):
        self.root = root
        self.fd = None
        self.wait_s = wait_s
        self.on_wait = on_wait

    def __enter__(self):
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.root / S.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot be written: {e.strerror or e}", self.root) from None
        deadline = None if self.wait_s is None else time.monotonic() + self.wait_s
        waited = False
        try:
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return self
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise StoreBusy(self.root) from None
                    if not waited and self.on_wait is not None:
                        self.on_wait()
                    waited = True
                    time.sleep(0.05)
        except BaseException:  # StoreBusy, or Ctrl-C while waiting
            os.close(self.fd)
            raise

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _read_journal(path: Path) -> dict:
    """The journal of a committed write, checked before anything is renamed or deleted (it is left as it is)."""
    keep = "it records an interrupted write; it was left in place"
    try:
        txn = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"cannot be parsed ({keep}): {e}", path) from None

    def inside(rel) -> bool:
        return isinstance(rel, str) and bool(rel) and not os.path.isabs(rel) and ".." not in Path(rel).parts

    ok = (isinstance(txn, dict) and isinstance(txn.get("id"), str) and inside(txn["id"]) and "/" not in txn["id"]
          and isinstance(txn.get("renames"), list) and isinstance(txn.get("deletes"), list)
          and all(isinstance(r, list) and len(r) == 2 and all(map(inside, r)) for r in txn["renames"])
          and all(map(inside, txn["deletes"])))
    if not ok:
        raise StoreError(f"is not a journal this aloe wrote ({keep})", path)
    return txn


def _new_staging(root: Path, txn_id: str) -> Path:
    """STORE/.staging/<txn_id>, made empty, once the folders that crashed writers left are swept (the
    caller holds the lock)."""
    shutil.rmtree(root / S.STAGING_DIR, ignore_errors=True)
    staging = root / S.STAGING_DIR / txn_id
    staging.mkdir(parents=True)
    return staging


def _write_episodes(episodes: pd.DataFrame, path: Path) -> None:
    pq.write_table(pa.Table.from_pandas(episodes, schema=S.EPISODES_SCHEMA, preserve_index=False), path)


def _metadata_renames(stage_rel: str) -> list[list[str]]:
    """The staged episodes table and manifest into place: the last renames of every write."""
    return [[f"{stage_rel}/{S.EPISODES_FILE}", S.EPISODES_FILE], [f"{stage_rel}/{S.MANIFEST_FILE}", S.MANIFEST_FILE]]


def _write_journal(root: Path, txn_id: str, renames: list[list[str]], deletes: list[str]) -> None:
    """Write the journal of a write whose files are all staged: the commit point. `_roll_forward`
    then carries it out (the next `Store.open` does, after a crash)."""
    _crashpoint("before-journal")
    tmp = root / (S.TXN_FILE + ".tmp")
    _fsync_write(tmp, json.dumps({"id": txn_id, "renames": renames, "deletes": deletes}).encode())
    os.replace(tmp, root / S.TXN_FILE)  # the commit point
    _fsync_dir(root)
    _crashpoint("after-journal")


def _roll_forward(root: Path) -> None:
    """Finish a committed transaction from its journal (idempotent)."""
    txn_path = root / S.TXN_FILE
    if not txn_path.exists():
        return
    txn = _read_journal(txn_path)
    for src, dst in txn["renames"]:
        s, d = root / src, root / dst
        if s.exists():
            d.parent.mkdir(parents=True, exist_ok=True)
            os.replace(s, d)
    for rel in txn["deletes"]:
        p = root / rel
        if p.exists():
            p.unlink()
    _fsync_dir(root / S.FRAMES_DIR)
    _fsync_dir(root)
    txn_path.unlink()
    _fsync_dir(root)
    staging = root / S.STAGING_DIR / txn["id"]
    shutil.rmtree(staging, ignore_errors=True)


def _label_text(value) -> str:
    return "unknown" if value is None else (str(value).lower() if isinstance(value, bool) else repr(value))


def _merge_parts(parts: list[Path], last: Path, schema: pa.Schema) -> None:
    """Join staged frames files written under narrower schemas, then `last`, into `last` under `schema`:
    row group by row group, in order (an episode's row group index stays), the columns a file lacks null."""
    merged = last.with_name("frames.merged.parquet")
    with pq.ParquetWriter(merged, schema, compression="zstd") as w:
        for path in [*parts, last]:
            f = pq.ParquetFile(path)
            for i in range(f.num_row_groups):
                t = f.read_row_group(i)
                cols = [t.column(n) if n in t.column_names else pa.nulls(t.num_rows, schema.field(n).type)
                        for n in schema.names]
                w.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=max(t.num_rows, 1))
    for path in parts:
        path.unlink()
    os.replace(merged, last)


class StoreWriter:
    """Stages episodes into a new frames file, then commits them atomically.

    Use as a context manager: leaving the block without `commit()` (or with an exception)
    discards everything staged.
    """

    def __init__(self, store: Store, source: str, fmt: str, content_hash: str | None,
                 options: dict, replace_hash: bool, lock: "_Lock"):
        self.store = store
        self.root = store.root
        self.source = source
        self.format = fmt
        self.content_hash = content_hash
        self.options = options
        self.replace_hash = replace_hash
        self.txn_id = uuid.uuid4().hex[:12]
        self.created_root = not self.root.exists()
        self.created_lock = not (self.root / S.LOCK_FILE).exists()
        self.had_staging = (self.root / S.STAGING_DIR).exists()
        self.lock = lock
        self.lock.__enter__()
        self._closed = False
        self._committed = False
        self.staging = self.root / S.STAGING_DIR / self.txn_id  # made by _stage() when first needed
        try:
            store._reload()
            self._read_store()
        except BaseException:
            self._release()
            raise

    def _read_store(self) -> None:
        store, m = self.store, self.store.manifest
        self.features: dict | None = None if m is None else json.loads(json.dumps(m["features"]))
        self.fps: float | None = None if m is None else m.get("fps")
        # Episodes being replaced (re-ingest of the same content with --force).
        self.replaced_ingests = []
        if m is not None and self.replace_hash and self.content_hash:
            self.replaced_ingests = [i for i in m["ingests"] if i.get("content_hash") == self.content_hash]
        replaced_ids = {e for i in self.replaced_ingests for e in i["episode_ids"]}
        self.existing_ids = set(store.episodes[S.EPISODE_ID]) - replaced_ids
        self.rows: list[dict] = []
        self.added: list[str] = []
        self.duplicates = 0
        self.frames = 0
        self.dropped: set[str] = set()
        self.dropped_episodes: list[str] = []  # source keys of the episodes that had columns left out
        self.relabelled: dict[str, dict] = {}  # episode id -> its new labels (already in the store; --force)
        self._old_rows: dict | None = None
        self._pq: pq.ParquetWriter | None = None
        self._parts: list[Path] = []  # staged frames files written before the schema widened
        self._schema: pa.Schema | None = None
        self.part_name = None

    def _stage(self) -> Path:
        """The staging folder, made on first use (so a write refused early leaves none)."""
        if not self.staging.exists():
            _new_staging(self.root, self.txn_id)
        return self.staging

    # -------------------------------------------------------------- features
    def _init_features(self, ep: Episode, names: dict[str, list[str]] | None) -> None:
        names = names or {}
        feats = {
            S.OBS_STATE: {"dtype": "float32", "shape": [ep.state.shape[1]], "names": names.get(S.OBS_STATE)},
            S.ACTION: {"dtype": "float32", "shape": [ep.action.shape[1]], "names": names.get(S.ACTION)},
        }
        for k, a in ep.extras.items():
            feats[k] = {"dtype": "float32", "shape": [a.shape[1]], "names": names.get(k)}
        for k, frames in ep.images.items():
            feats[k] = _image_feature(_frame_size(frames))
        self.features = feats

    def _check_features(self, ep: Episode, path: str, names: dict[str, list[str]] | None = None) -> None:
        """Check an episode's columns against the store's. A camera or extra observation the store lacks
        becomes a column of a store this ingest makes (earlier episodes get nulls there); an existing store's
        columns stay as they are, and the column is left out and counted (`dropped`, a warning)."""
        f = self.features
        if self.store.manifest is None:  # a new store: its columns are the union over its first ingest
            for k, a in ep.extras.items():
                if k not in f:
                    f[k] = {"dtype": "float32", "shape": [a.shape[1]], "names": (names or {}).get(k)}
                    self._schema = None
            for k, frames in ep.images.items():
                if k not in f:
                    f[k] = _image_feature(_frame_size(frames))
                    self._schema = None
        for col, arr in ((S.OBS_STATE, ep.state), (S.ACTION, ep.action)):
            have, want = arr.shape[1], f[col]["shape"][0]
            if have != want:
                raise BadInput(
                    f"has {have} numbers per frame but the store {self.root} holds {want}; "
                    "ingest into a separate store or map the source's keys", f"{path}[{ep.source_key}]", col)
        lacking = [k for k in [*ep.extras, *ep.images] if k not in f]
        if lacking:
            self.dropped_episodes.append(ep.source_key)
        for k, a in list(ep.extras.items()):
            if k not in f:
                self.dropped.add(k)
                del ep.extras[k]
            elif a.shape[1] != f[k]["shape"][0]:
                raise BadInput(f"has {a.shape[1]} numbers per frame but the store holds {f[k]['shape'][0]}",
                               f"{path}[{ep.source_key}]", k)
        for k in list(ep.images):
            if k not in f:
                self.dropped.add(k)
                del ep.images[k]

    # -------------------------------------------------------------- adding
    def add(self, ep: Episode, names: dict[str, list[str]] | None = None, fps: float | None = None) -> str | None:
        """Stage one episode; returns its id, or None when it is already in the store."""
        ep = ep.normalized(self.source)
        if self.features is None:
            self._init_features(ep, names)
        if self.fps is None and fps:
            self.fps = float(fps)
        self._check_features(ep, self.source, names)
        eid = ep.content_id()
        if eid in self.existing_ids:
            self._check_labels(eid, ep)
            self.duplicates += 1
            return None
        self.existing_ids.add(eid)
        for k, frames in ep.images.items():  # a camera whose frames change size gets shape null
            f = self.features[k]
            size = _frame_size(frames)
            if f.get("shape") is not None and size is not None and size != tuple(f["shape"][:2]):
                self.features[k] = _image_feature(None)
        T = len(ep)
        schema = self._frames_schema()
        if self._pq is not None and not self._pq.schema.equals(schema):  # a new store took a new column
            self._pq.close()
            self._pq = None
            part = self._stage() / f"frames.{len(self._parts)}.parquet"
            os.replace(self._stage() / "frames.parquet", part)
            self._parts.append(part)
        fps_ = fps or self.fps or 0.0
        ts = ep.timestamp if ep.timestamp is not None else (
            np.arange(T, dtype=np.float32) / np.float32(fps_) if fps_ else np.arange(T, dtype=np.float32))
        cols = {
            S.EPISODE_ID: pa.array([eid] * T, pa.string()),
            S.FRAME_INDEX: pa.array(np.arange(T, dtype=np.int64)),
            S.TIMESTAMP: pa.array(ts.astype(np.float32)),
            S.OBS_STATE: _fixed_list(ep.state),
            S.ACTION: _fixed_list(ep.action),
            S.REWARD: pa.array(ep.reward, pa.float32()) if ep.reward is not None else pa.nulls(T, pa.float32()),
            S.IS_INTERVENTION: pa.array(ep.is_intervention.astype(bool)),
        }
        for name in schema.names[len(cols):]:
            ftype = schema.field(name).type
            if name in ep.extras:
                cols[name] = _fixed_list(ep.extras[name])
            elif name in ep.images:
                cols[name] = pa.array(ep.images[name], pa.binary())
            else:
                cols[name] = pa.nulls(T, ftype)
        table = pa.Table.from_pydict(cols, schema=schema)
        if self.part_name is None:
            self.part_name = f"{S.FRAMES_DIR}/part-{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%S}-{self.txn_id}.parquet"
        if self._pq is None:
            self._pq = pq.ParquetWriter(self._stage() / "frames.parquet", schema, compression="zstd")
        self._pq.write_table(table, row_group_size=max(T, 1))
        interv = int(ep.is_intervention.sum())
        terminated = ep.is_terminated
        self.rows.append({
            S.EPISODE_ID: eid,
            S.SOURCE: self.source,
            S.FORMAT: self.format,
            S.SOURCE_KEY: ep.source_key,
            S.POLICY_ID: ep.policy_id or S.UNKNOWN_POLICY_ID,
            S.TASK: ep.task,
            S.SUCCESS: ep.success,
            S.TERMINATED: terminated,
            S.TRUNCATED: not terminated,
            S.LENGTH: T,
            S.INTERVENTION_FRAMES: interv,
            S.FPS: fps_ or None,
            S.FRAMES_FILE: self.part_name,
            S.ROW_GROUP: len(self.rows),
            S.INGEST_ID: self.txn_id,
        })
        self.added.append(eid)
        self.frames += T
        return eid

    def _check_labels(self, eid: str, ep: Episode) -> None:
        """An episode already in the store (from an earlier ingest) labelled otherwise here: with --force
        (`replace_hash`) its labels are replaced; without, it is refused, naming both labellings. (A source
        that has grown since its ingest is a new content hash, so its earlier episodes come here.)"""
        if self._old_rows is None:
            self._old_rows = self.store.episodes.set_index(S.EPISODE_ID).to_dict("index")
        row = self._old_rows.get(eid)
        if row is None:  # added earlier in this ingest
            return
        old = {S.SUCCESS: None if pd.isna(row[S.SUCCESS]) else bool(row[S.SUCCESS]),
               S.TERMINATED: bool(row[S.TERMINATED]), S.POLICY_ID: row[S.POLICY_ID]}
        new = dict(old)  # an outcome or policy_id this ingest does not give is no contradiction: kept
        if ep.success is not None:
            new[S.SUCCESS], new[S.TERMINATED] = ep.success, ep.is_terminated
        if ep.policy_id and ep.policy_id != S.UNKNOWN_POLICY_ID:
            new[S.POLICY_ID] = ep.policy_id
        if new == old:
            return
        if not self.replace_hash:
            changed = [k for k in new if new[k] != old[k]]
            shown = [k for k in changed if not (k == S.TERMINATED and S.SUCCESS in changed)]  # follows success
            there, here = (", ".join(f"{k} {_label_text(d[k])}" for k in shown) for d in (old, new))
            raise BadInput(f"is in the store already (ingest {row[S.INGEST_ID]}) labelled otherwise ({there} there, "
                           f"{here} here); pass --force to relabel it", f"{self.source}[{ep.source_key}]", changed[0])
        self.relabelled[eid] = new

    def _frames_schema(self) -> pa.Schema:  # (reset to None where a new store takes a new column)
        if self._schema is None:
            f = self.features
            extras = {k: v["shape"][0] for k, v in f.items()
                      if k not in (S.OBS_STATE, S.ACTION) and v["dtype"] != "image"}
            images = [k for k, v in f.items() if v["dtype"] == "image"]
            self._schema = S.frames_schema(f[S.OBS_STATE]["shape"][0], f[S.ACTION]["shape"][0], extras, images)
        return self._schema

    # -------------------------------------------------------------- commit / abort
    def commit(self) -> IngestResult:
        try:
            return self._commit()
        finally:
            self._release()

    def _commit(self) -> IngestResult:
        result = IngestResult(str(self.root), self.source, self.format, self.txn_id, list(self.added),
                              duplicates=self.duplicates, dropped_columns=sorted(self.dropped), frames=self.frames)
        replaced_ids = {e for i in self.replaced_ingests for e in i["episode_ids"]}
        if not self.added and not replaced_ids and not self.relabelled:
            result.ingest_id = None
            shutil.rmtree(self.staging, ignore_errors=True)
            if self.created_root:
                shutil.rmtree(self.root, ignore_errors=True)
            return result
        if self._pq is not None:
            self._pq.close()
            self._pq = None
        if self._parts:
            _merge_parts(self._parts, self._stage() / "frames.parquet", self._frames_schema())
        old = self.store.episodes
        keep = old[~old[S.EPISODE_ID].isin(replaced_ids)]
        if self.relabelled:
            keep = keep.copy()
            at = keep[S.EPISODE_ID].map({e: i for i, e in enumerate(self.relabelled)})
            labels = list(self.relabelled.values())
            for col in (S.SUCCESS, S.TERMINATED, S.POLICY_ID):
                keep[col] = keep[col].astype(object)
                keep.loc[at.notna(), col] = [labels[int(i)][col] for i in at.dropna()]
            keep[S.TRUNCATED] = ~keep[S.TERMINATED].astype(bool)
        new_rows = pd.DataFrame(self.rows, columns=S.EPISODES_SCHEMA.names)
        episodes = pd.concat([keep, new_rows], ignore_index=True) if len(keep) else new_rows
        _write_episodes(episodes, self._stage() / S.EPISODES_FILE)
        # Frames files no longer referenced by any episode are deleted.
        live_files = set(episodes[S.FRAMES_FILE])
        old_files = set(old[S.FRAMES_FILE]) if len(old) else set()
        deletes = sorted(old_files - live_files)
        m = self.store.manifest or {"format_version": S.FORMAT_VERSION, "created": _now(), "ingests": []}
        m = dict(m)
        m["format_version"] = S.FORMAT_VERSION
        m["fps"] = self.fps
        m["features"] = self.features
        ingests = [i for i in m["ingests"] if i not in self.replaced_ingests]
        if self.added or self.relabelled:
            ingests.append({
                "id": self.txn_id,
                "source": self.source,
                "format": self.format,
                "content_hash": self.content_hash,
                "time": _now(),
                "options": self.options,
                "frames_file": self.part_name,
                "episode_ids": list(self.added),
                **({"relabelled_ids": list(self.relabelled)} if self.relabelled else {}),
            })
        m["ingests"] = ingests
        _fsync_write(self.staging / S.MANIFEST_FILE, json.dumps(m, indent=2).encode())
        stage_rel = f"{S.STAGING_DIR}/{self.txn_id}"
        renames = []
        if self.part_name:
            renames.append([f"{stage_rel}/frames.parquet", self.part_name])
        _write_journal(self.root, self.txn_id, renames + _metadata_renames(stage_rel), deletes)
        self._committed = True
        _roll_forward(self.root)
        self.store.manifest = m
        self.store._episodes = None
        result.replaced = len(replaced_ids)
        result.relabelled = len(self.relabelled)
        return result

    def abort(self) -> None:
        try:
            if self._pq is not None:
                self._pq.close()
                self._pq = None
            shutil.rmtree(self.staging, ignore_errors=True)
            if self.created_root:
                shutil.rmtree(self.root, ignore_errors=True)
        finally:
            self._release()

    def _release(self) -> None:
        if not self._closed:
            self._closed = True
            if not self._committed:  # leave the directory's machinery as it was found
                if not self.had_staging:
                    shutil.rmtree(self.root / S.STAGING_DIR, ignore_errors=True)
                if self.created_lock and self.store.manifest is None:  # never an existing store's lock: a
                    (self.root / S.LOCK_FILE).unlink(missing_ok=True)  # waiting writer holds that inode open
            self.lock.__exit__(None, None, None)
            if self.created_root and not (self.root / S.MANIFEST_FILE).exists():
                shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._closed:
            self.abort()


def _frame_size(frames) -> tuple[int, ...] | None:
    """(height, width) of an episode's first stored frame, read from its header; None when it has no
    frame; () when the frame cannot be read (decoding reports it where a model needs the frames)."""
    import io

    from PIL import Image

    first = next((b for b in frames if b is not None), None)
    if first is None:
        return None
    try:
        w, h = Image.open(io.BytesIO(first)).size
    except Exception:  # PIL raises many types for bad bytes
        return ()
    return int(h), int(w)


def _image_feature(size: tuple[int, ...] | None) -> dict:
    """A camera's entry in aloe.json's features: shape [height, width, 3] when every stored frame has
    one size (as far as the first frame of each episode shows), else null."""
    if not size:
        return {"dtype": "image", "shape": None, "names": None}
    return {"dtype": "image", "shape": [size[0], size[1], 3], "names": list(S.IMAGE_NAMES)}


def _fixed_list(arr: np.ndarray) -> pa.FixedSizeListArray:
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])
