"""The fused bias + dropout + residual + LayerNorm kernel (harness/kernels/csrc/dropout_add_norm.cpp)
against the eager reference, forward and backward, and the model with it."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from batches import random_batch

from harness.kernels.layers import SEEDS, FusedDenseResidualNorm, FusedEncoder, dense, dropout_add_norm, fuse
from harness.models import NAMED_CONFIGS, BertForPreTraining

# Random123's known answer for Philox4x32-10, counter 0 and key 0 (its kat_vectors file)
PHILOX_ZERO = (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)


def test_the_mask_is_philox4x32_10(fused_ops):
    lanes = [w >> s & 0xFFFF for w in PHILOX_ZERO for s in (0, 16)]
    p = 0.5
    dropped = round(p * 65536)
    assert fused_ops.dropout_keep_mask(8, p, 0).tolist() == [lane >= dropped for lane in lanes]


def _philox4x32_10(counter: int, key: int) -> list[int]:
    """Philox4x32-10 of counter (counter, 0) as two 32-bit words and two zeros: the reference the
    kernels' vectorised generators must match."""
    mask = 0xFFFFFFFF
    c = [counter & mask, counter >> 32, 0, 0]
    k = [key & mask, key >> 32]
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & mask, (p0 >> 32) ^ c[3] ^ k[1], p0 & mask]
        k = [(k[0] + 0x9E3779B9) & mask, (k[1] + 0xBB67AE85) & mask]
    return c


def test_every_group_of_a_long_mask_is_philox4x32_10(fused_ops):
    """40 groups of eight elements: whole vectors of groups and a tail alike. Each lane's top four
    bits, read back through sixteen keep probabilities."""
    seed, groups = 0x0123456789ABCDEF, 40
    lanes = [w >> s & 0xFFFF for g in range(groups) for w in _philox4x32_10(g, seed) for s in (0, 16)]
    for step in range(1, 16):
        p = step / 16
        kept = fused_ops.dropout_keep_mask(8 * groups, p, seed).tolist()
        assert kept == [lane >= round(p * 65536) for lane in lanes], p


def test_the_keep_probability_is_the_one_asked_for(fused_ops):
    n, p = 1 << 20, 0.1
    kept = float(fused_ops.dropout_keep_mask(n, p, 12345).float().mean())
    expected = 1 - round(p * 65536) / 65536
    # five binomial standard deviations
    assert abs(kept - expected) < 5 * (expected * (1 - expected) / n) ** 0.5
    other = fused_ops.dropout_keep_mask(n, p, 12346)
    assert not torch.equal(other, fused_ops.dropout_keep_mask(n, p, 12345))


def _reference(y, dense_bias, residual, norm, keep, scale):
    h = torch.where(keep, (y.float() + dense_bias) * scale, 0.0) + residual
    return F.layer_norm(h, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(2, 5, 24), (3, 1, 37)])  # odd widths; 37 is no multiple of 8
def test_forward_and_backward_follow_the_eager_reference(fused_ops, dtype, p, shape):
    torch.manual_seed(0)
    width = shape[-1]
    norm = torch.nn.LayerNorm(width, eps=1e-12)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    y = torch.randn(shape, dtype=dtype, requires_grad=True)
    dense_bias = torch.randn(width, requires_grad=True)
    residual = torch.randn(shape, requires_grad=True)
    torch.manual_seed(7)
    seed = int(torch.randint(SEEDS, (1,))) if p > 0 else 0
    torch.manual_seed(7)
    out, copy = dropout_add_norm(y, dense_bias, residual, norm, p, fused_ops)
    assert out.dtype == torch.float32 and copy is None
    n = y.numel()
    keep = fused_ops.dropout_keep_mask(n, p, seed).view(shape)
    scale = 65536 / (65536 - round(p * 65536))
    y_ref = y.detach().clone().requires_grad_()
    dense_bias_ref = dense_bias.detach().clone().requires_grad_()
    residual_ref = residual.detach().clone().requires_grad_()
    norm_ref = torch.nn.LayerNorm(width, eps=1e-12)
    norm_ref.load_state_dict(norm.state_dict())
    want = _reference(y_ref, dense_bias_ref, residual_ref, norm_ref, keep, scale)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    grad = torch.randn(shape)
    out.backward(grad)
    want.backward(grad)
    assert y.grad.dtype == dtype
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-2}
    torch.testing.assert_close(y.grad, y_ref.grad, **tol)
    torch.testing.assert_close(residual.grad, residual_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dense_bias.grad, dense_bias_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm.weight.grad, norm_ref.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm.bias.grad, norm_ref.bias.grad, rtol=1e-4, atol=1e-5)


def test_the_bf16_copy_and_its_gradient_are_what_autocast_and_autograd_make(fused_ops):
    """The copy is the output cast to bf16, bit for bit; the backward with the copy's gradient
    beside the output's is the backward of the output's gradient plus the copy's cast to fp32."""
    torch.manual_seed(2)
    width = 40
    norm = torch.nn.LayerNorm(width, eps=1e-12)
    y = torch.randn(3, 7, width, dtype=torch.bfloat16, requires_grad=True)
    dense_bias = torch.randn(width, requires_grad=True)
    residual = torch.randn(3, 7, width, requires_grad=True)
    leaves = (y, dense_bias, residual, norm.weight, norm.bias)
    grad, grad16 = torch.randn(3, 7, width), torch.randn(3, 7, width).bfloat16()

    torch.manual_seed(7)
    out, copy = dropout_add_norm(y, dense_bias, residual, norm, 0.1, fused_ops, with_bf16=True)
    assert copy.dtype == torch.bfloat16 and torch.equal(copy, out.detach().bfloat16())
    torch.autograd.backward([out, copy], [grad, grad16])
    both = [t.grad.clone() for t in leaves]

    for t in leaves:
        t.grad = None
    torch.manual_seed(7)
    out, _ = dropout_add_norm(y, dense_bias, residual, norm, 0.1, fused_ops)
    out.backward(grad + grad16.float())
    for got, t in zip(both, leaves, strict=True):
        assert torch.equal(got, t.grad)


def test_the_same_bits_on_any_thread_count(fused_ops):
    torch.manual_seed(1)
    y, dense_bias, residual = torch.randn(300, 64), torch.randn(64), torch.randn(300, 64)
    gamma, beta, grad = torch.rand(64) + 0.5, torch.randn(64), torch.randn(300, 64)
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out, out16, h, mean, rstd = fused_ops.dropout_add_norm_forward(
                y, dense_bias, residual, gamma, beta, 0.1, 1e-12, 99, True
            )
            back = fused_ops.dropout_add_norm_backward(
                grad, grad.bfloat16(), h, mean, rstd, gamma, 0.1, 99, torch.float32
            )
            results.append([out, out16, *back])
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


BERT_TINY_NO_DROPOUT = dataclasses.replace(
    NAMED_CONFIGS["bert-tiny"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
)


def _stock_and_fused(
    fused_ops, transposed_weight_grads: bool = False
) -> tuple[BertForPreTraining, BertForPreTraining]:
    """bert-tiny without dropout, and a fused copy of it."""
    torch.manual_seed(0)
    stock = BertForPreTraining(BERT_TINY_NO_DROPOUT).train()
    fused = BertForPreTraining(BERT_TINY_NO_DROPOUT).train()
    fused.load_state_dict(stock.state_dict())
    names = list(dict(fused.named_parameters()))
    fuse(fused, fused_ops, transposed_weight_grads)
    assert list(dict(fused.named_parameters())) == names
    return stock, fused


def test_a_fused_model_computes_what_the_stock_one_does(fused_ops):
    """bert-tiny without dropout: the same loss and gradients through the fused layers, whose
    parameters and names stay those of the model."""
    cfg = BERT_TINY_NO_DROPOUT
    stock, fused = _stock_and_fused(fused_ops)
    assert sum(isinstance(m, FusedDenseResidualNorm) for m in fused.modules()) == 2 * cfg.num_hidden_layers
    batch = random_batch()
    for model in (stock, fused):
        model(batch).loss.backward()
    with torch.no_grad():
        assert float(fused(batch).loss) == pytest.approx(float(stock(batch).loss), rel=1e-5)
    for (name, a), b in zip(stock.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("transposed_weight_grads", [False, True])
def test_under_bf16_autocast_the_fused_layers_hand_on_bf16_copies(fused_ops, transposed_weight_grads):
    """bert-tiny without dropout under bf16 autocast: the layers hand each other the LayerNorms'
    bf16 copies (no autocast cast of a norm's output is left), and the loss and gradients are
    stock's under autocast, with the weight gradients' GEMMs reading their gradients transposed
    (as on AMX) or not."""
    cfg = BERT_TINY_NO_DROPOUT
    stock, fused = _stock_and_fused(fused_ops, transposed_weight_grads)
    assert isinstance(fused.bert.encoder, FusedEncoder)
    dense_layers = [m for m in fused.modules() if hasattr(m, "transpose_ops")]
    assert len(dense_layers) == 4 * cfg.num_hidden_layers  # QKV, attention output, FFN in and out
    assert all(m.transpose_ops is (fused_ops if transposed_weight_grads else None) for m in dense_layers)
    batch = random_batch()
    copies = []
    for layer in fused.bert.encoder.layer:
        for gemm_input_of in (layer.attention.self, layer.intermediate):
            gemm_input_of.register_forward_pre_hook(lambda _, args: copies.append(args[0].dtype))
    losses = []
    for model in (stock, fused):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses.append(model(batch).loss)
        losses[-1].backward()
    # the first layer's input comes from the embeddings, in fp32
    assert copies == [torch.float32] + [torch.bfloat16] * (2 * cfg.num_hidden_layers - 1)
    assert float(losses[1].detach()) == pytest.approx(float(losses[0].detach()), rel=1e-3)
    for (name, a), b in zip(stock.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=2e-2, atol=2e-3, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 5), (37, 130), (200, 64), (64, 200)])  # partial column blocks
def test_transpose_2d_is_the_transpose(fused_ops, dtype, shape):
    x = torch.randn(shape).to(dtype)
    out = fused_ops.transpose_2d(x)
    assert out.is_contiguous()
    assert torch.equal(out, x.t())


def test_transpose_2d_refuses_what_it_cannot_transpose(fused_ops):
    with pytest.raises(RuntimeError, match="bfloat16 or float32"):
        fused_ops.transpose_2d(torch.zeros(3, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="contiguous 2-D"):
        fused_ops.transpose_2d(torch.zeros(4, 3).t())


@pytest.mark.parametrize(
    ("autocast", "weight_dtype"),
    [(False, torch.float32), (True, torch.float32), (True, torch.bfloat16)],  # last: hold_in_bf16's
)
def test_dense_with_transposed_weight_grads_is_linear(fused_ops, autocast, weight_dtype):
    """dense() reading the gradient transposed: F.linear's output and gradients, in their dtypes,
    for a batch of sequences, with and without bf16 autocast, and with a bf16 weight as the fused
    backend holds it under autocast (an fp32 input then is cast, as autocast casts it)."""
    torch.manual_seed(3)
    x = torch.randn(3, 7, 24, requires_grad=True)
    weight = torch.randn(40, 24).to(weight_dtype).requires_grad_()
    grad = torch.randn(3, 7, 40)
    results = []
    for ops in (None, fused_ops):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = dense(x, weight, ops)
        y.backward(grad.to(y.dtype))
        results.append((y.detach(), x.grad.clone(), weight.grad.clone()))
        x.grad, weight.grad = None, None
    assert results[1][2].dtype == weight_dtype
    for a, b in zip(*results, strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(b, a, rtol=1e-2 if autocast else 1e-5, atol=1e-2 if autocast else 1e-5)
