"""A worker's side of the backends (harness.train.backends): the model and optimizer handed to
the run's backend, and the fp32 weights a checkpoint saves. Apart from backends.py because this
side needs torch and the fused kernels' modules, which the parent process must not load: it
checks and builds the backends before any worker starts."""

from __future__ import annotations

import contextlib

import torch

from harness import kernels
from harness.errors import HarnessError
from harness.kernels.lamb import FusedLamb
from harness.kernels.layers import fuse
from harness.models.bert import BertForPreTraining
from harness.models.lamb import Lamb
from harness.precision.modes import PrecisionMode
from harness.train.backends import check_available, mode_problem

MASKED_ROW_MULTIPLE = 32
"""The fused backend's bucket for the MLM head's rows under bf16, whose GEMMs run in oneDNN
(BertForPreTraining.masked_row_multiple): at phase 1's 100-160 masked tokens a batch, three
shapes, for 16 padded rows on average."""


def prepare(
    backend: str,
    model: torch.nn.Module,
    optimizer: Lamb,
    mode: PrecisionMode,
    machine_key: str,
    gemm_isa: str | None,
    distributed: bool = False,
) -> tuple[torch.nn.Module, torch.optim.Optimizer, dict]:
    """The model and optimizer to train with, and what to record about the backend. gemm_isa: the
    ISA the mode's GEMMs run on here, as the parent admitted it (WorkerContext.gemm_isa). fused
    under bf16 autocast holds the Linear layers' fp32 weights split, the model computing with
    their bf16 high halves, which its optimizer writes, except with several ranks: DDP would then
    average the gradients in bf16."""
    if backend == "stock":
        return model, optimizer, {"backend": "stock", "backend_version": torch.__version__}
    check_available(backend)
    if problem := mode_problem(backend, mode):
        raise HarnessError(problem)
    if backend == "fused":
        ops = kernels.load(machine_key)
        transposed = transposes_weight_grads(mode, gemm_isa)
        fuse(model, ops, transposed_weight_grads=transposed)
        if transposed and isinstance(model, BertForPreTraining):
            model.decoder_transpose = ops.transpose_2d
        if mode.autocast == "bfloat16" and isinstance(model, BertForPreTraining):
            model.masked_row_multiple = MASKED_ROW_MULTIPLE
        fused = FusedLamb.like(optimizer, ops)
        split = mode.autocast == "bfloat16" and not distributed
        if split:
            fused.hold_in_bf16(
                p for m in model.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters()
            )
            if isinstance(model, BertForPreTraining):
                model.decoder_weight16 = fused.shadow_in_bf16(model.bert.embeddings.word_embeddings.weight)
        return (
            model,
            fused,
            {
                "backend": "fused",
                "backend_version": kernels.build_key(machine_key),
                "bf16_weights": split,
            },
        )
    # here only: ipex_backend imports intel_extension_for_pytorch as it loads, and IPEX is
    # installed only in an environment of its own (harness.train.backends)
    from harness.train import ipex_backend

    return ipex_backend.prepare(model, optimizer, mode.autocast)


def transposes_weight_grads(mode: PrecisionMode, gemm_isa: str | None) -> bool:
    """Whether the fused layers' weight gradients read their output gradients as contiguous
    transposes (harness.kernels.layers.dense): only where the GEMMs run in bf16 on AMX, whose
    oneDNN kernels pay for a transposed view; AVX512_BF16's and MKL's fp32 do not, and there the
    copy would only add its time (docs/fused-amx.md)."""
    return mode.autocast == "bfloat16" and gemm_isa == "amx"


def full_precision(optimizer: torch.optim.Optimizer) -> contextlib.AbstractContextManager:
    """While the block runs, the model holds its fp32 weights (the fused backend's, joined from
    their halves): what a checkpoint saves and phase 2 starts from."""
    return optimizer.full_precision() if isinstance(optimizer, FusedLamb) else contextlib.nullcontext()
