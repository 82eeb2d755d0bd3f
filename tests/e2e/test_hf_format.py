"""A model_save loads into Hugging Face BertForPreTraining and computes the same outputs."""

import pytest
import torch
from harness_cli import launch

from harness.datasets.mlcommons import eval_batches, resolve_phase_data
from harness.models import BertForPreTraining
from harness.train import checkpoint
from harness.train.evaluate import to_batch

transformers = pytest.importorskip("transformers")


def test_hugging_face_loads_a_model_save(capfd, synth_dir, tmp_path):
    out = tmp_path / "run"
    proc = launch(
        capfd,
        "train",
        "--phase",
        1,
        "--model",
        "bert-tiny",
        "--precision",
        "fp32",
        "--dataset",
        synth_dir,
        "--output",
        out,
        "--steps",
        3,
        "--batch-size",
        4,
        "--eval-examples",
        8,
    )
    assert proc.returncode == 0, proc.stderr
    save = out / "model_save"

    hf, info = transformers.BertForPreTraining.from_pretrained(save, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    hf.eval()
    ours = BertForPreTraining(checkpoint.load_config(save))
    checkpoint.load_weights(save, ours)
    ours.eval()

    batch = next(eval_batches(resolve_phase_data(synth_dir, 1, 0.9, 8), 4, 4))
    with torch.no_grad():
        mine = ours(to_batch(batch))
        theirs = hf(
            input_ids=batch["input_ids"],
            attention_mask=batch["input_mask"],
            token_type_ids=batch["segment_ids"],
        )
    selected = batch["masked_lm_weights"] > 0
    rows = torch.arange(4)[:, None].expand_as(selected)[selected]
    cols = batch["masked_lm_positions"][selected]
    torch.testing.assert_close(mine.mlm_logits, theirs.prediction_logits[rows, cols], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(mine.nsp_logits, theirs.seq_relationship_logits, rtol=1e-4, atol=1e-4)
