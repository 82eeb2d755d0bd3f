"""LAMB on the fused kernels: the same update as harness.models.lamb.Lamb, in one call over all
tensors at once (csrc/lamb.cpp) instead of a dozen kernels per tensor.

1. the global gradient norm (read the gradients; `sum_squares`);
2. `lamb_step`, window by window (consecutive tensors of about 4 M elements, a larger one alone):
   the moments, the update and, per tensor or chunk, ||w|| and ||u|| (read gradients, weights,
   moments; write the moments); then the trust-ratio step (write the weights), which finds the
   window's weights and updates still in the caches.

The state (exp_avg, exp_avg_sq per parameter, step per group) is Lamb's, so a checkpoint of
either resumes with the other.

Under bf16 autocast, `hold_in_bf16` turns the GEMMs' weights into bf16 copies that the step writes
beside their fp32 masters: autocast then has no weight to cast in the forward pass and no
gradient to cast back in the backward one. `shadow_in_bf16` gives a parameter that stays fp32
(the word embeddings, which the lookup reads in fp32) a bf16 copy the step writes as well, for the
GEMM that reads it (the tied decoder). The values are autocast's own: its casts round the
same fp32 weights to nearest even, and the GEMMs give their weight gradients in bf16 either way.
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
        self.masters: dict[torch.nn.Parameter, torch.Tensor] = {}
        """The fp32 weights of the parameters held in bf16. Not state: the saved model holds them
        (full_precision), so a checkpoint has them once."""
        self.shadows: dict[torch.nn.Parameter, torch.Tensor] = {}
        """bf16 copies of fp32 parameters that stay fp32 (shadow_in_bf16), rewritten each step."""
        self.updates = torch.empty(0)
        """lamb_step's scratch for a window's updates, which it grows to the largest window once:
        kept here so that its pages stay mapped from step to step. Not state."""

    def hold_in_bf16(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Each parameter becomes the bf16 copy of its fp32 value, which stays here as its master.
        Call before the first step, after loading any state."""
        for p in params:
            self.masters[p] = p.detach().clone()
            p.data = p.data.to(torch.bfloat16)

    def shadow_in_bf16(self, p: torch.nn.Parameter) -> torch.Tensor:
        """A bf16 copy of `p`, which stays fp32 and takes fp32 gradients, rewritten by every step in
        the pass that updates `p`: for a weight that one use reads in fp32 and another through a
        bf16 GEMM (the word embeddings: the lookup and the tied decoder). Call before the first
        step, after loading any state."""
        self.shadows[p] = p.detach().to(torch.bfloat16)
        return self.shadows[p]

    @contextlib.contextmanager
    def full_precision(self) -> Iterator[None]:
        """The parameters hold their fp32 masters while the block runs: what a checkpoint saves."""
        copies = {p: p.data for p in self.masters}
        for p, master in self.masters.items():
            p.data = master
        try:
            yield
        finally:
            for p, copy in copies.items():
                p.data = copy

    @classmethod
    def like(cls, optimizer: Lamb, ops: ModuleType) -> FusedLamb:
        """The same groups, hyperparameters and state (a resumed run's moments included)."""
        fused = cls(optimizer.param_groups, ops, **optimizer.defaults)
        fused.load_state_dict(optimizer.state_dict())
        return fused

    def streamed_bytes(self) -> int:
        """The bytes a step must move at the least: the gradients read twice (the global norm,
        then the moments); the fp32 weights and both moments read and written once, a window's
        second pass reading them from the caches; the bf16 copies written."""
        total = 0
        for p in (p for g in self.param_groups for p in g["params"]):
            weight, copy = self._fp32_and_copy(p)
            total += p.numel() * p.element_size() * 2 + weight.numel() * weight.element_size() * 2
            total += weight.numel() * 4 * 2 * 2  # exp_avg and exp_avg_sq, fp32 (as the kernel takes)
            total += 0 if copy is None else copy.numel() * copy.element_size()
        return total

    def _fp32_and_copy(self, p: torch.nn.Parameter) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The fp32 weight the step updates (p, or its master) and the bf16 copy it writes beside
        it (p itself where held in bf16, its shadow, or None)."""
        if p in self.masters:
            return self.masters[p], p
        return p, self.shadows.get(p)

    def _global_norm(self) -> torch.Tensor:
        return self.ops.sum_squares([g.contiguous() for g in self._grads()]).sum().sqrt().float()

    def _update(self, global_norm: torch.Tensor) -> None:
        clip = self.defaults["max_grad_norm"]
        grad_scale = clip / max(float(global_norm), clip)
        segments = self._segments()
        if not segments:
            return
        weights, grads, exp_avgs, exp_avg_sqs, copies, decays, groups = zip(*segments, strict=True)
        beta1, beta2 = self.defaults["betas"]
        for group in self.param_groups:
            group["step"] = group.get("step", 0) + 1
        # one step count for every group: the kernels apply one bias correction (Lamb's groups
        # always step together)
        step = self.param_groups[0]["step"]
        eps = self.defaults["eps"]
        self.ops.lamb_step(
            self.updates,
            list(weights), list(grads), list(exp_avgs), list(exp_avg_sqs), list(copies), list(decays),
            [group["lr"] for group in groups], [group.get("adaptive", True) for group in groups],
            beta1, beta2, eps, step, grad_scale,
        )  # fmt: skip

    def _segments(self) -> list[tuple]:
        """(fp32 weight, gradient, exp_avg, exp_avg_sq, bf16 copy or None, weight decay, group) per
        trust-ratio unit: a parameter, or each chunk of a fused one (views along dim 0, so still
        contiguous)."""
        segments = []
        for group in self.param_groups:
            if group["betas"] != self.defaults["betas"] or group["eps"] != self.defaults["eps"]:
                raise ValueError("FusedLamb: every group must share the defaults' betas and eps")
            for p in group["params"]:
                if p.grad is None:
                    continue
                weight, copy = self._fp32_and_copy(p)
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(weight)
                    state["exp_avg_sq"] = torch.zeros_like(weight)
                chunks = getattr(p, "lamb_chunks", 1) if group.get("adaptive", True) else 1
                parts = zip(
                    weight.chunk(chunks),
                    p.grad.contiguous().chunk(chunks),
                    state["exp_avg"].chunk(chunks),
                    state["exp_avg_sq"].chunk(chunks),
                    copy.chunk(chunks) if copy is not None else [None] * chunks,
                    strict=True,
                )
                segments += [(*part, group["weight_decay"], group) for part in parts]
        return segments
