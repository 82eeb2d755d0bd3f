"""Analytic FLOP count of a BERT pre-training step, for model FLOP utilisation (MFU).

Only matrix products are counted (2 FLOPs per multiply-add); layer norms, softmax, GELU and the
optimizer are a few percent of the total and are the kind of work MFU is meant to expose, not hide.
Attention is counted on the padded length, since that is what the kernels compute. The last layer
is counted on the rows the heads read (harness.models.bert.head_positions), the MLM head on the
masked tokens: what the model computes, as useful work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.models.config import BertConfig


def layer_forward_flops(cfg: BertConfig, seq_len: int, sequences: int, rows: int) -> int:
    """Forward FLOPs of one layer on `sequences` sequences of seq_len tokens whose outputs are
    computed at `rows` rows in all: the fused Q, K, V projection runs on every token, the rest on
    those rows (every token but in the last layer)."""
    S, H, inter = seq_len, cfg.hidden_size, cfg.intermediate_size
    per_row = (
        2 * S * H  # a query's scores (q @ K^T) over all heads
        + 2 * S * H  # probabilities @ V
        + 2 * H * H  # attention output projection
        + 2 * H * inter * 2  # feed-forward up and down
    )
    return sequences * 2 * S * H * 3 * H + rows * per_row


def encoder_forward_flops(cfg: BertConfig, batch_size: int, seq_len: int, head_rows: int) -> int:
    """Forward FLOPs of the encoder stack on a batch, its last layer on `head_rows` rows in all."""
    every_token = layer_forward_flops(cfg, seq_len, batch_size, batch_size * seq_len)
    last = layer_forward_flops(cfg, seq_len, batch_size, head_rows)
    return (cfg.num_hidden_layers - 1) * every_token + last


def heads_forward_flops(cfg: BertConfig, masked_tokens: int) -> tuple[int, int]:
    """Forward FLOPs of the heads: (pooler + NSP classifier per sequence, MLM head for all masked tokens)."""
    H, V = cfg.hidden_size, cfg.vocab_size
    per_sequence = 2 * H * H + 2 * H * 2
    return per_sequence, masked_tokens * (2 * H * H + 2 * H * V)


def training_step_flops(
    cfg: BertConfig, batch_size: int, seq_len: int, head_rows: int, masked_tokens: int
) -> int:
    """Forward + backward FLOPs of one step; backward costs twice the forward (input and weight
    grads). head_rows: the rows the last layer ran on, over the batch (PretrainingOutput)."""
    per_sequence, mlm = heads_forward_flops(cfg, masked_tokens)
    forward = encoder_forward_flops(cfg, batch_size, seq_len, head_rows) + batch_size * per_sequence + mlm
    return 3 * forward
