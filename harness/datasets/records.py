"""TFRecord framing with CRC32C checks, and decoding of MLCommons examples.

The `tfrecord` package reads the framing but never checks a CRC, so a flipped bit in a shard trains
on garbage silently. This module reads the framing itself (length, masked CRC of the length, data,
masked CRC of the data), verifies both CRCs with the same `crc32c` the package's writer uses, and
decodes each record with the package's `Example` protobuf.
"""

from __future__ import annotations

import os
import struct
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


def _frames(f: BinaryIO, path: Path, size: int) -> Iterator[tuple[int, int, int]]:
    """Walk the framing: yield (record index, byte offset, payload length) with the file
    positioned at the payload. The caller reads or skips `length + 4` bytes before the next."""
    index = 0
    while True:
        start = f.tell()
        header = f.read(12)
        if not header:
            return
        if len(header) < 12:
            raise DataError(
                f"{path}: record {index} at byte {start}: truncated header ({len(header)} of 12 bytes)"
            )
        length, length_crc = struct.unpack("<QI", header)
        if masked_crc(header[:8]) != length_crc:
            raise DataError(f"{path}: record {index} at byte {start}: length CRC mismatch (corrupt framing)")
        if start + 12 + length + 4 > size:
            raise DataError(
                f"{path}: record {index} at byte {start}: truncated record "
                f"(needs {length + 16} bytes, the file ends {size - start} bytes on)"
            )
        yield index, start, length
        index += 1


def iter_records(
    path: Path, take: Callable[[int], bool] = lambda i: True, stop: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield (record index, payload) for the records before `stop` whose index passes `take`.
    Other records are skipped by seeking past them, with their framing still checked."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        for index, start, length in _frames(f, path, size):
            if stop is not None and index >= stop:
                return
            if not take(index):
                f.seek(length + 4, 1)
                continue
            payload = f.read(length + 4)
            (data_crc,) = struct.unpack("<I", payload[length:])
            data = payload[:length]
            if masked_crc(data) != data_crc:
                raise DataError(f"{path}: record {index} at byte {start}: data CRC mismatch")
            yield index, data


def count_records(path: Path) -> int:
    """Number of records in one file (framing and length CRCs checked, payloads skipped)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        count = 0
        for _, _, length in _frames(f, path, size):
            f.seek(length + 4, 1)
            count += 1
        return count


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
            raise DataError(
                f"{where}: feature {name} holds {bad}, expected values in "
                f"[{low}, {high if high is not None else 'inf'})"
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
