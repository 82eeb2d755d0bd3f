"""LAMB over fp32 master weights for a model that computes with bf16 copies of them: the ipex
backend under bf16 (harness.train.ipex_backend).

IPEX casts the model's weights to bf16 and leaves the fp32 originals, the masters, in the
optimizer; its own step moves the gradients and weights between the two only for the `step` it
patches in. The trainer calls `step_if_finite`, which that patch never saw: LAMB then updated the
masters of no weight that IPEX had cast, and the bf16 model did not train (issue 37).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from harness.models.lamb import Lamb

Pair = tuple[torch.Tensor, torch.Tensor]
"""An fp32 master the optimizer holds, and the bf16 weight the model computes with."""


def step_on_masters(
    optimizer: Lamb, pairs: Sequence[Pair], write_down: Callable[[torch.Tensor, torch.Tensor], None]
) -> Callable[[], float | None]:
    """The optimizer's `step_if_finite`, on the masters: each bf16 weight's gradient becomes its
    master's (in fp32, so that the global norm and the moments see no bf16 sums), LAMB updates the
    masters, and `write_down(master, weight)` rounds each master into its bf16 weight. A step
    skipped for a non-finite gradient leaves both alone."""
    lamb_step_if_finite = optimizer.step_if_finite

    def step_if_finite() -> float | None:
        for master, weight in pairs:
            master.grad = None if weight.grad is None else weight.grad.float()
        norm = lamb_step_if_finite()
        if norm is not None:
            for master, weight in pairs:
                write_down(master, weight)
        return norm

    return step_if_finite
