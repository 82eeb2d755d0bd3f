"""LevelDB's table format, in which TensorFlow writes a checkpoint's .index file, read in order.

    file    = data blocks, metaindex block, index block, footer (48 bytes)
    footer  = metaindex handle, index handle (each: offset, size as varints), zero padding to 40
              bytes, the magic number (8 bytes, little-endian)
    block   = entries, restart offsets (uint32 each), their count (uint32); then a trailer:
              compression (1 byte, 0: none), masked CRC32C of the block and that byte (uint32)
    entry   = key bytes shared with the previous key, unshared key bytes, value bytes (varints),
              the unshared key bytes, the value

The index block's values are the handles of the data blocks, whose entries are the table's. The
restart points, where a key is written whole, serve seeking; reading every entry in order needs
none of them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from harness.datasets.records import masked_crc
from harness.errors import HarnessError

MAGIC = 0xDB4775248B80FB57
FOOTER = 48
TRAILER = 5


class TableError(ValueError):
    """Bytes that do not follow the format; the reader of the table names the file."""


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The base-128 varint (protobuf's and LevelDB's) at buf[pos]: its value, the position after it."""
    value = shift = 0
    while shift < 70:
        if pos >= len(buf):
            raise TableError("a varint runs past the end of its block")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise TableError("a varint longer than 10 bytes")


def read_table(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of the table in `path`, in key order; TableError where its blocks are
    damaged."""
    data = path.read_bytes()
    if len(data) < FOOTER or struct.unpack("<Q", data[-8:])[0] != MAGIC:
        raise HarnessError(
            f"{path}: not a TensorFlow checkpoint index (it does not end in a table footer): "
            "truncated, or another file"
        )
    _, pos = _handle(data, len(data) - FOOTER)  # the metaindex: TensorFlow writes none
    index, _ = _handle(data, pos)
    for _, handle in _entries(_block(data, index)):
        yield from _entries(_block(data, _handle(handle, 0)[0]))


def _handle(buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = varint(buf, pos)
    size, pos = varint(buf, pos)
    return (offset, size), pos


def _block(data: bytes, handle: tuple[int, int]) -> bytes:
    """The contents of the block at `handle`, its trailer checked."""
    offset, size = handle
    end = offset + size
    if end + TRAILER > len(data) - FOOTER:
        raise TableError(f"the block at byte {offset} ends past the table's last block: truncated")
    kind, crc = struct.unpack("<BI", data[end : end + TRAILER])
    if masked_crc(data[offset : end + 1]) != crc:
        raise TableError(f"the block at byte {offset} fails its CRC32C check")
    if kind != 0:
        raise TableError(f"the block at byte {offset} is compressed (type {kind}); TensorFlow writes none")
    return data[offset:end]


def _entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise TableError("a block shorter than its restart count")
    restarts = struct.unpack("<I", block[-4:])[0]
    limit = len(block) - 4 * (restarts + 1)
    if limit < 0:
        raise TableError(f"a block of {len(block)} bytes with {restarts} restart points")
    key, pos = b"", 0
    while pos < limit:
        shared, pos = varint(block, pos)
        unshared, pos = varint(block, pos)
        length, pos = varint(block, pos)
        if shared > len(key) or pos + unshared + length > limit:
            raise TableError("an entry runs past the end of its block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length
