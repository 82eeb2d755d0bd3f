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
    """Two groups: weights that decay and take the trust ratio, and biases / LayerNorm that do neither."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith(NO_DECAY_SUFFIXES) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def poly_warmup_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int,
                   power: float = 1.0) -> float:
    """Learning rate for 1-based `step`: linear warm-up to base_lr, then polynomial decay to 0."""
    if step <= warmup_steps:
        return base_lr * step / max(warmup_steps, 1)
    remaining = (total_steps - step) / max(total_steps - warmup_steps, 1)
    return base_lr * max(remaining, 0.0) ** power


class Lamb(torch.optim.Optimizer):
    """Layer-wise adaptive moments with global gradient-norm clipping before the moments.

    Per step: g <- g / max(||g||_global / max_grad_norm, 1); Adam moments with bias correction;
    u = m_hat / (sqrt(v_hat) + eps) + wd * p; for decayed tensors u <- u * ||p|| / ||u|| (1 where
    either norm is 0); p <- p - lr * u. As in the reference, tensors without weight decay (biases,
    LayerNorm) skip the trust ratio.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.01, max_grad_norm: float = 1.0) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self.max_grad_norm = max_grad_norm

    @torch.no_grad()
    def step(self, closure: None = None) -> torch.Tensor:  # type: ignore[override]
        """One update; returns the global gradient norm before clipping."""
        groups = [(g, [p for p in g["params"] if p.grad is not None]) for g in self.param_groups]
        all_grads = [p.grad for _, params in groups for p in params]
        global_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(all_grads)))
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
                w_norm = torch.stack(torch._foreach_norm(params))
                u_norm = torch.stack(torch._foreach_norm(update))
                ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, 1.0)
                torch._foreach_mul_(update, list(ratio.unbind(0)))
            torch._foreach_add_(params, update, alpha=-group["lr"])
        return global_norm
