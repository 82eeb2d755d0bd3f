"""LAMB over fp32 masters of bf16 weights, as the ipex backend runs it under bf16, without IPEX:
the model's bf16 weights take the gradients, LAMB must update the masters exactly as it updates
fp32 weights, and the bf16 weights must follow (issue 37: IPEX's masters never trained)."""

from __future__ import annotations

import torch

from harness.models.lamb import Lamb
from harness.models.master_weights import step_on_masters


def _round_down(master: torch.Tensor, weight: torch.Tensor) -> None:
    """What IPEX's sync_master_weight_to_bf16 does: the master rounded to bf16, in place."""
    weight.data.copy_(master)


def _lamb(params: list[torch.nn.Parameter]) -> Lamb:
    """A Q/K/V-like chunked weight and a bias that decay and take the trust ratio, and a
    LayerNorm-like weight that does neither."""
    params[0].lamb_chunks = 3  # type: ignore[attr-defined]
    return Lamb(
        [
            {"params": params[:2], "weight_decay": 0.01, "adaptive": True},
            {"params": params[2:], "weight_decay": 0.0, "adaptive": False},
        ],
        lr=0.05,
    )


def _setup(seed: int) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter], Lamb]:
    """fp32 masters in a LAMB, and their bf16 copies."""
    torch.manual_seed(seed)
    masters = [torch.nn.Parameter(torch.randn(s)) for s in ((12, 4), (12,), (4,))]
    weights = [torch.nn.Parameter(m.detach().bfloat16()) for m in masters]
    return masters, weights, _lamb(masters)


def test_lamb_updates_the_masters_as_fp32_weights_and_the_bf16_weights_follow() -> None:
    masters, weights, lamb = _setup(0)
    reference = [torch.nn.Parameter(m.detach().clone()) for m in masters]
    reference_lamb = _lamb(reference)
    step = step_on_masters(lamb, list(zip(masters, weights, strict=True)), _round_down)
    for _ in range(3):
        for w, r in zip(weights, reference, strict=True):
            w.grad = torch.randn_like(w) * 4  # above the clipping norm: the global norm matters
            r.grad = w.grad.float()  # the bf16 gradient, as the masters get it
        norm = step()
        assert norm == reference_lamb.step_if_finite()
        for m, w, r in zip(masters, weights, reference, strict=True):
            assert m.dtype == torch.float32 and torch.equal(m, r)
            assert w.dtype == torch.bfloat16 and torch.equal(w, m.detach().bfloat16())
    assert norm is not None and norm > 1.0


def test_a_non_finite_gradient_leaves_masters_and_weights_alone() -> None:
    masters, weights, lamb = _setup(1)
    before = [t.detach().clone() for t in masters + weights]
    step = step_on_masters(lamb, list(zip(masters, weights, strict=True)), _round_down)
    for w in weights:
        w.grad = torch.randn_like(w)
    weights[1].grad[0] = float("inf")
    assert step() is None
    assert all(torch.equal(t, b) for t, b in zip(masters + weights, before, strict=True))
