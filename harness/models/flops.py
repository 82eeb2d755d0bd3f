"""Analytic FLOP count of a BERT pre-training step, for model FLOP utilisation (MFU).

Only matrix products are counted (2 FLOPs per multiply-add); layer norms, softmax, GELU and the
optimizer are a few percent of the total and are the kind of work MFU is meant to expose, not hide.
Attention is counted on the padded length, since that is what the kernels compute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.models.config import BertConfig


def encoder_forward_flops(cfg: BertConfig, seq_len: int) -> int:
    """Forward FLOPs of the encoder stack for one sequence."""
    S, H, inter = seq_len, cfg.hidden_size, cfg.intermediate_size
    per_layer = (
        2 * S * H * 3 * H  # fused Q, K, V projection
        + 2 * S * S * H  # Q @ K^T over all heads
        + 2 * S * S * H  # probabilities @ V
        + 2 * S * H * H  # attention output projection
        + 2 * S * H * inter * 2  # feed-forward up and down
    )
    return cfg.num_hidden_layers * per_layer


def heads_forward_flops(cfg: BertConfig, masked_tokens: int) -> tuple[int, int]:
    """Forward FLOPs of the heads: (pooler + NSP classifier per sequence, MLM head for all masked tokens)."""
    H, V = cfg.hidden_size, cfg.vocab_size
    per_sequence = 2 * H * H + 2 * H * 2
    return per_sequence, masked_tokens * (2 * H * H + 2 * H * V)


def training_step_flops(cfg: BertConfig, batch_size: int, seq_len: int, masked_tokens: int) -> int:
    """Forward + backward FLOPs of one step; backward costs twice the forward (input and weight grads)."""
    per_sequence, mlm = heads_forward_flops(cfg, masked_tokens)
    forward = batch_size * (encoder_forward_flops(cfg, seq_len) + per_sequence) + mlm
    return 3 * forward
