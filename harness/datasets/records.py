"""TFRecord framing with CRC32C checks, and decoding of MLCommons examples.

The `tfrecord` package reads the framing but never checks a CRC, so a flipped bit in a shard trains
on garbage silently. This module reads the framing itself (length, masked CRC of the length, data,
masked CRC of the data), verifies both CRCs with the same `crc32c` the package's writer uses, and
decodes each record with the package's `Example` protobuf.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import crc32c
import numpy as np
from tfrecord import example_pb2

from harness.datasets.schema import NSP_FEATURE, PRED_FEATURES, SEQ_FEATURES, WEIGHT_FEATURE
from harness.errors import HarnessError

_MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes | memoryview) -> int:
    """TFRecord's masked CRC32C: rotate right by 15 bits and add a constant."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class DataError(HarnessError):
    """A record that is corrupt or does not match the schema; the message names file and record."""


def _compression(path: Path, head: bytes) -> str | None:
    """None for a plain TFRecord file (its first length CRC checks out), else GZIP or ZLIB, the
    two compressions TensorFlow's TFRecordOptions writes."""
    if len(head) >= 12 and masked_crc(head[:8]) == struct.unpack("<I", head[8:12])[0]:
        return None
    if head[:2] == b"\x1f\x8b":
        return "GZIP"
    if len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0:
        return "ZLIB"
    return None  # not a TFRecord at all: the framing check names it


class _Inflated(io.RawIOBase):
    """A zlib stream, read as the bytes it holds."""

    def __init__(self, f: BinaryIO) -> None:
        self._f, self._z, self._left = f, zlib.decompressobj(), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._left and not self._z.eof:
            chunk = self._f.read(1 << 16)
            if not chunk:
                raise EOFError("the compressed stream ends before its end marker")
            self._left = self._z.decompress(chunk)
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[tuple[BinaryIO, int | None, str]]:
    """The file's record stream, its size when it can be seeked (plain files), and how to name
    it in messages (offsets in a compressed file are in its decompressed stream)."""
    with open(path, "rb") as f:
        kind = _compression(path, f.read(12))
        f.seek(0)
        if kind is None:
            yield f, os.fstat(f.fileno()).st_size, str(path)
            return
        stream = gzip.GzipFile(fileobj=f) if kind == "GZIP" else io.BufferedReader(_Inflated(f))
        try:
            yield stream, None, f"{path} ({kind}, decompressed)"  # type: ignore[misc]
        except (OSError, EOFError, zlib.error) as exc:  # a gzip or zlib stream cut short or corrupt
            raise DataError(f"{path}: corrupt {kind} stream ({exc})") from None


def _records(path: Path, take: Callable[[int], bool], stop: int | None) -> Iterator[tuple[int, bytes | None]]:
    """Walk the framing: (record index, payload) for the records before `stop`, the payload None
    for a record `take` refuses (skipped: seeked past in a plain file, its CRC then unchecked)."""
    with _opened(path) as (f, size, where):
        index, start = 0, 0
        while stop is None or index < stop:
            header = f.read(12)
            if not header:
                return
            at = f"{where}: record {index} at byte {start}"
            if len(header) < 12:
                raise DataError(f"{at}: truncated header ({len(header)} of 12 bytes)")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc(header[:8]) != length_crc:
                raise DataError(f"{at}: length CRC mismatch (corrupt framing)")
            if size is not None and start + 12 + length + 4 > size:
                ends = f"the file ends {size - start} bytes on"
                raise DataError(f"{at}: truncated record (needs {length + 16} bytes, {ends})")
            wanted = take(index)
            if size is not None and not wanted:
                f.seek(length + 4, 1)
                yield index, None
            else:
                payload = f.read(length + 4)
                if len(payload) < length + 4:
                    raise DataError(
                        f"{at}: truncated record (needs {length + 16} bytes, the stream ends first)"
                    )
                (data_crc,) = struct.unpack("<I", payload[length:])
                data = payload[:length]
                if masked_crc(data) != data_crc:
                    raise DataError(f"{at}: data CRC mismatch")
                yield index, data if wanted else None
            index, start = index + 1, start + 12 + length + 4


def iter_records(
    path: Path, take: Callable[[int], bool] = lambda i: True, stop: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield (record index, payload) for the records before `stop` whose index passes `take`.
    Plain files, or GZIP and ZLIB compressed ones as TensorFlow writes them; every length CRC
    is checked, and the data CRC of every record read."""
    for index, data in _records(path, take, stop):
        if data is not None:
            yield index, data


def count_records(path: Path) -> int:
    """Number of records in one file (framing and length CRCs checked, payloads skipped)."""
    return sum(1 for _ in _records(path, lambda i: False, None))


@dataclass(frozen=True)
class Shape:
    """The per-example shape a dataset has: sequence length and masked-LM prediction slots."""

    seq_len: int
    max_predictions: int


def decode_example(
    data: bytes, path: Path, index: int, shape: Shape | None = None, vocab_size: int | None = None
) -> dict[str, np.ndarray]:
    """Parse one serialized `tf.train.Example` and check it against the schema (and `shape`):
    feature presence, dtype and length, and value ranges (token ids below `vocab_size`, masked
    positions inside the sequence, 0/1 masks and labels)."""
    example = example_pb2.Example()
    try:
        example.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError, which is not importable portably
        raise DataError(f"{path}: record {index}: not a tf.train.Example ({exc})") from None
    features = example.features.feature
    where = f"{path}: record {index}"
    out: dict[str, np.ndarray] = {}
    for name in (*SEQ_FEATURES, *PRED_FEATURES, NSP_FEATURE):
        out[name] = np.asarray(_values(features, name, "int64_list", where), dtype=np.int64)
    out[WEIGHT_FEATURE] = np.asarray(_values(features, WEIGHT_FEATURE, "float_list", where), dtype=np.float32)
    seq_len = shape.seq_len if shape else len(out[SEQ_FEATURES[0]])
    max_pred = shape.max_predictions if shape else len(out[PRED_FEATURES[0]])
    expected = {
        **dict.fromkeys(SEQ_FEATURES, seq_len),
        **dict.fromkeys((*PRED_FEATURES, WEIGHT_FEATURE), max_pred),
        NSP_FEATURE: 1,
    }
    for name, length in expected.items():
        if len(out[name]) != length:
            raise DataError(f"{where}: feature {name} has {len(out[name])} values, expected {length}")
    ranges = {
        "input_ids": (0, vocab_size),
        "masked_lm_ids": (0, vocab_size),
        "masked_lm_positions": (0, seq_len),
        "input_mask": (0, 2),
        "segment_ids": (0, None),
        NSP_FEATURE: (0, 2),
    }
    for name, (low, high) in ranges.items():
        values = out[name]
        if values.min() < low or (high is not None and values.max() >= high):
            bad = values[(values < low) | (values >= (high if high is not None else np.inf))][0]
            # A token id past the vocabulary may as well be the model config's fault: say whose.
            whose = " (the model's vocab_size)" if high is not None and high == vocab_size else ""
            raise DataError(
                f"{where}: feature {name} holds {bad}, expected values in "
                f"[{low}, {high if high is not None else 'inf'}){whose}"
            )
    weights = out[WEIGHT_FEATURE]
    if not np.isfinite(weights).all():
        # an inf weight would end the run as diverged, a NaN one poison the loss silently
        bad = weights[~np.isfinite(weights)][0]
        raise DataError(f"{where}: feature {WEIGHT_FEATURE} holds {bad}, expected finite weights")
    if weights.min() < 0:
        raise DataError(f"{where}: feature {WEIGHT_FEATURE} holds a negative weight")
    return out


def _values(features, name: str, kind: str, where: str):
    if name not in features:
        raise DataError(f"{where}: feature {name} is missing")
    actual = features[name].WhichOneof("kind")
    if actual != kind:
        dtype = {"int64_list": "int64", "float_list": "float32", "bytes_list": "bytes"}
        raise DataError(f"{where}: feature {name} is {dtype.get(actual, actual)}, expected {dtype[kind]}")
    return getattr(features[name], kind).value


def read_shape(path: Path) -> Shape:
    """The shape of a dataset, taken from the first record of its first file."""
    for index, data in iter_records(path, stop=1):
        example = decode_example(data, path, index)
        return Shape(len(example["input_ids"]), len(example["masked_lm_ids"]))
    raise DataError(f"{path}: file holds no records")
