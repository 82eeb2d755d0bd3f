"""LAMB (You et al. 2019) as the MLPerf BERT reference uses it, with its learning-rate schedule.

The Adam part of the update (clipping, both moments, the bias-corrected direction) runs in PyTorch's
fused Adam kernel, tensor by tensor into one reused buffer; the trust ratio and the step follow. On
BERT-Large that is about a third of the time of the same math as a dozen `_foreach_` passes
(tests/benchmarks/bench_kernels.py, test_lamb_step).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from harness.precision import fp32_math

NO_DECAY_SUFFIXES = ("bias", "LayerNorm.weight", "LayerNorm.bias")
"""Parameters the reference exempts from weight decay (and therefore from the trust ratio)."""


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups, split by name as the reference does: weights that decay and take the trust
    ratio, and biases / LayerNorm that do neither (whatever the decay rate is)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith(NO_DECAY_SUFFIXES) else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "adaptive": True},
        {"params": no_decay, "weight_decay": 0.0, "adaptive": False},
    ]


def poly_warmup_lr(
    step: int, base_lr: float, warmup_steps: int, total_steps: int, power: float = 1.0
) -> float:
    """Learning rate for 1-based `step`, as the MLPerf reference computes it: polynomial decay
    from base_lr to 0 over all steps, with the first `warmup_steps` replaced by a linear ramp."""
    if step <= warmup_steps:
        return base_lr * step / max(warmup_steps, 1)
    return base_lr * max(1.0 - step / total_steps, 0.0) ** power


def _squared_norm(x: torch.Tensor) -> torch.Tensor:
    """||x||^2 as a BLAS dot product, one streaming pass where linalg.vector_norm makes more
    (docs/model.md gives the difference). A non-finite element stays non-finite; the result is
    at least fp32, so that summing hundreds of them loses nothing to bf16 weights."""
    flat = x.reshape(-1)
    return torch.dot(flat, flat).to(torch.promote_types(x.dtype, torch.float32))


class Lamb(torch.optim.Optimizer):
    """Layer-wise adaptive moments with global gradient-norm clipping before the moments.

    Per step: g <- g / max(||g||_global / max_grad_norm, 1); Adam moments with bias correction;
    u = m_hat / (sqrt(v_hat) + eps) + wd * p; in "adaptive" groups u <- u * ||p|| / ||u|| per
    tensor (1 where either norm is 0); p <- p - lr * u. As in the reference, biases and LayerNorm
    skip the trust ratio. A parameter that fuses several of the reference's tensors (the Q/K/V
    projection) carries `lamb_chunks = n` and gets one trust ratio per chunk, as they would.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        max_grad_norm: float = 1.0,
    ) -> None:
        # max_grad_norm is global, but in the defaults: they survive a copy (ipex.optimize
        # deep-copies the optimizer, and Optimizer pickles only defaults, state and groups)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "max_grad_norm": max_grad_norm,
        }
        super().__init__(params, defaults)
        self._scratch: torch.Tensor | None = None
        """Room for the update of the largest tensor: not state, never saved."""

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._scratch = None  # a copy makes its own

    @torch.no_grad()
    def step_if_finite(self) -> float | None:
        """Update unless the gradients hold a NaN or inf; returns the global gradient norm before
        clipping, or None (and leaves the weights alone) when it is not finite."""
        with fp32_math.ieee():
            norm = self._global_norm()
            if not torch.isfinite(norm):
                return None
            self._update(norm)
        return float(norm)

    @torch.no_grad()
    def step(self, closure: None = None) -> torch.Tensor:  # type: ignore[override]
        """One update; returns the global gradient norm before clipping."""
        # IEEE fp32 whatever the GEMM route set: under the oneDNN route `torch.dot` runs in oneDNN
        # as a 1 x N by N x 1 matmul at a fifth of BLAS's speed, and on AMX it would round to bf16
        with fp32_math.ieee():
            norm = self._global_norm()
            self._update(norm)
        return norm

    def streamed_bytes(self) -> int:
        """The bytes a step must move at the least: LAMB's three passes (the global gradient norm;
        the moments with each tensor's norms; the trust-ratio step) read the gradients twice and
        the weights and both moments twice each, and write those three once. Every pass streams
        more than any cache holds, so this at the memory's bandwidth is the step's speed of light."""
        total = 0
        for p in (p for g in self.param_groups for p in g["params"]):
            state = self.state.get(p) or {"exp_avg": p, "exp_avg_sq": p}  # before its first step
            moments = state["exp_avg"].element_size() + state["exp_avg_sq"].element_size()
            # a gradient is in its parameter's dtype (and set to None between steps)
            total += p.numel() * p.element_size() * 5 + p.numel() * 3 * moments
        return total

    def _grads(self) -> list[torch.Tensor]:
        return [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]

    def _global_norm(self) -> torch.Tensor:
        return torch.stack([_squared_norm(g) for g in self._grads()]).sum().sqrt()

    def _update(self, global_norm: torch.Tensor) -> None:
        # the fused kernel divides the gradients by grad_scale: dividing by 1/clip clips them
        # (as a float32 scalar, whatever the parameters' dtype: the kernel takes no other)
        clip = self.defaults["max_grad_norm"]
        inv_clip = (torch.clamp(global_norm, min=clip) / clip).float()
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        largest = max(p.numel() for p in params)
        if self._scratch is None or self._scratch.numel() < largest:
            self._scratch = torch.empty(largest, dtype=params[0].dtype)
        for group in self.param_groups:
            group["step"] = group.get("step", 0) + 1
            step = torch.tensor(float(group["step"]), dtype=torch.float32)
            for p in group["params"]:
                if p.grad is not None:
                    self._update_one(p, group, step, inv_clip)

    def _update_one(self, p: torch.Tensor, group: dict, step: torch.Tensor, inv_clip: torch.Tensor) -> None:
        """One tensor: the Adam direction, weight decay, the trust ratio, the step.

        PyTorch's fused Adam kernel adds the bias-corrected direction m_hat / (sqrt(v_hat) + eps)
        (lr -1) to the buffer and updates both moments in one pass over the memory;
        element-wise op by op, a dozen passes each streamed BERT-Large's 1.3 GB of moments and
        allocated temporaries that fault in fresh pages every step."""
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        beta1, beta2 = group["betas"]
        u = self._scratch[: p.numel()].view_as(p)
        # the kernel adds its direction to u: start from the weight decay term (or zero)
        if group["weight_decay"]:
            torch.mul(p, group["weight_decay"], out=u)
        else:
            u.zero_()
        torch._fused_adam_(
            [u],
            [p.grad],
            [state["exp_avg"]],
            [state["exp_avg_sq"]],
            [],
            [step],
            lr=-1.0,
            beta1=beta1,
            beta2=beta2,
            weight_decay=0.0,
            eps=group["eps"],
            amsgrad=False,
            maximize=False,
            grad_scale=inv_clip,
            found_inf=None,
        )
        chunks = getattr(p, "lamb_chunks", 1) if group.get("adaptive", True) else 1
        for p_part, u_part in zip(p.chunk(chunks), u.chunk(chunks), strict=True):
            ratio = 1.0
            if group.get("adaptive", True):
                # the trust ratio ||p|| / ||u|| (1 where either is 0), per chunk of a fused parameter
                w_norm = float(_squared_norm(p_part)) ** 0.5
                u_norm = float(_squared_norm(u_part)) ** 0.5
                ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
            p_part.add_(u_part, alpha=-group["lr"] * ratio)
