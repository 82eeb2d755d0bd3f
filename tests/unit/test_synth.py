"""Synthetic data: the MLCommons layout and schema, the BERT masking recipe, determinism."""

import json

import numpy as np
import pytest

from harness.datasets.mlcommons import ShardedExamples, resolve_phase_data
from harness.datasets.records import Shape, count_records, read_shape
from harness.datasets.schema import CLS_ID, MASK_ID, SEP_ID, shard_files
from harness.datasets.synth import SynthSpec, synthesize
from harness.errors import HarnessError


def all_examples(slices, shape):
    ds = ShardedExamples(tuple(slices), shape, 64, seed=0, shuffle_buffer=0, epochs=1)
    return [{k: v[i].numpy() for k, v in b.items()} for b in ds for i in range(len(b["input_ids"]))]


def test_layout_and_schema(synth_dir):
    files = shard_files(synth_dir / "seq_128")
    assert [f.name for f in files] == [f"part-{i:05d}-of-00010_128" for i in range(10)]
    assert len(shard_files(synth_dir / "seq_512")) == 10
    assert read_shape(files[0]) == Shape(128, 76)
    assert read_shape(shard_files(synth_dir / "seq_512")[0]) == Shape(512, 76)
    assert sum(count_records(f) for f in files) == 4096
    assert count_records(shard_files(synth_dir / "eval")[0]) == 256
    info = json.loads((synth_dir / "synth.json").read_text())
    assert info["mlm_majority_accuracy"] < 0.05 and info["mlm_unigram_entropy_nats"] > 4


def test_examples_follow_the_bert_recipe(synth_dir):
    data = resolve_phase_data(synth_dir, 1, 0.9, 16)
    examples = all_examples(data.train[:2], data.shape)
    masked = kept_or_random = total_real = 0
    labels = []
    for ex in examples:
        n = int(ex["input_mask"].sum())
        ids, seg = ex["input_ids"][:n], ex["segment_ids"][:n]
        assert ids[0] == CLS_ID and ids[-1] == SEP_ID and (ids == SEP_ID).sum() == 2
        assert (ex["input_ids"][n:] == 0).all() and (ex["input_mask"][n:] == 0).all()
        first_sep = int(np.flatnonzero(ids == SEP_ID)[0])
        assert (seg[: first_sep + 1] == 0).all() and (seg[first_sep + 1 :] == 1).all()
        k = int(ex["masked_lm_weights"].sum())
        assert k == round(n * 0.15) or k == ex["masked_lm_weights"].size
        pos = ex["masked_lm_positions"][:k]
        assert (np.diff(pos) > 0).all() and not np.isin(ids[pos], [CLS_ID, SEP_ID]).any()
        masked += int((ids[pos] == MASK_ID).sum())
        kept_or_random += int((ids[pos] != MASK_ID).sum())
        total_real += n
        labels.append(int(ex["next_sentence_labels"]))
    share_masked = masked / (masked + kept_or_random)
    assert 0.75 < share_masked < 0.85  # 80% [MASK], the rest kept or random
    assert 0.45 < np.mean(labels) < 0.55  # next sentence 50/50


def test_deterministic_per_seed_and_reusable(tmp_path):
    spec = SynthSpec(examples=80, eval_examples=4, shards=2, seed=3)
    a, b = tmp_path / "a", tmp_path / "b"
    synthesize(a, spec)
    synthesize(b, spec)
    for f in sorted(a.rglob("part-*")):
        assert f.read_bytes() == (b / f.relative_to(a)).read_bytes()
    c = tmp_path / "c"
    synthesize(c, SynthSpec(examples=80, eval_examples=4, shards=2, seed=4))
    first = "seq_128/part-00000-of-00002_128"
    assert (c / first).read_bytes() != (a / first).read_bytes()

    with pytest.raises(HarnessError, match="exists and is not an empty directory"):
        synthesize(a, spec)
    assert synthesize(a, spec, reuse=True)["seed"] == 3
    info = json.loads((a / "synth.json").read_text())
    (a / "synth.json").write_text(json.dumps({**info, "topics": 16}))  # made by an older generator
    with pytest.raises(HarnessError, match="written with other settings"):
        synthesize(a, spec, reuse=True)
    (a / "synth.json").write_text(json.dumps(info))
    with pytest.raises(HarnessError, match="written with other settings"):
        synthesize(a, SynthSpec(examples=80, eval_examples=4, shards=2, seed=9), reuse=True)
    assert not list(tmp_path.glob(".*"))  # no temporary directories left behind
