"""TFRecord framing and `tf.train.Example` without TensorFlow.

A TFRecord file is a sequence of records, each framed as (tensorflow/core/lib/io/record_writer):

    uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

all little-endian, where ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`` (mod 2**32).

CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) is computed here in numpy, fast enough
for records of many MB (~100 MB/s on one core): the data is cut into K lanes of 64 bytes, all
lanes advance 4 bytes per step (slicing-by-4 tables), and lane CRCs are then combined
pairwise with the linear "advance over 2**k zero bytes" operator. The `tf.train.Example` message classes
are built at runtime from a descriptor (no protoc, no TensorFlow): see `example_classes`.
"""

from __future__ import annotations

import functools
import os
import struct
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import BadInput

_POLY = 0x82F63B78
_MASK_DELTA = 0xA282EAD8
_SMALL = 2048  # below this many bytes a plain table loop is faster than the lane setup


def _byte_table() -> np.ndarray:
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(_POLY), t >> 1).astype(np.uint32)
    return t


_TABLE = _byte_table()
_TABLE_LIST = [int(v) for v in _TABLE]


def _slicing_tables() -> tuple[np.ndarray, ...]:
    """Slicing-by-4: t[k][b] advances byte b, then k more zero bytes."""
    out = [_TABLE]
    for _ in range(3):
        prev = out[-1]
        out.append((prev >> 8) ^ _TABLE[prev & 0xFF])
    return tuple(out)


_TABLES4 = _slicing_tables()
_LOG_LANE = 6
_LANE = 1 << _LOG_LANE  # bytes per lane: small, so the per-step numpy overhead is amortised over many lanes


def _crc_loop(data: bytes, crc: int = 0xFFFFFFFF) -> int:
    tbl = _TABLE_LIST
    for b in data:
        crc = tbl[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def _tables_from_columns(cols: np.ndarray) -> np.ndarray:
    """A linear map on 32-bit registers (its 32 column images) -> 4 lookup tables of 256."""
    v = np.arange(256, dtype=np.uint32)
    bits = ((v[:, None] >> np.arange(8, dtype=np.uint32)[None, :]) & 1).astype(bool)  # (256, 8)
    out = np.empty((4, 256), dtype=np.uint32)
    for b in range(4):
        out[b] = np.bitwise_xor.reduce(np.where(bits, cols[None, 8 * b:8 * b + 8], np.uint32(0)), axis=1)
    return out


def _apply(tables: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (tables[0][x & 0xFF] ^ tables[1][(x >> 8) & 0xFF]
            ^ tables[2][(x >> 16) & 0xFF] ^ tables[3][x >> 24])


@functools.lru_cache(maxsize=None)
def _zeros_operator(k: int) -> np.ndarray:
    """Tables of the map "advance the CRC register over 2**k zero bytes"."""
    if k == 0:
        basis = np.uint32(1) << np.arange(32, dtype=np.uint32)
        cols = _TABLE[basis & 0xFF] ^ (basis >> 8)
    else:
        prev = _zeros_operator(k - 1)
        basis = np.uint32(1) << np.arange(32, dtype=np.uint32)
        cols = _apply(prev, _apply(prev, basis))
    return _tables_from_columns(cols)


def crc32c(data: bytes | bytearray | memoryview, *, lanes: bool | None = None) -> int:
    """CRC-32C of `data` (as in iSCSI, ext4 and TFRecord). `lanes` forces the numpy path (tests)."""
    n = len(data)
    if lanes is None:
        lanes = n >= _SMALL
    if not lanes or n < 4:
        return _crc_loop(bytes(data)) ^ 0xFFFFFFFF
    # Raw CRC (register starts at 0, no final xor) is linear and ignores leading zero bytes,
    # so pad at the front to K*L bytes. The standard initial register 0xFFFFFFFF is the
    # same as complementing the first 4 message bytes.
    K = -(-n // _LANE)
    buf = np.zeros(K * _LANE, dtype=np.uint8)
    pad = K * _LANE - n
    buf[pad:] = np.frombuffer(data, dtype=np.uint8)
    buf[pad:pad + 4] ^= 0xFF
    words = buf.view("<u4").reshape(K, _LANE // 4)  # lane k = row k, read 4 bytes a step
    t0, t1, t2, t3 = _TABLES4
    crc = np.zeros(K, dtype=np.uint32)
    for j in range(_LANE // 4):
        x = crc ^ words[:, j]
        crc = t3[x & 0xFF] ^ t2[(x >> 8) & 0xFF] ^ t1[(x >> 16) & 0xFF] ^ t0[x >> 24]
    level = _LOG_LANE
    while crc.shape[0] > 1:
        if crc.shape[0] % 2:
            crc = np.concatenate([np.zeros(1, dtype=np.uint32), crc])  # a zero lane in front
        crc = _apply(_zeros_operator(level), crc[0::2]) ^ crc[1::2]
        level += 1
    return int(crc[0]) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def iter_records(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (record number, data) from a TFRecord file, checking both CRCs of every record."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise BadInput(f"cannot be opened: {e.strerror}", path) from None
    with f:
        size = os.fstat(f.fileno()).st_size
        i = 0
        while True:
            where = f"record {i}"
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise BadInput(f"truncated: the record header needs 12 bytes, {len(header)} left", path, where)
            length, stored = struct.unpack("<QI", header)
            computed = masked_crc32c(header[:8])
            if computed != stored:
                raise BadInput(f"length CRC mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})",
                               path, where)
            left = size - f.tell()
            if length + 4 > left:
                raise BadInput(f"truncated: the record needs {length + 4} more bytes, {left} left", path, where)
            data = f.read(length)
            (stored,) = struct.unpack("<I", f.read(4))
            computed = masked_crc32c(data)
            if computed != stored:
                raise BadInput(f"data CRC mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})",
                               path, where)
            yield i, data
            i += 1


@functools.lru_cache(maxsize=1)
def example_classes() -> dict[str, type]:
    """Message classes for tensorflow/core/example/{feature,example}.proto, built at runtime.

    Returns {"Example", "Features", "Feature", "BytesList", "FloatList", "Int64List"}. They
    live in a private descriptor pool, so they never clash with TensorFlow's own classes.
    """
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError:
        raise BadInput("reading RLDS needs the protobuf package: pip install 'aloe-cli[rlds]'",
                       field="--format rlds") from None
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="tensorflow/core/example/example.proto", package="tensorflow", syntax="proto3")

    def message(name: str):
        m = fdp.message_type.add()
        m.name = name
        return m

    def field(m, name: str, number: int, ftype: int, label: int = F.LABEL_OPTIONAL,
              type_name: str | None = None, oneof: int | None = None, packed: bool = False):
        f = m.field.add()
        f.name, f.number, f.type, f.label = name, number, ftype, label
        if type_name:
            f.type_name = type_name
        if oneof is not None:
            f.oneof_index = oneof
        if packed:
            f.options.packed = True
        return f

    field(message("BytesList"), "value", 1, F.TYPE_BYTES, F.LABEL_REPEATED)
    field(message("FloatList"), "value", 1, F.TYPE_FLOAT, F.LABEL_REPEATED, packed=True)
    field(message("Int64List"), "value", 1, F.TYPE_INT64, F.LABEL_REPEATED, packed=True)
    feature = message("Feature")
    feature.oneof_decl.add().name = "kind"
    field(feature, "bytes_list", 1, F.TYPE_MESSAGE, type_name=".tensorflow.BytesList", oneof=0)
    field(feature, "float_list", 2, F.TYPE_MESSAGE, type_name=".tensorflow.FloatList", oneof=0)
    field(feature, "int64_list", 3, F.TYPE_MESSAGE, type_name=".tensorflow.Int64List", oneof=0)
    features = message("Features")
    entry = features.nested_type.add()
    entry.name = "FeatureEntry"
    entry.options.map_entry = True
    field(entry, "key", 1, F.TYPE_STRING)
    field(entry, "value", 2, F.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    field(features, "feature", 1, F.TYPE_MESSAGE, F.LABEL_REPEATED, type_name=".tensorflow.Features.FeatureEntry")
    field(message("Example"), "features", 1, F.TYPE_MESSAGE, type_name=".tensorflow.Features")

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    get_class = getattr(message_factory, "GetMessageClass", None)
    if get_class is None:  # protobuf < 4.21
        factory = message_factory.MessageFactory(pool)
        get_class = factory.GetPrototype
    names = ("Example", "Features", "Feature", "BytesList", "FloatList", "Int64List")
    return {n: get_class(pool.FindMessageTypeByName(f"tensorflow.{n}")) for n in names}
