"""msgpack with numpy arrays, in the wire format of openpi's ``openpi_client/msgpack_numpy.py``.

An array travels as a plain msgpack map with byte-string keys::

    {b"__ndarray__": True, b"data": <C-order bytes>, b"dtype": dtype.str, b"shape": [...]}

and a numpy scalar as ``{b"__npgeneric__": True, b"data": value, b"dtype": dtype.str}``.
Strings are msgpack str, bytes are msgpack bin (``use_bin_type``), so a dict keyed by
Python strings comes back keyed by strings. Object, void and complex arrays are refused,
as openpi refuses them. Used by the openpi policy adapter and the remote robot bridge.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

_NDARRAY = b"__ndarray__"
_NPGENERIC = b"__npgeneric__"


def pack_array(obj: Any) -> Any:
    """msgpack `default` hook: numpy arrays and scalars to tagged maps."""
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind in ("V", "O", "c"):
        raise ValueError(f"Unsupported dtype: {obj.dtype}")
    if isinstance(obj, np.ndarray):
        obj = np.ascontiguousarray(obj)
        return {_NDARRAY: True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {_NPGENERIC: True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def unpack_array(obj: dict) -> Any:
    """msgpack `object_hook`: tagged maps back to numpy arrays and scalars."""
    if _NDARRAY in obj:
        return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
    if _NPGENERIC in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def packb(obj: Any) -> bytes:
    """Serialise `obj` (dicts, lists, numbers, strings, bytes, numpy arrays) to msgpack bytes."""
    return msgpack.packb(obj, default=pack_array, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """Deserialise msgpack bytes; arrays come back as read-only numpy views of the message."""
    return msgpack.unpackb(data, object_hook=unpack_array, raw=False)
