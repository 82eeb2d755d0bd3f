"""BERT for pre-training (masked LM + next-sentence prediction), in one readable file.

Module names mirror Hugging Face `BertForPreTraining` so that a saved state dict maps onto it
one to one; the single difference is the fused query/key/value projection (`attention.self.qkv`),
which `hf_format` splits at save time. Fusing the three projections turns three GEMMs into one
wider GEMM, which keeps the matrix units busier at small batch sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.config import ACTIVATIONS, BertConfig
from harness.models.dropout import Dropout, attention
from harness.models.flops import training_step_flops
from harness.models.tied import TiedGradient, decode, lookup


@dataclass
class PretrainingBatch:
    """One batch in the MLCommons schema, as tensors."""

    input_ids: torch.Tensor  # [B, S] int64
    input_mask: torch.Tensor  # [B, S] int64, 1 = real token
    segment_ids: torch.Tensor  # [B, S] int64
    masked_lm_positions: torch.Tensor  # [B, P] int64
    masked_lm_ids: torch.Tensor  # [B, P] int64
    masked_lm_weights: torch.Tensor  # [B, P] float32, 0 = padding slot
    next_sentence_labels: torch.Tensor  # [B] int64
    mlm_weight_sum: torch.Tensor | None = None
    """What the MLM loss divides by; None: this batch's weight sum. Data-parallel ranks pass the
    global batch's sum over the world size, so that DDP's average of their gradients is the
    gradient of the global batch's loss however the masked tokens fall among the ranks."""


@dataclass
class PretrainingOutput:
    loss: torch.Tensor  # mlm_loss + nsp_loss, fp32 scalar
    mlm_loss: torch.Tensor
    nsp_loss: torch.Tensor
    # [rows, vocab]: the positions with weight > 0, then in training the weight-0 rows that
    # BertForPreTraining.masked_row_multiple adds
    mlm_logits: torch.Tensor
    mlm_targets: torch.Tensor  # [rows]
    mlm_weights: torch.Tensor  # [rows]
    nsp_logits: torch.Tensor  # [B, 2]
    masked_tokens: int  # masked positions (for the FLOP count: the padded rows are no useful work)
    head_rows: int  # rows the last layer ran on, over the batch (head_positions; for the FLOP count)

    def accuracy_counts(self, nsp_labels: torch.Tensor) -> tuple[float, float, int]:
        """(weighted masked tokens predicted right, weighted masked tokens, right NSP answers).
        Kept out of the forward pass: an argmax over the vocabulary costs time in every step."""
        right = (self.mlm_logits.argmax(-1) == self.mlm_targets).float()
        return (
            float((right * self.mlm_weights).sum()),
            float(self.mlm_weights.sum()),
            int((self.nsp_logits.argmax(-1) == nsp_labels).sum()),
        )


class Embeddings(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(
        self, input_ids: torch.Tensor, segment_ids: torch.Tensor, tied: TiedGradient | None = None
    ) -> torch.Tensor:
        """tied: the forward pass's decoder shares the word embeddings (harness.models.tied)."""
        seq_len = input_ids.shape[1]
        words = (
            self.word_embeddings(input_ids)
            if tied is None
            else lookup(input_ids, self.word_embeddings.weight, self.word_embeddings.padding_idx, tied)
        )
        x = words + self.position_embeddings.weight[:seq_len] + self.token_type_embeddings(segment_ids)
        return self.dropout(self.LayerNorm(x))


def rows_at(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x [B, ..., S, D] at positions [B, R] of each sequence's S axis: [B, ..., R, D]."""
    B, R = positions.shape
    index = positions.view(B, *[1] * (x.dim() - 3), R, 1).expand(*x.shape[:-2], R, x.shape[-1])
    return torch.gather(x, -2, index)


def head_positions(batch: PretrainingBatch) -> torch.Tensor:
    """[B, 1 + slots] positions the heads read from the last layer: [CLS] (the pooler's), then the
    masked-position slots up to the last one any sequence of the batch uses (a batch cut from
    longer records, as phase 1's from 76-slot data, uses fewer than it carries)."""
    used = (batch.masked_lm_weights > 0).any(0).nonzero()
    slots = int(used[-1]) + 1 if len(used) else 0
    cls = torch.zeros_like(batch.masked_lm_positions[:, :1])
    return torch.cat([cls, batch.masked_lm_positions[:, :slots]], 1)


def masked_rows(selected: torch.Tensor, multiple: int) -> torch.Tensor:
    """Flat indices into [B, slots] of the masked tokens (`selected`), in order, then of unused
    slots up to a multiple of `multiple` rows, or up to every slot where there are fewer."""
    flat = selected.reshape(-1)
    rows = flat.nonzero().squeeze(1)
    pad = min(-len(rows) % multiple, flat.numel() - len(rows))
    if pad == 0:
        return rows
    return torch.cat([rows, (~flat).nonzero().squeeze(1)[:pad]])


class SelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.dropout_p = cfg.attention_probs_dropout_prob
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        # LAMB gives query, key and value a trust ratio each, as for the reference's three layers.
        self.qkv.weight.lamb_chunks = self.qkv.bias.lamb_chunks = 3  # type: ignore[attr-defined]

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, queries: torch.Tensor | None = None
    ) -> torch.Tensor:
        """queries: [B, R] positions whose outputs are wanted (then [B, R, H]), or None (all S);
        the keys and values come from every position either way."""
        B, S, H = x.shape
        # [B, S, 3H] -> 3 x [B, heads, S, head_dim]; the queries' projection too runs on all S,
        # in the one GEMM (a backend may hold the weight in a layout that cannot be cut)
        q, k, v = self.qkv(x).view(B, S, 3, self.num_heads, H // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.context(q, k, v, mask, queries)

    def context(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        queries: torch.Tensor | None,
    ) -> torch.Tensor:
        """The attention's output for q, k, v of [B, heads, S, head_dim], at the rows `queries`
        (or all S), as [B, rows, H]."""
        if queries is not None:
            q = rows_at(q, queries)
        B, heads, rows, head_dim = q.shape
        return self.attend(q, k, v, mask).transpose(1, 2).reshape(B, rows, heads * head_dim)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """softmax(q k^T / sqrt(head_dim) + mask) v per head, dropout on the probabilities."""
        return attention(q, k, v, mask, self.dropout_p, self.training)


class DenseResidualNorm(nn.Module):
    """dense -> dropout -> add the residual -> LayerNorm (BERT is post-norm)."""

    def __init__(self, cfg: BertConfig, in_features: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.self = SelfAttention(cfg)
        self.output = DenseResidualNorm(cfg, cfg.hidden_size)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, queries: torch.Tensor | None = None
    ) -> torch.Tensor:
        residual = x if queries is None else rows_at(x, queries)
        return self.output(self.self(x, mask, queries), residual)


class Intermediate(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.approximate = ACTIVATIONS[cfg.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x), approximate=self.approximate)


class Layer(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = DenseResidualNorm(cfg, cfg.intermediate_size)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, queries: torch.Tensor | None = None
    ) -> torch.Tensor:
        """queries: [B, R] positions whose outputs are wanted (then [B, R, H]), or None (all)."""
        x = self.attention(x, mask, queries)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, queries: torch.Tensor | None = None
    ) -> torch.Tensor:
        """queries: [B, R] positions read from the last layer (its output is then [B, R, H]), or
        None (all)."""
        *body, last = self.layer
        for layer in body:
            x = layer(x, mask)
        return last(x, mask, queries)


class Pooler(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x[:, 0]))  # the [CLS] token summarises the pair


class BertModel(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)
        self.pooler = Pooler(cfg)


class PredictionTransform(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.approximate = ACTIVATIONS[cfg.hidden_act]
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(x), approximate=self.approximate))


class LMPrediction(nn.Module):
    """MLM head; its decoder is the word-embedding matrix (tied), plus an output bias."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.transform = PredictionTransform(cfg)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))


class PretrainingHeads(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.predictions = LMPrediction(cfg)
        self.seq_relationship = nn.Linear(cfg.hidden_size, 2)


class BertForPreTraining(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.bert = BertModel(cfg)
        self.cls = PretrainingHeads(cfg)
        self.apply(self._init_weights)
        self.decoder_weight16: torch.Tensor | None = None
        """A bf16 copy of the word embeddings that the optimizer keeps current (the fused
        backend's FusedLamb.shadow_in_bf16): the tied decoder reads it under bf16 autocast
        instead of casting the fp32 matrix each step. None: autocast casts."""
        self.masked_row_multiple = 1
        """In training, the MLM head runs on the masked tokens and then on unused slots (weight 0)
        up to a multiple of this many rows. The masked count changes from batch to batch, and
        oneDNN builds its kernels per GEMM shape: 32-42 ms for each new count's three decoder
        GEMMs on the AMX Xeon (docs/fused-amx-train.md), which a bucket of a few shapes pays in the
        first steps only. 1: the masked tokens alone."""
        self.decoder_transpose: Callable[[torch.Tensor], torch.Tensor] | None = None
        """Where given (the fused backend where bf16 GEMMs run on AMX: its transpose_2d), the
        decoder's weight gradient reads the logits' gradient as this contiguous transpose, not as
        a transposed view (harness.models.tied.decode)."""

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear | nn.Embedding):
            # Truncated at two standard deviations, as the TF reference's initializer.
            nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    def forward(self, batch: PretrainingBatch) -> PretrainingOutput:
        # SDPA takes a boolean mask, True = may attend; [B, 1, 1, S] broadcasts over heads and
        # queries. A batch with no padding skips the mask so SDPA can use its fastest kernel.
        mask = None if bool(batch.input_mask.all()) else batch.input_mask.bool()[:, None, None, :]
        tied = TiedGradient()
        x = self.bert.embeddings(batch.input_ids, batch.segment_ids, tied)
        # The heads read the last layer at [CLS] (the pooler) and at the masked positions (the
        # MLM head) alone: that layer runs its queries, output projection and FFN on those rows
        # only (its keys and values on every token), and the MLM transform and [hidden x vocab]
        # decoder on the masked tokens only, ~15% of the tokens. Nothing the loss reads changes;
        # every other row's work would have been discarded.
        positions = head_positions(batch)
        x = self.bert.encoder(x, mask, positions)  # [B, 1 + slots, H]
        slots = positions.shape[1] - 1
        selected = batch.masked_lm_weights[:, :slots] > 0
        rows = masked_rows(selected, self.masked_row_multiple if self.training else 1)
        h = self.cls.predictions.transform(x[:, 1:].reshape(-1, x.shape[-1])[rows])
        logits = decode(
            h,
            self.bert.embeddings.word_embeddings.weight,
            self.cls.predictions.bias,
            tied,
            self.decoder_weight16,
            self.decoder_transpose,
        )
        # the rows past the masked tokens count for nothing: weight 0, and a target in range
        targets = torch.where(selected, batch.masked_lm_ids[:, :slots], 0).reshape(-1)[rows]
        weights = torch.where(selected, batch.masked_lm_weights[:, :slots], 0.0).reshape(-1)[rows]
        token_loss = F.cross_entropy(logits.float(), targets, reduction="none")
        # The MLCommons reference divides by (sum of weights + 1e-5).
        total = weights.sum() if batch.mlm_weight_sum is None else batch.mlm_weight_sum
        mlm_loss = (token_loss * weights).sum() / (total + 1e-5)

        nsp_logits = self.cls.seq_relationship(self.bert.pooler(x)).float()
        nsp_loss = F.cross_entropy(nsp_logits, batch.next_sentence_labels)
        return PretrainingOutput(
            loss=mlm_loss + nsp_loss,
            mlm_loss=mlm_loss,
            nsp_loss=nsp_loss,
            mlm_logits=logits,
            mlm_targets=targets,
            mlm_weights=weights,
            nsp_logits=nsp_logits,
            masked_tokens=int(selected.sum()),
            head_rows=positions.numel(),
        )

    def training_flops(self, batch_size: int, seq_len: int, head_rows: int, masked_tokens: int) -> int:
        """Model FLOPs of one training step (forward + backward), counted analytically."""
        return training_step_flops(self.config, batch_size, seq_len, head_rows, masked_tokens)
