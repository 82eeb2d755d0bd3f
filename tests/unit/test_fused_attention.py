"""The fused attention kernels (csrc/qkv_heads.cpp, csrc/softmax_dropout.cpp) and the fused bias +
GELU (csrc/bias_gelu.cpp) against the eager reference, forward and backward, fp32 and bf16."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from batches import random_batch

from harness.kernels.layers import (
    SEEDS,
    FusedIntermediate,
    FusedSelfAttention,
    bias_gelu,
    fuse,
    qkv_heads,
    softmax_dropout,
)
from harness.models import NAMED_CONFIGS, BertForPreTraining

BF16 = {"rtol": 1.6e-2, "atol": 1e-2}
FP32 = {"rtol": 1e-5, "atol": 1e-6}


def _seed_of_next_call(p: float) -> int:
    """The seed the next fused call draws, with torch's generator put back as it was."""
    state = torch.get_rng_state()
    seed = int(torch.randint(SEEDS, (1,))) if p > 0 else 0
    torch.set_rng_state(state)
    return seed


def _key_mask(batch: int, keys: int) -> torch.Tensor:
    """True = may attend; the second sequence has padding, the last key of every sequence too."""
    mask = torch.ones(batch, keys, dtype=torch.bool)
    mask[1 % batch, keys // 2 :] = False
    mask[:, -1] = False
    return mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(2, 3, 5, 5), (3, 2, 4, 37)])  # 37 keys: no multiple of 8
@pytest.mark.parametrize("masked", [False, True])
def test_softmax_dropout_follows_the_eager_reference(fused_ops, dtype, p, shape, masked):
    torch.manual_seed(0)
    scale = 1 / math.sqrt(8)
    scores = (3 * torch.randn(shape)).to(dtype).requires_grad_()
    key_mask = _key_mask(shape[0], shape[-1]) if masked else None
    seed = _seed_of_next_call(p)
    out = softmax_dropout(scores, key_mask, scale, p, fused_ops)
    assert out.dtype == dtype

    reference = scores.detach().float().requires_grad_()
    logits = reference * scale
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    keep = fused_ops.dropout_keep_mask(scores.numel(), p, seed).view(shape)
    want = torch.where(keep, logits.softmax(-1) * (65536 / (65536 - round(p * 65536))), 0.0)
    tol = FP32 if dtype == torch.float32 else BF16
    torch.testing.assert_close(out.float(), want, **tol)

    grad = torch.randn(shape).to(dtype)
    out.backward(grad)
    want.backward(grad.float())
    assert scores.grad.dtype == dtype
    torch.testing.assert_close(scores.grad.float(), reference.grad, **tol)


def test_a_row_with_every_key_masked_is_nan_as_in_stock(fused_ops):
    scores = torch.randn(1, 1, 2, 4)
    out = softmax_dropout(scores, torch.zeros(1, 4, dtype=torch.bool), 1.0, 0.0, fused_ops)
    assert torch.isnan(out).all()


def test_softmax_dropout_gives_the_same_bits_on_any_thread_count(fused_ops):
    torch.manual_seed(1)
    scores, grad = torch.randn(600, 64), torch.randn(600, 64)
    mask = torch.rand(6, 64) > 0.2
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out, probs = fused_ops.softmax_dropout_forward(scores, mask, 100, 0.125, 0.1, 7)
            results.append([out, probs, fused_ops.softmax_dropout_backward(grad, probs, out, 0.125, 0.1)])
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("batch", "seq", "heads", "head_dim"), [(2, 5, 3, 8), (3, 37, 2, 5)])
def test_qkv_heads_follows_the_eager_reference(fused_ops, dtype, batch, seq, heads, head_dim):
    torch.manual_seed(0)
    width = 3 * heads * head_dim
    y = torch.randn(batch, seq, width).to(dtype).requires_grad_()
    bias = torch.randn(width, requires_grad=True)
    q, k, v = qkv_heads(y, bias, heads, fused_ops)
    assert all(t.dtype == dtype and t.is_contiguous() for t in (q, k, v))

    y_ref = y.detach().float().requires_grad_()
    bias_ref = bias.detach().clone().requires_grad_()
    want = (y_ref + bias_ref).view(batch, seq, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    tol = FP32 if dtype == torch.float32 else BF16
    for got, ref in zip((q, k, v), want, strict=True):
        torch.testing.assert_close(got.float(), ref, **tol)

    grads = [torch.randn(batch, heads, seq, head_dim).to(dtype) for _ in range(3)]
    torch.autograd.backward([q, k, v], grads)
    torch.autograd.backward(list(want), [g.float() for g in grads])
    assert y.grad.dtype == dtype
    # the head split moves values: its gradient is the gradients' values, each where it came from
    torch.testing.assert_close(y.grad.float(), y_ref.grad, rtol=0, atol=0)
    torch.testing.assert_close(
        bias.grad, bias_ref.grad, **(tol if dtype == torch.float32 else {"rtol": 3e-2, "atol": 3e-2})
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("batch", "seq", "heads", "head_dim"), [(2, 5, 3, 8), (3, 37, 2, 64)])
def test_qkv_heads_backward_takes_the_key_gradient_transposed(fused_ops, dtype, batch, seq, heads, head_dim):
    """The key gradient as its transpose ([B, heads, D, S], blocks of rows spanning two sequences
    at seq 5 and 37) gives the bits of the contiguous one."""
    torch.manual_seed(0)
    dq, dk, dv = (torch.randn(batch, heads, seq, head_dim).to(dtype) for _ in range(3))
    want = fused_ops.qkv_heads_backward(dq, dk, dv)
    got = fused_ops.qkv_heads_backward(dq, dk.transpose(2, 3).contiguous(), dv, True)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    with pytest.raises(RuntimeError, match="with k_transposed"):  # not [B, heads, D, S]
        fused_ops.qkv_heads_backward(dq, dk, dv, True)


class _RecordingOps:
    """The kernels' module, the k_transposed flag of each qkv_heads_backward call recorded."""

    def __init__(self, ops) -> None:
        self.ops, self.k_transposed = ops, []

    def __getattr__(self, name: str):
        kernel = getattr(self.ops, name)
        if name != "qkv_heads_backward":
            return kernel

        def recorded(dq, dk, dv, k_transposed=False):
            self.k_transposed.append(k_transposed)
            return kernel(dq, dk, dv, k_transposed)

        return recorded


def test_the_attention_hands_the_key_gradient_transposed(fused_ops):
    """In training, the scores' GEMM leaves the key gradient transposed, and the projection's
    backward takes it so, without a copy."""
    cfg = NAMED_CONFIGS["bert-tiny"]
    torch.manual_seed(0)
    model = BertForPreTraining(cfg).train()
    recording = _RecordingOps(fused_ops)
    fuse(model, recording)
    model(random_batch()).loss.backward()
    assert recording.k_transposed == [True] * cfg.num_hidden_layers


def test_qkv_heads_refuses_a_layout_it_cannot_split(fused_ops):
    with pytest.raises(RuntimeError, match="batch and heads must be positive"):
        fused_ops.qkv_heads_forward(torch.randn(4, 6), torch.randn(6), 2, 0)
    with pytest.raises(RuntimeError, match=r"y must be \[batch \* seq, 3 \* heads \* head_dim\]"):
        fused_ops.qkv_heads_forward(torch.randn(4, 7), torch.randn(7), 2, 1)


def test_qkv_heads_gives_the_same_bits_on_any_thread_count(fused_ops):
    torch.manual_seed(1)
    y, bias = torch.randn(4 * 50, 3 * 4 * 16), torch.randn(3 * 4 * 16)
    grads = [torch.randn(4, 4, 50, 16) for _ in range(3)]
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(
                [fused_ops.qkv_heads_forward(y, bias, 4, 4), *fused_ops.qkv_heads_backward(*grads)]
            )
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 3, 24), (1, 5, 37)])
def test_bias_gelu_follows_the_eager_reference(fused_ops, dtype, shape):
    torch.manual_seed(0)
    y = (2 * torch.randn(shape)).to(dtype).requires_grad_()
    bias = torch.randn(shape[-1], requires_grad=True)
    out = bias_gelu(y, bias, fused_ops)
    assert out.dtype == dtype
    y_ref = y.detach().float().requires_grad_()
    bias_ref = bias.detach().clone().requires_grad_()
    want = F.gelu(y_ref + bias_ref)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else BF16
    torch.testing.assert_close(out.float(), want, **tol)
    grad = torch.randn(shape).to(dtype)
    out.backward(grad)
    want.backward(grad.float())
    torch.testing.assert_close(y.grad.float(), y_ref.grad, **tol)
    # the bias gradient sums over rows: bf16's rounding of each row's term adds up
    torch.testing.assert_close(
        bias.grad, bias_ref.grad, **(tol if dtype == torch.float32 else {"rtol": 3e-2, "atol": 3e-2})
    )


def test_fused_attention_and_gelu_layers_compute_what_stock_does(fused_ops):
    """bert-tiny with attention dropout at 0 but training: the fused attention kernel (not SDPA)
    and the bias + GELU kernel give stock's loss and gradients, on a batch with padding."""
    cfg = dataclasses.replace(NAMED_CONFIGS["bert-tiny"], hidden_dropout_prob=0.0)
    torch.manual_seed(0)
    stock = BertForPreTraining(cfg).train()
    fused = BertForPreTraining(cfg).train()
    fused.load_state_dict(stock.state_dict())
    fuse(fused, fused_ops)
    assert sum(isinstance(m, FusedSelfAttention) for m in fused.modules()) == cfg.num_hidden_layers
    assert sum(isinstance(m, FusedIntermediate) for m in fused.modules()) == cfg.num_hidden_layers
    # attention dropout on, with a mask the stock run can share: p tiny enough that no lane drops
    for model in (stock, fused):
        for module in model.modules():
            if hasattr(module, "dropout_p"):
                module.dropout_p = 1e-9
    batch = random_batch()
    assert not bool(batch.input_mask.all()), "the batch must have padding"
    losses = [model(batch).loss for model in (stock, fused)]
    for loss in losses:
        loss.backward()
    assert float(losses[1].detach()) == pytest.approx(float(losses[0].detach()), rel=1e-5)
    for (name, a), b in zip(stock.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
