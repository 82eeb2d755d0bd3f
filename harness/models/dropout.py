"""Dropout and attention with a cheaper random mask.

PyTorch's CPU dropout draws one Bernoulli sample per element (`bernoulli_`), about a hundred
million draws a BERT-Large step. One 64-bit Mersenne-Twister draw split into four 16-bit lanes
gives four masks at once. For fp32 the mask is kept as the multiplier itself (0 or the scale),
so that forward and backward are one multiplication each, where PyTorch's masked-scale kernel
makes two passes. What each costs on BERT-Large: docs/model.md.

The keep probability is then a multiple of 1/65536: for p = 0.1 it is 58982/65536 = 0.899994
instead of 0.9. The scale divides by that exact probability, so the output stays unbiased.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LANES = 1 << 16
"""Values of one 16-bit lane: the resolution of the keep probability."""


def keep_mask(shape: torch.Size, p: float) -> tuple[torch.Tensor, float]:
    """A boolean mask (True = keep) drawn from the global CPU generator, and the scale 1 / P(keep)."""
    numel = math.prod(shape)
    words = torch.empty((numel + 3) // 4, dtype=torch.int64)
    # the full signed range: random_() without bounds leaves every word's top bit 0
    words.random_(-(2**63), 2**63 - 1)
    lanes = words.view(torch.int16)[:numel].view(shape)
    # lanes are signed: the lowest `dropped` values, from -32768 up, drop their element
    dropped = round(p * LANES)
    return lanes >= dropped - LANES // 2, LANES / (LANES - dropped)


def _masked_scale(x: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return torch.ops.aten.native_dropout_backward(x, mask, scale)  # x * mask * scale
    return x * mask


class _MaskedScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:  # type: ignore[override]
        keep, scale = keep_mask(x.shape, p)
        # a bf16 multiplier would round the scale (1.111 -> 1.109) and shrink every kept value
        # alike: below fp32, the boolean mask and the scale as a float scalar, in two passes
        mask = keep.to(x.dtype).mul_(scale) if x.dtype in (torch.float32, torch.float64) else keep
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return _masked_scale(x, mask, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return _masked_scale(grad, mask, ctx.scale), None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout with the lane mask; the identity in eval mode or at p = 0."""
    if not training or p == 0.0:
        return x
    if not 0.0 < p < 1.0 or round(p * LANES) == LANES:
        raise ValueError(f"dropout probability must be in [0, 1 - 2^-17), got {p}")
    return _MaskedScale.apply(x, p)


class Dropout(nn.Module):
    """nn.Dropout with the lane mask."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    dropout_p: float,
    training: bool,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v, dropout on the probabilities while training.

    Without dropout this is PyTorch's fused SDPA kernel. With it, SDPA on CPU falls back to its
    unfused reference path anyway (same matmuls, softmax, bernoulli dropout): spelled out here it
    takes the lane mask instead. `mask` is boolean, True = may attend, broadcast over the scores.
    """
    if not training or dropout_p == 0.0:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    # scaling q ([S, d] per head) is cheaper than scaling the scores ([S, S])
    scores = torch.matmul(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(-2, -1))
    if mask is not None:
        # added in place: masked_fill would copy the scores first (matmul keeps its inputs for
        # the backward pass, not its output, so the in-place add is safe)
        scores += torch.zeros(mask.shape, dtype=scores.dtype).masked_fill_(~mask, float("-inf"))
    return torch.matmul(dropout(scores.softmax(-1), dropout_p, True), v)
