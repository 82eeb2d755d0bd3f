"""A small random pre-training batch for model tests: padding, masked slots and padding slots."""

import torch

from harness.models import PretrainingBatch


def random_batch(B=3, S=32, P=6, real=24, seed=0) -> PretrainingBatch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(999, 30522, (B, S), generator=g)
    mask = torch.zeros(B, S, dtype=torch.long)
    mask[:, :real] = 1
    ids[mask == 0] = 0
    positions = torch.stack([torch.randperm(real - 2, generator=g)[:P] + 1 for _ in range(B)])
    weights = torch.ones(B, P)
    weights[0, -2:] = 0  # padding slots
    return PretrainingBatch(
        ids,
        mask,
        (torch.arange(S) >= S // 2).long().expand(B, S).clone(),
        positions,
        torch.randint(999, 30522, (B, P), generator=g),
        weights,
        torch.tensor([0, 1, 0][:B]),
    )
