"""Dropout with the lane mask: its keep rate, scale, gradient, determinism, and the attention built on it."""

import math

import pytest
import torch
import torch.nn.functional as F

from harness.models.dropout import LANES, attention, dropout, keep_mask


def test_each_lane_keeps_its_share_and_the_output_is_unbiased():
    torch.manual_seed(0)
    x = torch.ones(4_000_000)
    out = dropout(x, 0.1, True)
    kept = 1 - round(0.1 * LANES) / LANES  # 0.899994
    # each of the four 16-bit lanes of a 64-bit draw on its own: a lane stuck at one value
    # (random_() without bounds leaves the top bit 0) would show here
    per_lane = (out != 0).view(-1, 4).float().mean(0)
    sigma = math.sqrt(kept * (1 - kept) / 1_000_000)
    assert torch.all((per_lane - kept).abs() < 5 * sigma), per_lane
    assert out.unique().tolist() == [0.0, pytest.approx(1 / kept)]
    assert float(out.mean()) == pytest.approx(1.0, abs=5 * sigma / kept)


def test_bf16_keeps_the_scale_exact():
    # kept values are rounded one by one, not all multiplied by a rounded scale
    torch.manual_seed(0)
    x = torch.rand(1_000_000, dtype=torch.bfloat16) + 1
    out = dropout(x, 0.1, True)
    kept = out != 0
    ratio = (out[kept].double() / x[kept].double()).mean()
    assert out.dtype == torch.bfloat16
    assert float(ratio) == pytest.approx(LANES / (LANES - round(0.1 * LANES)), rel=2e-4)


def test_gradient_is_masked_and_scaled_like_the_output():
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    out = dropout(x, 0.25, True)
    grad = torch.randn_like(out)
    out.backward(grad)
    kept = out.detach() != 0
    scale = LANES / (LANES - round(0.25 * LANES))
    torch.testing.assert_close(out.detach(), x.detach() * kept * scale)
    torch.testing.assert_close(x.grad, grad * kept * scale)


def test_masks_follow_the_global_seed_and_eval_is_the_identity():
    x = torch.randn(1000)
    torch.manual_seed(7)
    a = dropout(x, 0.1, True)
    torch.manual_seed(7)
    assert torch.equal(a, dropout(x, 0.1, True))  # a resumed run redraws the same masks
    assert not torch.equal(a, dropout(x, 0.1, True))
    assert dropout(x, 0.1, False) is x and dropout(x, 0.0, True) is x
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1"):
        dropout(x, 1.0, True)


def test_attention_with_dropout_is_softmax_attention_with_the_lane_mask():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))
    mask = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    mask[1, ..., 3:] = False  # the second sequence has two padding tokens
    # a p below 2^-17 keeps every lane: the spelled-out path must then equal SDPA's
    torch.testing.assert_close(
        attention(q, k, v, mask, 1e-6, True), F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    )
    torch.manual_seed(3)
    keep, scale = keep_mask(torch.Size((2, 3, 5, 5)), 0.5)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~mask, float("-inf"))
    expected = (scores.softmax(-1) * keep * scale) @ v
    torch.manual_seed(3)
    torch.testing.assert_close(attention(q, k, v, mask, 0.5, True), expected)
    # eval: no dropout, SDPA's kernel
    torch.testing.assert_close(
        attention(q, k, v, mask, 0.5, False), F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    )
