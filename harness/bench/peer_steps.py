"""bench peer's two training steps, on the same batch: ours (BertForPreTraining + LAMB, on the
run's backend) and Hugging Face's (BertForPreTraining + fused AdamW), both under the mode's
autocast and both credited with the same analytic FLOPs. Each step times its two parts, as a
`harness train` step's clock does (harness.train.hooks.StepClock), so that one recorded step
splits as a run's census step does (harness.results.time_split)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch.profiler import ProfilerActivity, profile

from harness.datasets.mlcommons import checked, resolve_phase_data, training_loader
from harness.errors import HarnessError
from harness.models import BertForPreTraining, Lamb, load_config, parameter_groups
from harness.models.bert import head_positions
from harness.models.flops import training_step_flops
from harness.precision.modes import PrecisionMode
from harness.train import prepare_backend
from harness.train.evaluate import to_batch


class StepParts(NamedTuple):
    """A step's own work in the two parts TimeSplit.of_step takes; the step's wall time is timed
    around the call, so what is left of it (the call, the timing) is neither."""

    forward_backward_s: float
    optimizer_s: float


Step = Callable[[], StepParts]


def _timed(forward_backward: Callable[[], None], optimizer_step: Callable[[], None]) -> Step:
    """The step of the two parts, each timed, split where a `harness train` step's clock splits
    it (after backward), so the three rows' parts mean the same."""

    def step() -> StepParts:
        start = time.perf_counter()
        forward_backward()
        middle = time.perf_counter()
        optimizer_step()
        return StepParts(middle - start, time.perf_counter() - middle)

    return step


def first_batch(dataset: str, phase: int, batch_size: int, vocab: int) -> dict:
    """The first training batch of the phase's data: the same examples (padding, masked counts)
    a `harness train` run of that phase sees, so all three workers do comparable work."""
    data = resolve_phase_data(Path(dataset), phase, 0.9, 8)
    return checked(next(iter(training_loader(data, batch_size, seed=0, workers=0, vocab_size=vocab))))


def harness_step(
    model_name: str, raw: dict, mode: PrecisionMode, backend: str, machine_key: str, gemm_isa: str | None
) -> tuple[Step, int]:
    """Our step and its FLOPs; gemm_isa: as prepare_backend.prepare's."""
    model = BertForPreTraining(load_config(model_name)).train()
    optimizer = Lamb(parameter_groups(model, 0.01), lr=1e-4)
    model, optimizer, _ = prepare_backend.prepare(backend, model, optimizer, mode, machine_key, gemm_isa)
    batch = to_batch(raw)

    def forward_backward() -> None:
        with mode.autocast_context():
            out = model(batch)
        out.loss.backward()

    def optimizer_step() -> None:
        optimizer.step_if_finite()
        optimizer.zero_grad(set_to_none=True)

    flops = model.training_flops(*_shape(raw))
    return _timed(forward_backward, optimizer_step), flops


def _shape(raw: dict) -> tuple[int, int, int, int]:
    """(batch size, seq len, the last layer's rows, masked tokens) of a batch: what our model's
    FLOPs for it take."""
    B, S = raw["input_ids"].shape
    return B, S, head_positions(to_batch(raw)).numel(), int((raw["masked_lm_weights"] > 0).sum())


def hugging_face_step(model_name: str, raw: dict, mode: PrecisionMode) -> tuple[Step, int]:
    """Hugging Face's step and the FLOPs our model is credited with for the same batch."""
    try:
        # inside: transformers is an optional dependency, needed by this side of bench peer only
        import transformers
    except ImportError:
        raise HarnessError(
            "bench peer: the Hugging Face side needs transformers (pip install -e '.[test]' "
            "or pip install transformers)"
        ) from None
    cfg = load_config(model_name)
    hf_config = transformers.BertConfig(**cfg.to_hf_dict())
    model = transformers.BertForPreTraining(hf_config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
    labels = torch.full_like(raw["input_ids"], -100)
    labels.scatter_(1, raw["masked_lm_positions"], raw["masked_lm_ids"])

    def forward_backward() -> None:
        with mode.autocast_context():
            out = model(
                input_ids=raw["input_ids"],
                attention_mask=raw["input_mask"],
                token_type_ids=raw["segment_ids"],
                labels=labels,
                next_sentence_label=raw["next_sentence_labels"],
            )
        out.loss.backward()

    def optimizer_step() -> None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # Credited with our model's FLOPs: the same useful work (HF's last layer and MLM head also
    # run on every token the loss does not read, which is its cost, not extra work done).
    flops = training_step_flops(cfg, *_shape(raw))
    return _timed(forward_backward, optimizer_step), flops


def top_operators(step: Step, top: int) -> list[dict]:
    """The `top` operators of one profiled step by self CPU time."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [
        {
            "op": e.key,
            "self_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total,
            "calls": e.count,
        }
        for e in events[:top]
    ]
