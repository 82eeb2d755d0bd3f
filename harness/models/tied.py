"""The word-embedding matrix, used twice (token lookup and MLM decoder), with one gradient.

Left to autograd, each use makes its own [vocab, hidden] gradient: the lookup's is a
zero-filled matrix with B x S rows added in, and the decoder's comes back as a transposed view
that autograd copies before summing the two, three passes over a large matrix (their cost on
BERT-Large: docs/model.md). Here the decoder's backward, which always runs first (the
lookup's output feeds the decoder), leaves its gradient with the lookup's backward, which adds
its rows into it in place and hands autograd the one finished matrix. The parameter therefore
gets a single gradient, once, so DistributedDataParallel's hook fires when it is complete.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


class TiedGradient:
    """One forward pass's hand-over from the decoder's backward to the lookup's."""

    def __init__(self) -> None:
        self.decoder_grad: torch.Tensor | None = None


class _Decoder(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(
        ctx,
        h: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,  # type: ignore[override]
        tied: TiedGradient,
        weight16: torch.Tensor | None,
        transpose: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> torch.Tensor:
        # the GEMMs read the bf16 copy where one is given: what autocast's cast would make
        used = weight if weight16 is None else weight16
        ctx.save_for_backward(h, used)
        ctx.tied, ctx.dtype, ctx.transpose = tied, weight.dtype, transpose
        return torch.addmm(bias, h, used.t())

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        h, used = ctx.saved_tensors
        grad_t = grad.t() if ctx.transpose is None else ctx.transpose(grad.contiguous())
        # under autocast the product is bf16: the parameter's gradient is in its own dtype
        ctx.tied.decoder_grad = grad_t.mm(h).to(ctx.dtype)
        return grad.mm(used), None, grad.sum(0), None, None, None


class _Lookup(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        ids: torch.Tensor,
        weight: torch.Tensor,
        padding_idx: int,  # type: ignore[override]
        tied: TiedGradient,
    ) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.padding_idx, ctx.tied, ctx.weight_shape, ctx.dtype = padding_idx, tied, weight.shape, weight.dtype
        return F.embedding(ids, weight, padding_idx)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        (ids,) = ctx.saved_tensors
        weight_grad = ctx.tied.decoder_grad
        ctx.tied.decoder_grad = None
        if weight_grad is None:  # the decoder was not in the graph
            weight_grad = torch.zeros(ctx.weight_shape, dtype=ctx.dtype)
        rows = grad.reshape(-1, grad.shape[-1]).to(ctx.dtype)
        # as nn.Embedding(padding_idx=...): the padding row gets no gradient
        rows = rows.masked_fill((ids.reshape(-1) == ctx.padding_idx)[:, None], 0.0)
        return None, weight_grad.index_add_(0, ids.reshape(-1), rows), None, None


def lookup(ids: torch.Tensor, weight: torch.Tensor, padding_idx: int, tied: TiedGradient) -> torch.Tensor:
    """weight[ids] (the padding row gets no gradient); its backward completes the decoder's gradient."""
    return _Lookup.apply(ids, weight, padding_idx, tied)


def decode(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    tied: TiedGradient,
    weight16: torch.Tensor | None = None,
    transpose: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """h weight^T + bias; its backward leaves the weight's gradient to the lookup. weight16: a bf16
    copy of weight to compute with under bf16 autocast, which would otherwise cast the fp32
    [vocab, hidden] matrix forward and again backward (None: cast, as autocast does). transpose:
    a contiguous transpose of a matrix, for the weight gradient's GEMM to read the logits'
    gradient through (None: a transposed view). Where oneDNN runs bf16 GEMMs on AMX, BERT-Large's
    [30522, 139] x [139, 1024] took 16.1-16.4 ms on the view and 8.1-10.5 ms on transpose_2d's
    copy, the copy included, with the same bits (docs/fused-amx.md)."""
    if weight16 is not None and not (
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == weight16.dtype
    ):
        weight16 = None
    return _Decoder.apply(h, weight, bias, tied, weight16, transpose)
