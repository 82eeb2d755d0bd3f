"""The row-split GEMM (csrc/mm_rows.cpp) and the per-shape choice of it (harness.kernels.row_split)."""

from types import SimpleNamespace

import pytest
import torch

from harness.kernels import row_split


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 31, 33, 200, 1024])
def test_the_split_is_the_product_for_any_row_count(fused_ops, dtype, rows):
    """Fewer rows than threads or than a slice's grain, a ragged last slice; b as stored and as a
    transposed view, as the dense layers hand it."""
    torch.manual_seed(0)
    a, w = torch.randn(rows, 96).to(dtype), torch.randn(64, 96).to(dtype)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for b in (w.t(), w.t().contiguous()):
            got = fused_ops.mm_rows(a, b)
            assert got.shape == (rows, 64) and got.is_contiguous()
            torch.testing.assert_close(got, a.float().mm(b.float()).to(dtype), rtol=2e-2, atol=2e-2)
    finally:
        torch.set_num_threads(before)


def test_the_split_runs_without_autograd_on_tensors_that_require_grad(fused_ops):
    a, b = torch.randn(64, 8, requires_grad=True), torch.randn(8, 4, requires_grad=True)
    with torch.no_grad():
        assert torch.allclose(fused_ops.mm_rows(a, b), a @ b)


def test_a_shape_is_decided_once_and_a_split_with_other_bits_never_taken(monkeypatch):
    monkeypatch.setattr(row_split, "_split", {})
    monkeypatch.setattr(row_split, "MIN_FLOPS", 0)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    calls = []

    def other_bits(a, b):
        calls.append(a.shape)
        return torch.mm(a, b) + 1.0

    ops = SimpleNamespace(mm_rows=other_bits)
    a, b = torch.randn(8, 4), torch.randn(4, 3)
    for _ in range(3):
        assert torch.equal(row_split.mm(a, b, ops), torch.mm(a, b))
    assert len(calls) == 1 and list(row_split._split.values()) == [False]
    row_split.mm(torch.randn(16, 4), b, ops)  # another shape: decided on its own
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("split", "library", "taken"), [(1.0, 2.0, True), (0.95, 1.0, False), (2.0, 1.0, False)]
)
def test_a_split_with_the_same_bits_is_taken_only_where_clearly_faster(monkeypatch, split, library, taken):
    """Medians of the split's and the library's times: a near tie (within MARGIN) stays with the
    library."""
    monkeypatch.setattr(row_split, "_split", {})
    monkeypatch.setattr(row_split, "MIN_FLOPS", 0)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    timed = []
    monkeypatch.setattr(
        row_split, "_medians", lambda first, second: timed.append((first, second)) or (split, library)
    )
    ops = SimpleNamespace(mm_rows=torch.mm)
    row_split.mm(torch.randn(8, 4), torch.randn(4, 3), ops)
    assert len(timed) == 1 and list(row_split._split.values()) == [taken]


def test_the_two_ways_are_timed_alternating_and_their_medians_compared(monkeypatch):
    """Each way TRIALS times, one after the other, so that a change of the host's speed during the
    trials falls on both; one slow call does not decide."""
    order = []
    clock = iter(range(1000))  # each reading one tick later; a call lasts 1 tick plus what it skips
    monkeypatch.setattr(row_split.time, "perf_counter", lambda: next(clock))
    first_times = iter([1, 1, 50, 1, 1])

    def first():
        order.append("split")
        for _ in range(next(first_times) - 1):
            next(clock)

    split, library = row_split._medians(first, lambda: order.append("library"))
    assert order == ["split", "library"] * row_split.TRIALS
    assert (split, library) == (1, 1)


def test_a_gemm_below_the_threshold_is_neither_tried_nor_timed(monkeypatch):
    monkeypatch.setattr(row_split, "_split", {})
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(row_split, "MIN_FLOPS", 2 * 8 * 4 * 3 + 1)  # one FLOP above 8x4 @ 4x3

    def untouched(*_):
        raise AssertionError("a small GEMM was split or timed")

    monkeypatch.setattr(row_split, "_medians", untouched)
    row_split.mm(torch.randn(8, 4), torch.randn(4, 3), SimpleNamespace(mm_rows=untouched))
    assert list(row_split._split.values()) == [False]
