"""LAMB (You et al. 2019) as the MLPerf BERT reference uses it, with its learning-rate schedule.

The update runs as a handful of `torch._foreach_*` kernels over all tensors of a group instead of a
Python loop of small kernels per tensor: on BERT-Large (~400 tensors) the loop's per-kernel overhead
would be a visible share of the step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

NO_DECAY_SUFFIXES = ("bias", "LayerNorm.weight", "LayerNorm.bias")
"""Parameters the reference exempts from weight decay (and therefore from the trust ratio)."""


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups, split by name as the reference does: weights that decay and take the trust
    ratio, and biases / LayerNorm that do neither (whatever the decay rate is)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith(NO_DECAY_SUFFIXES) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay, "adaptive": True},
            {"params": no_decay, "weight_decay": 0.0, "adaptive": False}]


def poly_warmup_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int,
                   power: float = 1.0) -> float:
    """Learning rate for 1-based `step`, as the MLPerf reference computes it: polynomial decay
    from base_lr to 0 over all steps, with the first `warmup_steps` replaced by a linear ramp."""
    if step <= warmup_steps:
        return base_lr * step / max(warmup_steps, 1)
    return base_lr * max(1.0 - step / total_steps, 0.0) ** power


class Lamb(torch.optim.Optimizer):
    """Layer-wise adaptive moments with global gradient-norm clipping before the moments.

    Per step: g <- g / max(||g||_global / max_grad_norm, 1); Adam moments with bias correction;
    u = m_hat / (sqrt(v_hat) + eps) + wd * p; in "adaptive" groups u <- u * ||p|| / ||u|| per
    tensor (1 where either norm is 0); p <- p - lr * u. As in the reference, biases and LayerNorm
    skip the trust ratio. A parameter that fuses several of the reference's tensors (the Q/K/V
    projection) carries `lamb_chunks = n` and gets one trust ratio per chunk, as they would.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.01, max_grad_norm: float = 1.0) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self.max_grad_norm = max_grad_norm

    @torch.no_grad()
    def step_if_finite(self) -> float | None:
        """Update unless the gradients hold a NaN or inf; returns the global gradient norm before
        clipping, or None (and leaves the weights alone) when it is not finite."""
        norm = self._global_norm()
        if not torch.isfinite(norm):
            return None
        self._update(norm)
        return float(norm)

    @torch.no_grad()
    def step(self, closure: None = None) -> torch.Tensor:  # type: ignore[override]
        """One update; returns the global gradient norm before clipping."""
        norm = self._global_norm()
        self._update(norm)
        return norm

    def _global_norm(self) -> torch.Tensor:
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))

    def _update(self, global_norm: torch.Tensor) -> None:
        groups = [(g, [p for p in g["params"] if p.grad is not None]) for g in self.param_groups]
        clip = self.max_grad_norm / torch.clamp(global_norm, min=self.max_grad_norm)

        for group, params in groups:
            if not params:
                continue
            beta1, beta2 = group["betas"]
            group["step"] = step = group.get("step", 0) + 1
            for p in params:
                if not self.state[p]:
                    self.state[p]["exp_avg"] = torch.zeros_like(p)
                    self.state[p]["exp_avg_sq"] = torch.zeros_like(p)
            exp_avg = [self.state[p]["exp_avg"] for p in params]
            exp_avg_sq = [self.state[p]["exp_avg_sq"] for p in params]

            # Clipped in place, as torch.nn.utils.clip_grad_norm_ does: no copy of the gradients.
            grads = [p.grad for p in params]
            torch._foreach_mul_(grads, clip)
            torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)

            # m_hat / (sqrt(v_hat) + eps), with the bias corrections folded into scalars. One
            # temporary per tensor holds the denominator and then the update: on BERT-Large each
            # extra temporary would cost 1.3 GB.
            update = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_div_(update, math.sqrt(1 - beta2**step))
            torch._foreach_add_(update, group["eps"])
            torch._foreach_reciprocal_(update)
            torch._foreach_mul_(update, exp_avg)
            torch._foreach_div_(update, 1 - beta1**step)

            if group["weight_decay"]:
                torch._foreach_add_(update, params, alpha=group["weight_decay"])
            if group.get("adaptive", True):
                # Non-overlapping views: scaling a chunk of `update` scales that part in place.
                p_parts = [c for p in params for c in p.chunk(getattr(p, "lamb_chunks", 1))]
                u_parts = [c for p, u in zip(params, update, strict=True)
                           for c in u.chunk(getattr(p, "lamb_chunks", 1))]
                w_norm = torch.stack(torch._foreach_norm(p_parts))
                u_norm = torch.stack(torch._foreach_norm(u_parts))
                ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, 1.0)
                torch._foreach_mul_(u_parts, list(ratio.unbind(0)))
            torch._foreach_add_(params, update, alpha=-group["lr"])
