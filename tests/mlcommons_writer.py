"""Test data written with the `tfrecord` package's writer directly, independent of our synth code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from tfrecord.writer import TFRecordWriter


def example(uid: int, seq_len: int, max_pred: int, rng: np.random.Generator, vocab_size: int = 30522) -> dict:
    """One MLCommons-schema example whose first real token after [CLS] encodes `uid` (as 1000 + uid,
    so a vocab_size above 1000 + the largest uid)."""
    length = int(rng.integers(8, seq_len + 1))
    ids = rng.integers(999, vocab_size, size=seq_len)
    ids[0], ids[1], ids[length - 1] = 101, 1000 + uid, 102
    ids[length:] = 0
    n_pred = min(max_pred, max(1, length // 7))
    positions = np.zeros(max_pred, dtype=np.int64)
    positions[:n_pred] = np.sort(rng.choice(np.arange(2, length - 1), size=n_pred, replace=False))
    masked_ids = np.where(np.arange(max_pred) < n_pred, ids[positions], 0)
    return {
        "input_ids": (ids.tolist(), "int"),
        "input_mask": ([1] * length + [0] * (seq_len - length), "int"),
        "segment_ids": ([0] * (length // 2) + [1] * (length - length // 2) + [0] * (seq_len - length), "int"),
        "masked_lm_positions": (positions.tolist(), "int"),
        "masked_lm_ids": (masked_ids.tolist(), "int"),
        "masked_lm_weights": ([1.0] * n_pred + [0.0] * (max_pred - n_pred), "float"),
        "next_sentence_labels": ([uid % 2], "int"),
    }


def write_file(
    path: Path,
    uids: range,
    seq_len: int = 128,
    max_pred: int = 20,
    override: dict | None = None,
    vocab_size: int = 30522,
) -> None:
    """Write one example per uid; `override` replaces features (to make bad data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(uids.start)
    writer = TFRecordWriter(str(path))
    for uid in uids:
        features = example(uid, seq_len, max_pred, rng, vocab_size)
        features.update(override or {})
        writer.write(features)
    writer.close()


def uid_of(input_ids) -> int:
    return int(input_ids[1]) - 1000


TF_FIXTURE = Path(__file__).parent / "fixtures" / "tf_checkpoint"
"""The tiny TensorFlow checkpoint tensorflow-cpu wrote (its make.py says how)."""


def mlcommons_download(folder: Path) -> tuple[Path, Path]:
    """The TF fixture laid out as MLCommons' download is (folder/bert_config.json beside
    folder/tf1_ckpt/model.ckpt-1234.*), and a phase-2 data set whose token ids and lengths fit its
    small vocabulary and 128 positions: (the checkpoint's prefix, DATASET_DIR)."""
    (folder / "tf1_ckpt").mkdir(parents=True)
    for f in TF_FIXTURE.glob("model.ckpt-1234.*"):
        shutil.copy(f, folder / "tf1_ckpt")
    shutil.copy(TF_FIXTURE / "bert_config.json", folder)
    vocab = json.loads((TF_FIXTURE / "bert_config.json").read_text())["vocab_size"]
    data = folder / "data"
    write_file(data / "seq_512" / "part-00000-of-00001", range(80), vocab_size=vocab)
    write_file(data / "eval" / "part-00000-of-00001", range(80, 96), vocab_size=vocab)
    return folder / "tf1_ckpt" / "model.ckpt-1234", data
