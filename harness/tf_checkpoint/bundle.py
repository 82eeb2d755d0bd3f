"""A TensorFlow checkpoint (format V2, a "tensor bundle"), read without TensorFlow.

    PREFIX.index                   a table (harness.tf_checkpoint.table): the key "" holds the
                                   BundleHeaderProto, every other key is a variable's name and
                                   holds its BundleEntryProto
    PREFIX.data-NNNNN-of-MMMMM     the shards: each tensor's bytes, row-major

The two messages (tensorflow/core/protobuf/tensor_bundle.proto), by field number:
    BundleHeaderProto   1 num_shards, 2 endianness (0: little), 3 version
    BundleEntryProto    1 dtype, 2 shape (TensorShapeProto: 2 dim, each with 1 size),
                        3 shard_id, 4 offset, 5 size, 6 crc32c (fixed32, masked as in TFRecord),
                        7 slices (the parts of a partitioned variable, which hold its data)
Only these fields are decoded, by hand from protobuf's wire format: the checkpoint's schema is
stable, and TensorFlow's generated classes would need TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.datasets.records import masked_crc
from harness.errors import HarnessError
from harness.tf_checkpoint.table import TableError, read_table, varint

DTYPES = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    4: np.dtype("u1"),
    5: np.dtype("<i2"),
    6: np.dtype("i1"),
    9: np.dtype("<i8"),
    10: np.dtype("?"),
    17: np.dtype("<u2"),
    19: np.dtype("<f2"),
    22: np.dtype("<u4"),
    23: np.dtype("<u8"),
}
"""TensorFlow's DataType numbers (types.proto) whose tensors are plain little-endian arrays. Strings,
bfloat16 (no numpy type) and resources are not read: no BERT weight is one."""


@dataclass(frozen=True)
class Entry:
    """Where a variable's tensor lies, and what it is."""

    dtype: int
    """TensorFlow's DataType number."""
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc: int
    partitioned: bool


class Bundle:
    """The entries of PREFIX.index; `read` takes a tensor from its shard."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.index = Path(f"{prefix}.index")
        if not self.index.is_file():
            raise HarnessError(
                f"{prefix}: no {self.index.name} beside it; not a TensorFlow checkpoint prefix"
            )
        self.entries: dict[str, Entry] = {}
        header: dict[int, int | bytes] | None = None
        try:
            for key, value in read_table(self.index):
                if key:
                    self.entries[key.decode()] = _entry(value)
                else:
                    header = dict(_fields(value))
        except (TableError, UnicodeDecodeError) as exc:
            raise HarnessError(f"{self.index}: corrupt checkpoint index ({exc})") from None
        if header is None:
            raise HarnessError(f"{self.index}: no bundle header; not a TensorFlow checkpoint index")
        if header.get(2, 0) != 0:
            raise HarnessError(f"{self.index}: a big-endian checkpoint; only little-endian ones are read")
        shards = header.get(1, 1)
        if not isinstance(shards, int) or shards < 1:
            raise HarnessError(f"{self.index}: corrupt checkpoint index (a header of {shards!r} shards)")
        self.shards = shards

    def shard_path(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.shards:05d}")

    def check(self, name: str) -> None:
        """Refuse, before any data is read, a tensor this reader cannot take or whose bytes its
        shard does not hold (a missing or truncated file)."""
        entry = self.entries[name]
        if entry.partitioned:
            raise HarnessError(f"{self.prefix}: {name} is a partitioned variable, which is not read")
        if entry.dtype not in DTYPES:
            raise HarnessError(f"{self.prefix}: {name} has TensorFlow dtype {entry.dtype}, which is not read")
        expected = math.prod(entry.shape) * DTYPES[entry.dtype].itemsize
        if entry.size != expected:
            raise HarnessError(
                f"{self.index}: {name} is {entry.size} bytes, not the {expected} of its shape "
                f"{list(entry.shape)}: corrupt index"
            )
        path = self.shard_path(entry.shard)
        if not path.is_file():
            raise HarnessError(f"{path}: missing; the checkpoint's data shard {entry.shard} holds {name}")
        if path.stat().st_size < entry.offset + entry.size:
            raise HarnessError(
                f"{path}: {path.stat().st_size} bytes, too short for {name} at bytes "
                f"{entry.offset}..{entry.offset + entry.size}: truncated"
            )

    def read(self, name: str) -> np.ndarray:
        """The tensor `name`, its masked CRC32C checked against the index's."""
        self.check(name)
        entry = self.entries[name]
        path = self.shard_path(entry.shard)
        data = bytearray(entry.size)  # writable, so that torch.from_numpy shares it without a warning
        with path.open("rb") as f:
            f.seek(entry.offset)
            got = f.readinto(data)
        if got != entry.size:  # the file shrank since `check`
            raise HarnessError(f"{path}: ends inside {name}: truncated")
        if masked_crc(data) != entry.crc:
            raise HarnessError(
                f"{path}: {name} (bytes {entry.offset}..{entry.offset + entry.size}) fails its "
                "CRC32C check: the checkpoint is corrupt"
            )
        return np.frombuffer(data, DTYPES[entry.dtype]).reshape(entry.shape)


def _entry(value: bytes) -> Entry:
    fields: dict[int, int | bytes] = {}
    partitioned = False
    for number, field in _fields(value):
        fields[number] = field
        partitioned |= number == 7
    shape = fields.get(2, b"")
    if not isinstance(shape, bytes):
        raise TableError("a tensor shape that is not a message")
    return Entry(
        dtype=_int(fields.get(1, 0)),
        shape=_dims(shape),
        shard=_int(fields.get(3, 0)),
        offset=_int(fields.get(4, 0)),
        size=_int(fields.get(5, 0)),
        crc=_int(fields.get(6, 0)),
        partitioned=partitioned,
    )


def _dims(shape: bytes) -> tuple[int, ...]:
    """TensorShapeProto's dims: each a message whose field 1 is the size."""
    dims = []
    for number, dim in _fields(shape):
        if number == 2:
            if not isinstance(dim, bytes):
                raise TableError("a tensor dimension that is not a message")
            size = dict(_fields(dim)).get(1, 0)
            dims.append(_int(size))
    return tuple(dims)


def _int(value: int | bytes) -> int:
    if isinstance(value, bytes) or value >= 1 << 63:  # a negative int64, -1 an unknown size
        raise TableError(f"an integer field holds {value!r}")
    return value


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: an int for varint and fixed-width fields,
    the bytes of length-delimited ones (strings, nested messages)."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        wire = key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = int.from_bytes(buf[pos : pos + width], "little"), pos + width
        elif wire == 2:
            length, pos = varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        else:
            raise TableError(f"protobuf wire type {wire}, which a checkpoint entry does not use")
        if pos > len(buf):
            raise TableError("a protobuf field runs past the end of its message")
        yield key >> 3, value
