"""HDF5 access for the readers: every h5py failure becomes a BadInput naming the file and field.

h5py reports a corrupt or truncated file with many exception types (OSError, KeyError,
RuntimeError, ValueError, ...) and sometimes only when a dataset is read. The helpers here
check the structure a reader expects (a group where a group should be, a dataset where a
dataset should be) and turn anything h5py raises into one clear line.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import BadInput

# What h5py (and numpy, allocating what a corrupt header claims) raise on a damaged file.
H5_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError, IndexError, MemoryError, OverflowError,
             SystemError)

# Deflate cannot compress by more than ~1032:1, so a dataset claiming more bytes than that
# times the file size (plus slack for small files) cannot be real: the header is corrupt.
_MAX_RATIO = 1100
_SLACK = 64 << 20


def reason(e: BaseException) -> str:
    """h5py's message without its wrapper: 'Unable to ... (file signature not found)' -> the part in brackets."""
    msg = " ".join(str(e).split()).strip('"').strip("'")
    m = re.search(r"\(([^()]*)\)\s*$", msg)
    return m.group(1) if m and msg.startswith(("Unable", "Can't", "Cannot")) else msg


def natural_key(name: str) -> list:
    """Sort key that orders demo_2 before demo_10."""
    return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", name)]


def open_file(path: Path):
    """Open an HDF5 file for reading, or raise BadInput."""
    import h5py

    try:
        return h5py.File(path, "r")
    except H5_ERRORS as e:
        raise BadInput(f"cannot be opened as HDF5: {reason(e)}", path) from None


def is_hdf5(path: Path) -> bool:
    """True when `path` is a file that opens as HDF5 (never raises)."""
    import h5py

    try:
        return path.is_file() and h5py.is_hdf5(str(path))
    except Exception:  # noqa: BLE001 - detection must never fail
        return False


@contextlib.contextmanager
def guard(file: Path, field: str | None) -> Iterator[None]:
    """Turn any h5py failure inside the block into BadInput(file, field)."""
    try:
        yield
    except BadInput:
        raise
    except H5_ERRORS as e:
        raise BadInput(f"cannot be read: {reason(e)}", file, field) from None


def get(parent, key: str, file: Path, field: str, kind: str | None = None, required: bool = True):
    """`parent[key]` checked to be a 'group' or 'dataset' (kind); None when absent and not required."""
    import h5py

    with guard(file, field):
        obj = parent.get(key)
    if obj is None:
        if required:
            raise BadInput(f"missing {kind or 'entry'}", file, field)
        return None
    if kind == "group" and not isinstance(obj, h5py.Group):
        raise BadInput("expected a group, found a dataset", file, field)
    if kind == "dataset" and not isinstance(obj, h5py.Dataset):
        raise BadInput("expected a dataset, found a group", file, field)
    return obj


def keys(group, file: Path, field: str) -> list[str]:
    """A group's member names (natural order)."""
    with guard(file, field):
        return sorted(group.keys(), key=natural_key)


def attr(obj, name: str, file: Path, field: str, default=None):
    """An attribute's value (bytes decoded to str), or `default` when absent."""
    with guard(file, field):
        if name not in obj.attrs:
            return default
        value = obj.attrs[name]
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, np.generic) and not isinstance(value, np.bytes_):
        value = value.item()
    if isinstance(value, (bytes, np.bytes_)):
        try:
            value = bytes(value).decode()
        except UnicodeDecodeError:
            raise BadInput("is not UTF-8 text", file, field) from None
    return value


def read(ds, file: Path, field: str) -> np.ndarray:
    """A dataset's values, refusing sizes a damaged header claims."""
    with guard(file, field):
        shape, dtype = ds.shape, ds.dtype
    if shape is None:
        raise BadInput("is an empty (null) dataset", file, field)
    nbytes = int(np.prod(shape, dtype=np.float64) * max(dtype.itemsize, 1))
    size = file.stat().st_size if file.exists() else 0
    if nbytes > _MAX_RATIO * size + _SLACK:
        raise BadInput(f"claims {nbytes} bytes, more than a {size}-byte file can hold (corrupt file?)", file, field)
    with guard(file, field):
        return np.asarray(ds[()])


def dataset(parent, key: str, file: Path, field: str, required: bool = True) -> np.ndarray | None:
    """Read `parent[key]`, checked to be a dataset."""
    ds = get(parent, key, file, field, "dataset", required)
    return None if ds is None else read(ds, file, field)


def numeric(arr: np.ndarray, file: Path, field: str) -> np.ndarray:
    """`arr` as float64, or BadInput when it is not numbers."""
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64, copy=False)
    raise BadInput(f"is not numeric (dtype {arr.dtype})", file, field)


def rows(a: np.ndarray) -> np.ndarray:
    """(N, ...) -> (N, k), also when k is 0 (where reshape(N, -1) fails)."""
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:], dtype=np.int64)))


def check_finite(arr: np.ndarray, file: Path, field: str) -> None:
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise BadInput(f"contains NaN or inf (first at index {idx})", file, field)


def frames(arr: np.ndarray, T: int, file: Path, field: str, what: str = "actions") -> np.ndarray:
    """Check a per-frame array has T rows (after numeric/finite checks) and return it as float64."""
    a = numeric(arr, file, field)
    if a.ndim == 0 or a.shape[0] != T:
        n = 0 if a.ndim == 0 else a.shape[0]
        raise BadInput(f"has {n} frames but {what} has {T}", file, field)
    check_finite(a, file, field)
    return a
