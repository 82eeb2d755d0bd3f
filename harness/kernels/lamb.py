"""LAMB on the fused kernels: the same update as harness.models.lamb.Lamb, in one call over all
tensors at once (csrc/lamb.cpp) instead of a dozen kernels per tensor.

1. the global gradient norm (read the gradients; `sum_squares`);
2. `lamb_step`, window by window (consecutive tensors of about 4 M elements, a larger one alone):
   the moments, the update and, per tensor or chunk, ||w|| and ||u|| (read gradients, weights,
   moments; write the moments); then the trust-ratio step (write the weights), which finds the
   window's weights and updates still in the caches.

The state (exp_avg, exp_avg_sq per parameter, step per group) is Lamb's, so a checkpoint of
either resumes with the other.

Under bf16 autocast, `hold_in_bf16` splits the GEMMs' fp32 weights into two halves: the bf16
weight the model computes with, and the fp32 word's low 16 bits, which the optimizer keeps; the step
updates the fp32 weight they make and rewrites both (csrc/elements.h). Autocast then has no weight
to cast in the forward pass and no gradient to cast back in the backward one, and the step writes 2
bytes a weight less than an fp32 master and a bf16 copy of it would. The bf16 weight is the fp32
one rounded to nearest with ties away from zero, which only a split of this kind can hold: one
bf16 ulp from autocast's round to nearest even at an exact tie (1 in 65,536), the same elsewhere.
`shadow_in_bf16` gives a parameter that stays fp32 (the word embeddings, which the lookup reads in
fp32) a bf16 copy, rounded to nearest even, that the step writes as well, for the GEMM that reads
it (the tied decoder). The GEMMs give their weight gradients in bf16 either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from types import ModuleType

import torch

from harness.models.lamb import Lamb


class FusedLamb(Lamb):
    """Lamb whose step runs in the fused kernels `ops` (harness.kernels.load)."""

    def __init__(self, params, ops: ModuleType, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self.ops = ops
        self.low_halves: dict[torch.nn.Parameter, torch.Tensor] = {}
        """The int16 low halves of the fp32 weights of the parameters held in bf16, whose bf16
        data are the high halves. Not state: the saved model holds the fp32 weights
        (full_precision), so a checkpoint has them once."""
        self.shadows: dict[torch.nn.Parameter, torch.Tensor] = {}
        """bf16 copies of fp32 parameters that stay fp32 (shadow_in_bf16), rewritten each step."""
        self.updates = torch.empty(0)
        """lamb_step's scratch for a window's updates, which it grows to the largest window once:
        kept here so that its pages stay mapped from step to step. Not state."""

    def hold_in_bf16(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Each fp32 parameter is split: it becomes the high half, a bf16 tensor, and its low half
        stays here. Call before the first step, after loading any state."""
        for p in params:
            p.data, self.low_halves[p] = self.ops.split_weight(p.detach().contiguous())

    def shadow_in_bf16(self, p: torch.nn.Parameter) -> torch.Tensor:
        """A bf16 copy of `p`, which stays fp32 and takes fp32 gradients, rewritten by every step in
        the pass that updates `p`: for a weight that one use reads in fp32 and another through a
        bf16 GEMM (the word embeddings: the lookup and the tied decoder). Call before the first
        step, after loading any state."""
        self.shadows[p] = p.detach().to(torch.bfloat16)
        return self.shadows[p]

    @contextlib.contextmanager
    def full_precision(self) -> Iterator[None]:
        """The parameters held in bf16 hold their fp32 weights, joined from the halves, while the
        block runs: what a checkpoint saves. What the block writes to them is not kept."""
        highs = {p: p.data for p in self.low_halves}
        for p, low in self.low_halves.items():
            p.data = self.ops.join_weight(p.data, low)
        try:
            yield
        finally:
            for p, high in highs.items():
                p.data = high

    @classmethod
    def like(cls, optimizer: Lamb, ops: ModuleType) -> FusedLamb:
        """The same groups, hyperparameters and state (a resumed run's moments included)."""
        fused = cls(optimizer.param_groups, ops, **optimizer.defaults)
        fused.load_state_dict(optimizer.state_dict())
        return fused

    def streamed_bytes(self) -> int:
        """The bytes a step must move at the least: the gradients read twice (the global norm,
        then the moments); the weights (fp32, or both halves) and both moments read and written
        once, a window's second pass reading them from the caches; the shadows written."""
        total = 0
        for p in (p for g in self.param_groups for p in g["params"]):
            low, shadow = self.low_halves.get(p), self.shadows.get(p)
            weight_bytes = p.numel() * p.element_size() + (0 if low is None else low.numel() * 2)
            total += p.numel() * p.element_size() * 2 + weight_bytes * 2
            total += p.numel() * 4 * 2 * 2  # exp_avg and exp_avg_sq, fp32 (as the kernel takes)
            total += 0 if shadow is None else shadow.numel() * shadow.element_size()
        return total

    def _global_norm(self) -> torch.Tensor:
        return self.ops.sum_squares([g.contiguous() for g in self._grads()]).sum().sqrt().float()

    def _update(self, global_norm: torch.Tensor) -> None:
        clip = self.defaults["max_grad_norm"]
        grad_scale = clip / max(float(global_norm), clip)
        segments = self._segments()
        if not segments:
            return
        weights, lows, grads, exp_avgs, exp_avg_sqs, shadows, decays, groups = zip(*segments, strict=True)
        beta1, beta2 = self.defaults["betas"]
        for group in self.param_groups:
            group["step"] = group.get("step", 0) + 1
        # one step count for every group: the kernels apply one bias correction (Lamb's groups
        # always step together)
        step = self.param_groups[0]["step"]
        eps = self.defaults["eps"]
        self.ops.lamb_step(
            self.updates,
            list(weights), list(grads), list(exp_avgs), list(exp_avg_sqs), list(shadows), list(lows),
            list(decays),
            [group["lr"] for group in groups], [group.get("adaptive", True) for group in groups],
            beta1, beta2, eps, step, grad_scale,
        )  # fmt: skip

    def _segments(self) -> list[tuple]:
        """(weight, its low half or None, gradient, exp_avg, exp_avg_sq, its shadow or None, weight
        decay, group) per trust-ratio unit: a parameter, or each chunk of a fused one (views along
        dim 0, so still contiguous)."""
        segments = []
        for group in self.param_groups:
            if group["betas"] != self.defaults["betas"] or group["eps"] != self.defaults["eps"]:
                raise ValueError("FusedLamb: every group must share the defaults' betas and eps")
            for p in group["params"]:
                if p.grad is None:
                    continue
                low, shadow = self.low_halves.get(p), self.shadows.get(p)
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                chunks = getattr(p, "lamb_chunks", 1) if group.get("adaptive", True) else 1
                parts = zip(
                    p.detach().chunk(chunks),
                    low.chunk(chunks) if low is not None else [None] * chunks,
                    p.grad.contiguous().chunk(chunks),
                    state["exp_avg"].chunk(chunks),
                    state["exp_avg_sq"].chunk(chunks),
                    shadow.chunk(chunks) if shadow is not None else [None] * chunks,
                    strict=True,
                )
                segments += [(*part, group["weight_decay"], group) for part in parts]
        return segments
