"""Model layers on the fused kernels: the same math as harness.models.bert's, fewer passes.

Each dropout mask comes from a counter-based generator inside the kernel that applies it, keyed by
a seed drawn from torch's generator (so `torch.manual_seed` and a resumed RNG state decide it).
The LayerNorm kernel's backward draws its mask again instead of storing it; the attention
softmax's backward reads its mask from the zeros of the dropped probabilities, which the next
GEMM keeps for its own backward anyway.

`FusedDenseResidualNorm` is DenseResidualNorm (dense -> dropout -> add the residual -> LayerNorm)
with everything after the GEMM, the dense layer's bias included, in one kernel forward and one
backward (csrc/dropout_add_norm.cpp): under bf16 autocast, stock PyTorch makes a dropout mask, a
masked scale, a bf16 + fp32 add, the LayerNorm and its saved input in separate passes, each over
the whole activation, and sums the bias gradient in another.

`FusedSelfAttention` adds the query/key/value projection's bias and splits it into heads in one
kernel (csrc/qkv_heads.cpp), and runs the scale, the padding mask, the softmax and the dropout
between the two batched GEMMs in another (csrc/softmax_dropout.cpp). `FusedIntermediate` runs the
bias and the erf-GELU after the FFN's first GEMM, with the bias gradient summed in GELU's backward
pass (csrc/bias_gelu.cpp).
"""

from __future__ import annotations

import math
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from harness.kernels import row_split
from harness.models.bert import DenseResidualNorm, Encoder, Intermediate, Layer, SelfAttention, rows_at

SEEDS = 2**62
"""Seeds are drawn below this: any of them a valid int64 for the kernels."""


def _seed(p: float) -> int:
    """The kernel's dropout seed; no draw without dropout, so that evaluation leaves torch's
    generator as stock PyTorch does."""
    return int(torch.randint(SEEDS, (1,))) if p > 0 else 0


class _Dense(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, ops: ModuleType):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.ops = ops
        y = row_split.mm(x.reshape(-1, x.shape[-1]), weight.t(), ops)
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1]).contiguous()
        dx = dweight = None
        if ctx.needs_input_grad[0]:
            dx = row_split.mm(g, weight, ctx.ops).view(x.shape)
        if ctx.needs_input_grad[1]:
            dweight = row_split.mm(ctx.ops.transpose_2d(g), x.reshape(-1, x.shape[-1]), ctx.ops)
        return dx, dweight, None


def dense(x: torch.Tensor, weight: torch.Tensor, ops: ModuleType | None) -> torch.Tensor:
    """x @ weight^T, a Linear layer without its bias. With ops, the weight gradient's GEMM reads
    the output gradient as a contiguous transpose from ops.transpose_2d, not as a transposed view:
    where oneDNN runs bf16 GEMMs on AMX, BERT-Large's QKV and FFN weight gradients took 1.45-1.83x
    as long on the view as on the copy, the copy included (docs/fused-amx.md); elsewhere the view
    is free (ops None: F.linear). Its three GEMMs go through row_split, which splits a shape's
    rows among the threads where that measured faster (the square ones there)."""
    if ops is None:
        return F.linear(x, weight)
    if torch.is_autocast_enabled("cpu"):
        low = torch.get_autocast_dtype("cpu")
        x, weight = x.to(low), weight.to(low)
    # the inputs are cast as autocast would have: the GEMMs inside run on them as they are
    with torch.autocast("cpu", enabled=False):
        return _Dense.apply(x, weight, ops)


class _DropoutAddNorm(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, y, dense_bias, residual, weight, bias, p: float, eps: float, with_bf16: bool, ops: ModuleType
    ):  # type: ignore[override]
        seed = _seed(p)
        shape = residual.shape
        out, out16, h, mean, rstd = ops.dropout_add_norm_forward(
            y.reshape(-1, shape[-1]).contiguous(),
            dense_bias.float().contiguous(),
            residual.reshape(-1, shape[-1]).float().contiguous(),
            weight.float().contiguous(),
            bias.float().contiguous(),
            p,
            eps,
            seed,
            with_bf16,
        )
        ctx.set_materialize_grads(False)  # an output nothing read has no gradient to add
        ctx.save_for_backward(h, mean, rstd, weight)
        ctx.p, ctx.seed, ctx.ops, ctx.y_dtype, ctx.residual_dtype = p, seed, ops, y.dtype, residual.dtype
        ctx.dense_bias_dtype, ctx.shape = dense_bias.dtype, shape
        return out.view(shape), out16.view(shape) if with_bf16 else None

    @staticmethod
    def backward(ctx, grad, grad16):  # type: ignore[override]
        h, mean, rstd, weight = ctx.saved_tensors
        grad = torch.zeros_like(h) if grad is None else grad.reshape(h.shape).float().contiguous()
        grad16 = (
            torch.empty(0, dtype=torch.bfloat16) if grad16 is None else grad16.reshape(h.shape).contiguous()
        )
        dy, ddense_bias, dresidual, dweight, dbias = ctx.ops.dropout_add_norm_backward(
            grad,
            grad16,
            h,
            mean,
            rstd,
            weight.float().contiguous(),
            ctx.p,
            ctx.seed,
            ctx.y_dtype,
        )
        shape = ctx.shape
        return (
            dy.view(shape),
            ddense_bias.to(ctx.dense_bias_dtype),
            dresidual.view(shape).to(ctx.residual_dtype),
            dweight.to(weight.dtype),
            dbias.to(weight.dtype),
            None,
            None,
            None,
            None,
        )


def dropout_add_norm(
    y: torch.Tensor,
    dense_bias: torch.Tensor,
    residual: torch.Tensor,
    norm: nn.LayerNorm,
    p: float,
    ops: ModuleType,
    with_bf16: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """norm(dropout(y + dense_bias, p) + residual) in fp32, as autocast runs LayerNorm, and with
    with_bf16 its bf16 copy (else None); y is the dense layer's output without its bias; p = 0: no
    dropout."""
    return _DropoutAddNorm.apply(y, dense_bias, residual, norm.weight, norm.bias, p, norm.eps, with_bf16, ops)


def _bf16_autocast() -> bool:
    """Whether the GEMMs run in bf16 under autocast: then a LayerNorm writes their input's copy."""
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


class FusedDenseResidualNorm(DenseResidualNorm):
    """DenseResidualNorm whose dense bias, dropout, residual add and LayerNorm run in one kernel
    after the GEMM."""

    ops: ModuleType
    transpose_ops: ModuleType | None
    """ops where the weight gradients' GEMMs read their output gradients transposed (dense())."""

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.forward_with_copy(x, residual, with_bf16=False)[0]

    def forward_with_copy(
        self, x: torch.Tensor, residual: torch.Tensor, with_bf16: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output, and its bf16 copy with with_bf16 (else None)."""
        p = self.dropout.p if self.training else 0.0
        y = dense(x, self.dense.weight, self.transpose_ops)
        return dropout_add_norm(y, self.dense.bias, residual, self.LayerNorm, p, self.ops, with_bf16)


class FusedLayer(Layer):
    """Layer on fused sublayers whose LayerNorms, under bf16 autocast, also write the bf16 copies
    the next GEMMs read: autocast would cast each norm's fp32 output in a pass of its own, and
    autograd cast that GEMM's gradient back and add it to the residual's in two more. The fp32
    output stays the residual stream, as in stock."""

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, queries: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.forward_with_copy(x, None, mask, queries)[0]

    def forward_with_copy(
        self,
        x: torch.Tensor,
        x16: torch.Tensor | None,
        mask: torch.Tensor | None,
        queries: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: the input, x16: its bf16 copy or None; queries: as Layer's. Returns the output and,
        under bf16 autocast, its bf16 copy (else None)."""
        copy = _bf16_autocast()
        context = self.attention.self(x if x16 is None else x16, mask, queries)
        residual = x if queries is None else rows_at(x, queries)
        a, a16 = self.attention.output.forward_with_copy(context, residual, copy)
        return self.output.forward_with_copy(self.intermediate(a if a16 is None else a16), a, copy)


class FusedEncoder(Encoder):
    """Encoder handing each FusedLayer's bf16 copy of its output to the next layer."""

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, queries: torch.Tensor | None = None
    ) -> torch.Tensor:
        x16 = None
        *body, last = self.layer
        for layer in body:
            x, x16 = layer.forward_with_copy(x, x16, mask)
        return last.forward_with_copy(x, x16, mask, queries)[0]


class _SoftmaxDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, key_mask, scale: float, p: float, ops: ModuleType):  # type: ignore[override]
        seed = _seed(p)
        shape = scores.shape  # [batch, heads, queries, keys]
        mask = torch.empty(0, dtype=torch.bool) if key_mask is None else key_mask.contiguous()
        out, probs = ops.softmax_dropout_forward(
            scores.reshape(-1, shape[-1]).contiguous(), mask, shape[1] * shape[2], scale, p, seed
        )
        # out is the next GEMM's input, which autograd keeps for that GEMM's backward: saved here
        # too, it costs no memory, and its zeros are the dropout mask
        ctx.save_for_backward(probs, out)
        ctx.scale, ctx.p, ctx.ops = scale, p, ops
        return out.view(shape)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        probs, out = ctx.saved_tensors
        flat = grad.reshape(probs.shape).to(probs.dtype).contiguous()
        dscores = ctx.ops.softmax_dropout_backward(flat, probs, out, ctx.scale, ctx.p)
        return dscores.view(grad.shape), None, None, None, None


def softmax_dropout(
    scores: torch.Tensor, key_mask: torch.Tensor | None, scale: float, p: float, ops: ModuleType
) -> torch.Tensor:
    """dropout(softmax(scale * scores, masked), p) over the last dimension of [B, heads, queries, S]
    scores, in their dtype; key_mask: [B, S] bool, True = may attend, or None."""
    return _SoftmaxDropout.apply(scores, key_mask, scale, p, ops)


class _QkvHeads(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, bias, heads: int, ops: ModuleType):  # type: ignore[override]
        B, S, width = y.shape
        ctx.ops, ctx.bias_dtype = ops, bias.dtype
        out = ops.qkv_heads_forward(y.reshape(B * S, width).contiguous(), bias.float().contiguous(), B, heads)
        return out[0], out[1], out[2]

    @staticmethod
    def backward(ctx, dq, dk, dv):  # type: ignore[override]
        B, heads, S, head_dim = dq.shape
        # the scores' GEMM read k transposed and left its gradient as a contiguous [B, heads, D, S]
        # seen transposed: the kernel takes that as it is, where .contiguous() would copy it
        dk_t = dk.transpose(-2, -1)
        k_transposed = dk_t.is_contiguous()
        dy, dbias = ctx.ops.qkv_heads_backward(
            dq.contiguous(), dk_t if k_transposed else dk.contiguous(), dv.contiguous(), k_transposed
        )
        return dy.view(B, S, 3 * heads * head_dim), dbias.to(ctx.bias_dtype), None, None


def qkv_heads(
    y: torch.Tensor, bias: torch.Tensor, heads: int, ops: ModuleType
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y + bias, the [B, S, 3H] query/key/value projection without its bias, as q, k and v of
    [B, heads, S, head_dim], each contiguous, in y's dtype."""
    return _QkvHeads.apply(y, bias, heads, ops)


class FusedSelfAttention(SelfAttention):
    """SelfAttention whose projection's bias and head split run in one kernel, and whose scale,
    mask, softmax and dropout run in another while training (in evaluation, without dropout,
    PyTorch's fused SDPA is already one kernel)."""

    ops: ModuleType
    transpose_ops: ModuleType | None
    """ops where the weight gradients' GEMMs read their output gradients transposed (dense())."""

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, queries: torch.Tensor | None = None
    ) -> torch.Tensor:
        q, k, v = qkv_heads(
            dense(x, self.qkv.weight, self.transpose_ops), self.qkv.bias, self.num_heads, self.ops
        )
        return self.context(q, k, v, mask, queries)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        if not self.training or self.dropout_p == 0.0:
            return super().attend(q, k, v, mask)
        # the model's mask is [B, 1, 1, S]: one row of keys per sequence
        key_mask = None if mask is None else mask.reshape(mask.shape[0], mask.shape[-1])
        scores = torch.matmul(q, k.transpose(-2, -1))
        probs = softmax_dropout(scores, key_mask, 1.0 / math.sqrt(q.shape[-1]), self.dropout_p, self.ops)
        return torch.matmul(probs, v)


class _BiasGelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, bias, ops: ModuleType):  # type: ignore[override]
        flat = y.reshape(-1, y.shape[-1]).contiguous()
        ctx.save_for_backward(flat, bias)
        ctx.ops = ops
        return ops.bias_gelu_forward(flat, bias.float().contiguous()).view(y.shape)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        flat, bias = ctx.saved_tensors
        dy, dbias = ctx.ops.bias_gelu_backward(
            grad.reshape(flat.shape).to(flat.dtype).contiguous(), flat, bias.float().contiguous()
        )
        return dy.view(grad.shape), dbias.to(bias.dtype), None


def bias_gelu(y: torch.Tensor, bias: torch.Tensor, ops: ModuleType) -> torch.Tensor:
    """GELU(y + bias), the exact (erf) GELU, in y's dtype."""
    return _BiasGelu.apply(y, bias, ops)


class FusedIntermediate(Intermediate):
    """Intermediate (dense -> erf-GELU) with the bias added in the GELU kernel, not the GEMM."""

    ops: ModuleType
    transpose_ops: ModuleType | None
    """ops where the weight gradients' GEMMs read their output gradients transposed (dense())."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_gelu(dense(x, self.dense.weight, self.transpose_ops), self.dense.bias, self.ops)


FUSED = {
    Encoder: FusedEncoder,
    Layer: FusedLayer,
    DenseResidualNorm: FusedDenseResidualNorm,
    SelfAttention: FusedSelfAttention,
    Intermediate: FusedIntermediate,
}
"""Each stock layer with a fused counterpart, and that counterpart."""
WITH_DENSE = (FusedDenseResidualNorm, FusedSelfAttention, FusedIntermediate)
"""The fused layers whose GEMMs run through dense()."""


def fuse(model: nn.Module, ops: ModuleType, transposed_weight_grads: bool = False) -> None:
    """The layers of `model` in FUSED become their counterparts in place: the class changes, the
    parameters, their names and the optimizer's references to them stay. The tanh-approximated
    GELU has no kernel: its layers stay stock. transposed_weight_grads: the dense layers' weight
    gradients read their output gradients as contiguous transposes (dense())."""
    for module in model.modules():
        fused = FUSED.get(type(module))
        if fused is FusedIntermediate and module.approximate != "none":
            continue
        if fused is not None:
            module.__class__ = fused
            module.ops = ops
            if fused in WITH_DENSE:
                module.transpose_ops = ops if transposed_weight_grads else None
