"""Model layers on the fused kernels: the same math as harness.models.bert's, fewer passes.

`FusedDenseResidualNorm` is DenseResidualNorm (dense -> dropout -> add the residual -> LayerNorm)
with everything after the GEMM in one kernel forward and one backward (csrc/dropout_add_norm.cpp):
under bf16 autocast, stock PyTorch makes a dropout mask, a masked scale, a bf16 + fp32 add, the
LayerNorm and its saved input in separate passes, each over the whole activation. Its dropout
mask comes from a counter-based generator inside the kernel, keyed by a seed drawn from torch's
generator (so `torch.manual_seed` and a resumed RNG state decide it), and is drawn again in the
backward pass instead of being stored.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import nn

from harness.models.bert import DenseResidualNorm

SEEDS = 2**62
"""Seeds are drawn below this: any of them a valid int64 for the kernels."""


class _DropoutAddNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, residual, weight, bias, p: float, eps: float, ops: ModuleType):  # type: ignore[override]
        # no draw without dropout: evaluation leaves torch's generator as stock PyTorch does
        seed = int(torch.randint(SEEDS, (1,))) if p > 0 else 0
        shape = residual.shape
        out, h, mean, rstd = ops.dropout_add_norm_forward(
            y.reshape(-1, shape[-1]).contiguous(),
            residual.reshape(-1, shape[-1]).float().contiguous(),
            weight.float().contiguous(),
            bias.float().contiguous(),
            p,
            eps,
            seed,
        )
        ctx.save_for_backward(h, mean, rstd, weight)
        ctx.p, ctx.seed, ctx.ops, ctx.y_dtype, ctx.residual_dtype = p, seed, ops, y.dtype, residual.dtype
        return out.view(shape)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        h, mean, rstd, weight = ctx.saved_tensors
        dy, dresidual, dweight, dbias = ctx.ops.dropout_add_norm_backward(
            grad.reshape(h.shape).float().contiguous(),
            h,
            mean,
            rstd,
            weight.float().contiguous(),
            ctx.p,
            ctx.seed,
            ctx.y_dtype,
        )
        shape = grad.shape
        return (
            dy.view(shape),
            dresidual.view(shape).to(ctx.residual_dtype),
            dweight.to(weight.dtype),
            dbias.to(weight.dtype),
            None,
            None,
            None,
        )


def dropout_add_norm(
    y: torch.Tensor, residual: torch.Tensor, norm: nn.LayerNorm, p: float, ops: ModuleType
) -> torch.Tensor:
    """norm(dropout(y, p) + residual) in fp32, as autocast runs LayerNorm; p = 0: no dropout."""
    return _DropoutAddNorm.apply(y, residual, norm.weight, norm.bias, p, norm.eps, ops)


class FusedDenseResidualNorm(DenseResidualNorm):
    """DenseResidualNorm whose dropout, residual add and LayerNorm run in one kernel."""

    ops: ModuleType

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        p = self.dropout.p if self.training else 0.0
        return dropout_add_norm(self.dense(x), residual, self.LayerNorm, p, self.ops)


def fuse(model: nn.Module, ops: ModuleType) -> None:
    """Every DenseResidualNorm of `model` becomes a FusedDenseResidualNorm in place: the class
    changes, the parameters, their names and the optimizer's references to them stay."""
    for module in model.modules():
        if type(module) is DenseResidualNorm:
            module.__class__ = FusedDenseResidualNorm
            module.ops = ops
