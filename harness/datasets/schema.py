"""The MLCommons BERT pre-training TFRecord schema and the dataset directory layout."""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError

SEQ_FEATURES = ("input_ids", "input_mask", "segment_ids")
"""int64 features of length seq_len."""
PRED_FEATURES = ("masked_lm_positions", "masked_lm_ids")
"""int64 features of length max_predictions."""
WEIGHT_FEATURE = "masked_lm_weights"
"""float32 feature of length max_predictions."""
NSP_FEATURE = "next_sentence_labels"
"""int64 feature of length 1: 0 = B follows A, 1 = B is random (the MLCommons convention)."""
ALL_FEATURES = (*SEQ_FEATURES, *PRED_FEATURES, WEIGHT_FEATURE, NSP_FEATURE)

PHASE_DIRS = {1: "seq_128", 2: "seq_512"}
"""Sub-directory of DATASET_DIR each phase trains on (Intel's model-zoo layout)."""
EVAL_DIR = "eval"

# Token ids of BERT's uncased WordPiece vocabulary.
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = 0, 100, 101, 102, 103
FIRST_WORDPIECE_ID = 999
"""Ids below this are [PAD], [unused*] and the special tokens; real word pieces start here."""


def shard_files(directory: Path) -> list[Path]:
    """The ordered shard list of one layout directory: every `part-*` file except tfrecord indexes."""
    if not directory.is_dir():
        raise HarnessError(
            f"{directory}: dataset directory does not exist "
            "(expected DATASET_DIR/seq_128, DATASET_DIR/seq_512 with part-* files)"
        )
    files = sorted(p for p in directory.glob("part-*") if p.is_file() and p.suffix != ".index")
    if not files:
        raise HarnessError(f"{directory}: no part-* TFRecord files in the directory")
    return files
