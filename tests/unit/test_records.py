"""TFRecord reading: the MLCommons schema, CRC checks, and one clear error per kind of bad data."""

import gzip
import zlib
from pathlib import Path

import numpy as np
import pytest
from mlcommons_writer import uid_of, write_file

from harness.datasets.mlcommons import RecordSlice, ShardedExamples, resolve_phase_data
from harness.datasets.records import DataError, Shape, count_records, decode_example, iter_records, read_shape
from harness.datasets.schema import shard_files
from harness.errors import HarnessError


def read_all(path: Path, shape: Shape | None = None) -> list[dict]:
    return [decode_example(data, path, i, shape) for i, data in iter_records(path)]


def test_mlcommons_schema_at_seq_512_with_76_predictions(tmp_path):
    path = tmp_path / "part-00000-of-00001"
    write_file(path, range(5), seq_len=512, max_pred=76)
    examples = read_all(path)
    assert len(examples) == 5 == count_records(path)
    assert read_shape(path) == Shape(seq_len=512, max_predictions=76)
    for uid, ex in enumerate(examples):
        assert ex["input_ids"].shape == ex["input_mask"].shape == ex["segment_ids"].shape == (512,)
        assert ex["masked_lm_positions"].shape == ex["masked_lm_ids"].shape == (76,)
        assert ex["masked_lm_weights"].dtype == np.float32 and ex["masked_lm_weights"].shape == (76,)
        assert ex["input_ids"].dtype == np.int64
        assert ex["next_sentence_labels"].tolist() == [uid % 2]
        assert uid_of(ex["input_ids"]) == uid
        # masked_lm_ids are the tokens at masked_lm_positions (the writer took them from input_ids)
        real = ex["masked_lm_weights"] > 0
        assert (ex["input_ids"][ex["masked_lm_positions"][real]] == ex["masked_lm_ids"][real]).all()


def corrupt(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def record_offsets(path: Path) -> list[int]:
    data, offsets, pos = path.read_bytes(), [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += 16 + int.from_bytes(data[pos : pos + 8], "little")
    return offsets


def test_data_crc_mismatch_names_file_and_record(tmp_path):
    path = tmp_path / "part-0"
    write_file(path, range(4))
    corrupt(path, record_offsets(path)[2] + 12 + 30)  # inside record 2's payload
    with pytest.raises(DataError, match=rf"{path}: record 2 at byte \d+: data CRC mismatch"):
        read_all(path)


def test_length_crc_mismatch(tmp_path):
    path = tmp_path / "part-0"
    write_file(path, range(4))
    corrupt(path, record_offsets(path)[1] + 9)  # the CRC of record 1's length
    with pytest.raises(DataError, match=r"record 1 .*length CRC mismatch"):
        count_records(path)


@pytest.mark.parametrize("cut", [5, 200])
def test_truncated_record(tmp_path, cut):
    path = tmp_path / "part-0"
    write_file(path, range(3))
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(DataError, match=rf"{path}: record 2 .*truncated"):
        read_all(path)


def test_wrong_feature_shape(tmp_path):
    path = tmp_path / "part-0"
    write_file(path, range(2), override={"segment_ids": ([0] * 100, "int")})
    with pytest.raises(DataError, match=r"record 0: feature segment_ids has 100 values, expected 128"):
        read_all(path)
    # Against a data set's declared shape, a record of another length is refused too.
    other = tmp_path / "part-1"
    write_file(other, range(2), seq_len=64)
    with pytest.raises(DataError, match=r"input_ids has 64 values, expected 128"):
        read_all(other, Shape(128, 20))


@pytest.mark.parametrize(
    ("feature", "values", "message"),
    [
        (
            "masked_lm_positions",
            [200] * 20,
            r"feature masked_lm_positions holds 200, expected values in \[0, 128\)",
        ),
        ("next_sentence_labels", [2], r"feature next_sentence_labels holds 2, expected values in \[0, 2\)"),
        ("input_ids", [40000] * 128, r"feature input_ids holds 40000, expected values in \[0, 30522\)"),
    ],
)
def test_values_out_of_range(tmp_path, feature, values, message):
    path = tmp_path / "part-0"
    write_file(path, range(2), override={feature: (values, "int")})
    with pytest.raises(DataError, match=rf"{path}: record 0: {message}"):
        [decode_example(d, path, i, Shape(128, 20), vocab_size=30522) for i, d in iter_records(path)]


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_non_finite_weights_are_bad_data(tmp_path, bad):
    """An inf weight would end the run as diverged, a NaN one would poison the loss unseen."""
    path = tmp_path / "part-0"
    write_file(path, range(2), override={"masked_lm_weights": ([1.0] * 19 + [bad], "float")})
    with pytest.raises(
        DataError, match=rf"{path}: record 0: feature masked_lm_weights holds {bad}, expected"
    ):
        read_all(path)


def test_wrong_feature_dtype(tmp_path):
    path = tmp_path / "part-0"
    write_file(path, range(2), override={"masked_lm_weights": ([1] * 20, "int")})
    with pytest.raises(DataError, match=r"feature masked_lm_weights is int64, expected float32"):
        read_all(path)


def test_missing_feature(tmp_path):
    path = tmp_path / "part-0"
    path.parent.mkdir(exist_ok=True)
    from tfrecord.writer import TFRecordWriter

    w = TFRecordWriter(str(path))
    w.write({"input_ids": ([1, 2], "int")})
    w.close()
    with pytest.raises(DataError, match=r"record 0: feature input_mask is missing"):
        read_all(path)


def test_missing_and_empty_directories(tmp_path):
    with pytest.raises(HarnessError, match=r"seq_128: dataset directory does not exist"):
        resolve_phase_data(tmp_path, 1, 0.9, 8)
    (tmp_path / "seq_128").mkdir()
    with pytest.raises(HarnessError, match=r"seq_128: no part-\* TFRecord files"):
        resolve_phase_data(tmp_path, 1, 0.9, 8)
    (tmp_path / "seq_128" / "part-00000.index").write_text("0 10\n")
    with pytest.raises(HarnessError, match=r"no part-\* TFRecord files"):
        shard_files(tmp_path / "seq_128")  # an index alone is not data


def test_bad_record_in_a_dataloader_worker_reaches_the_caller_as_one_line(tmp_path):
    path = tmp_path / "part-0"
    write_file(path, range(6))
    corrupt(path, record_offsets(path)[4] + 40)
    dataset = ShardedExamples(
        (RecordSlice(str(path)),), Shape(128, 20), batch_size=2, seed=0, epochs=1, shuffle_buffer=0
    )
    items = list(dataset)
    assert items[-1] == {"error": f"{path}: record 4 at byte {record_offsets(path)[4]}: data CRC mismatch"}


def compress(path: Path, kind: str) -> None:
    """The file as TensorFlow's TFRecordOptions(compression_type=kind) writes it: the whole
    record stream in one gzip or zlib stream."""
    raw = path.read_bytes()
    path.write_bytes(gzip.compress(raw) if kind == "GZIP" else zlib.compress(raw))


@pytest.mark.parametrize("kind", ["GZIP", "ZLIB"])
def test_compressed_files_are_read_with_their_crcs_checked(tmp_path, kind):
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    write_file(plain, range(6))
    write_file(packed, range(6))
    compress(packed, kind)
    assert packed.read_bytes() != plain.read_bytes()
    assert count_records(packed) == 6
    assert list(iter_records(packed, take=lambda i: i % 2 == 0)) == list(
        iter_records(plain, take=lambda i: i % 2 == 0)
    )
    assert read_shape(packed) == read_shape(plain)

    write_file(packed, range(6))
    corrupt(packed, record_offsets(packed)[4] + 40)  # a flipped byte inside record 4, then compressed
    compress(packed, kind)
    with pytest.raises(
        DataError, match=rf"packed \({kind}, decompressed\): record 4 at byte \d+: data CRC mismatch"
    ):
        read_all(packed)

    write_file(packed, range(6))
    compress(packed, kind)
    packed.write_bytes(packed.read_bytes()[:-40])  # cut short
    with pytest.raises(DataError, match=rf"packed: corrupt {kind} stream \(.*end(ed|s) before"):
        count_records(packed)
