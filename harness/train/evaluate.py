"""The evaluation pass: MLM accuracy over the masked tokens, loss and NSP accuracy."""

from __future__ import annotations

import torch

from harness.datasets.mlcommons import PhaseData, eval_batches
from harness.models import BertForPreTraining, PretrainingBatch
from harness.precision.modes import PrecisionMode


def to_batch(batch: dict[str, torch.Tensor]) -> PretrainingBatch:
    return PretrainingBatch(
        input_ids=batch["input_ids"],
        input_mask=batch["input_mask"],
        segment_ids=batch["segment_ids"],
        masked_lm_positions=batch["masked_lm_positions"],
        masked_lm_ids=batch["masked_lm_ids"],
        masked_lm_weights=batch["masked_lm_weights"],
        next_sentence_labels=batch["next_sentence_labels"],
    )


@torch.no_grad()
def evaluate(
    model: BertForPreTraining, data: PhaseData, mode: PrecisionMode, batch_size: int, max_examples: int
) -> dict:
    """The evaluation set's figures, computed as the training step computes (the mode's autocast)."""
    model.eval()
    loss_sum = correct = count = nsp_correct = examples = 0.0
    for raw in eval_batches(data, batch_size, max_examples, model.config.vocab_size):
        with mode.autocast_context():
            out = model(to_batch(raw))
        n = len(raw["next_sentence_labels"])
        right, weight, nsp_right = out.accuracy_counts(raw["next_sentence_labels"])
        loss_sum += out.loss.item() * n
        correct += right
        count += weight
        nsp_correct += nsp_right
        examples += n
    model.train()
    return {
        "eval_mlm_accuracy": correct / max(count, 1),
        "eval_loss": loss_sum / max(examples, 1),
        "eval_nsp_accuracy": nsp_correct / max(examples, 1),
        "eval_examples": int(examples),
    }
