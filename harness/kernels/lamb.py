"""LAMB on the fused kernels: the same update as harness.models.lamb.Lamb, in three streaming
passes over all tensors at once (csrc/lamb.cpp) instead of a dozen per tensor.

1. the global gradient norm (read the gradients);
2. the moments and, per tensor or chunk, ||w|| and ||u|| (read gradients, weights, moments; write
   the moments);
3. the trust-ratio step (read weights and moments; write the weights).

The state (exp_avg, exp_avg_sq per parameter, step per group) is Lamb's, so a checkpoint of
either resumes with the other.
"""

from __future__ import annotations

from types import ModuleType

import torch

from harness.models.lamb import Lamb


class FusedLamb(Lamb):
    """Lamb whose step runs in the fused kernels `ops` (harness.kernels.load)."""

    def __init__(self, params, ops: ModuleType, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self.ops = ops

    @classmethod
    def like(cls, optimizer: Lamb, ops: ModuleType) -> FusedLamb:
        """The same groups, hyperparameters and state (a resumed run's moments included)."""
        fused = cls(optimizer.param_groups, ops, **optimizer.defaults)
        fused.load_state_dict(optimizer.state_dict())
        return fused

    def _global_norm(self) -> torch.Tensor:
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        return self.ops.sum_squares([g.contiguous() for g in grads]).sum().sqrt().float()

    def _update(self, global_norm: torch.Tensor) -> None:
        clip = self.defaults["max_grad_norm"]
        grad_scale = clip / max(float(global_norm), clip)
        segments = self._segments()
        if not segments:
            return
        weights, grads, exp_avgs, exp_avg_sqs, decays, groups = zip(*segments, strict=True)
        beta1, beta2 = self.defaults["betas"]
        for group in self.param_groups:
            group["step"] = group.get("step", 0) + 1
        # one step count for every group: the kernels apply one bias correction (Lamb's groups
        # always step together)
        step = self.param_groups[0]["step"]
        eps = self.defaults["eps"]
        norms = self.ops.lamb_moments(
            list(weights), list(grads), list(exp_avgs), list(exp_avg_sqs), list(decays),
            beta1, beta2, eps, step, grad_scale,
        )  # fmt: skip
        step_sizes = []
        for (w_sq, u_sq), group in zip(norms.tolist(), groups, strict=True):
            ratio = 1.0
            if group.get("adaptive", True) and w_sq > 0 and u_sq > 0:
                ratio = (w_sq / u_sq) ** 0.5
            step_sizes.append(group["lr"] * ratio)
        self.ops.lamb_apply(
            list(weights), list(exp_avgs), list(exp_avg_sqs), [None] * len(weights), list(decays),
            step_sizes, beta1, beta2, eps, step,
        )  # fmt: skip

    def _segments(self) -> list[tuple]:
        """(weight, gradient, exp_avg, exp_avg_sq, weight decay, group) per trust-ratio unit: a
        parameter, or each chunk of a fused one (views along dim 0, so still contiguous)."""
        segments = []
        for group in self.param_groups:
            if group["betas"] != self.defaults["betas"] or group["eps"] != self.defaults["eps"]:
                raise ValueError("FusedLamb: every group must share the defaults' betas and eps")
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                chunks = getattr(p, "lamb_chunks", 1) if group.get("adaptive", True) else 1
                parts = zip(
                    p.chunk(chunks),
                    p.grad.contiguous().chunk(chunks),
                    state["exp_avg"].chunk(chunks),
                    state["exp_avg_sq"].chunk(chunks),
                    strict=True,
                )
                segments += [(*part, group["weight_decay"], group) for part in parts]
        return segments
