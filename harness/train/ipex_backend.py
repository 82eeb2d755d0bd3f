"""The ipex backend: intel-extension-for-pytorch's ipex.optimize on the model, trained by the
MLPerf LAMB of harness.models.lamb.

IPEX 2.8's own fused LAMB (lamb_step in intel_extension_for_pytorch/optim/_functional.py, over
csrc/cpu/aten/kernels/optimizer/LambFusedStepKrnl.cpp) computes another LAMB: it clips no global
gradient norm before the moments, takes a trust ratio for the biases and LayerNorm too, and one for
the fused Q/K/V weight where the reference takes three. So IPEX gets our Lamb, an optimizer it
does not know: under bf16 it keeps the fp32 masters but leaves them untrained
(harness.models.master_weights), so this module runs our Lamb over them.

Imported by harness.train.prepare_backend only for an ipex run: IPEX imports only in its own environment.
"""

from __future__ import annotations

import intel_extension_for_pytorch as ipex
import torch

from harness.errors import HarnessError
from harness.models.lamb import Lamb
from harness.models.master_weights import step_on_masters


def prepare(
    model: torch.nn.Module, optimizer: Lamb, autocast: str | None
) -> tuple[torch.nn.Module, Lamb, dict]:
    """ipex.optimize in the mode's dtype: it re-lays the Linear weights for its kernels and,
    for bf16, casts the weights to bf16 and keeps the fp32 ones as the optimizer's masters."""
    dtype = torch.bfloat16 if autocast == "bfloat16" else torch.float32
    if dtype == torch.bfloat16 and not ipex._C.onednn_has_bf16_support():
        # ipex.optimize asserts this; turning its weight prepacking off would measure another path
        raise HarnessError(
            "--backend ipex: IPEX's bf16 (its weight prepacking) needs AVX512BW, AVX512VL and AVX512DQ "
            "or AVX_NE_CONVERT, which this CPU lacks; run bf16 on the stock backend here"
        )
    # in place: ipex.optimize's copy would drop the Q/K/V parameters' `lamb_chunks` (torch's
    # Parameter.__deepcopy__ carries no attributes) and hold the model twice meanwhile
    model, optimizer = ipex.optimize(model, optimizer=optimizer, dtype=dtype, inplace=True)
    if dtype == torch.bfloat16:
        _check_chunk_layout(optimizer)
        pairs = [
            (master, attr.parameter)
            for master, attr in optimizer.params_attr.items()
            if attr.parameter is not None and attr.parameter is not master
        ]
        # the trainer calls step_if_finite, which IPEX's patched step() does not wrap
        optimizer.step_if_finite = step_on_masters(  # type: ignore[method-assign]
            optimizer, pairs, torch.ops.torch_ipex.sync_master_weight_to_bf16
        )
    return (
        model,
        optimizer,
        {"backend": "ipex", "backend_version": ipex.__version__, "bf16_weights": dtype == torch.bfloat16},
    )


def _check_chunk_layout(optimizer: Lamb) -> None:
    """LAMB takes one trust ratio per chunk of a fused parameter (Q/K/V), cut along dim 0. IPEX
    holds a prepacked weight and its master in oneDNN's blocked layout, whose dim 0 counts blocks of
    output rows: the same cut while the chunks fill whole blocks (BERT's do). Each is checked on a
    tensor that numbers its chunks, so that a layout where the cut differs is refused, not trained."""
    for master, attr in optimizer.params_attr.items():
        chunks = getattr(master, "lamb_chunks", 1)
        if chunks == 1 or attr.op_ctx is None:
            continue
        shape = attr.plain_format_shape
        numbers = torch.arange(1, chunks + 1, dtype=master.dtype).repeat_interleave(shape[0] // chunks)
        packed = attr.op_ctx.pack(numbers[:, None].expand(shape).contiguous())
        for number, part in enumerate(packed.chunk(chunks), start=1):
            if not torch.all((part == number) | (part == 0)):  # 0: the layout's padding
                raise HarnessError(
                    f"--backend ipex: IPEX's layout of a {tuple(shape)} weight splits its {chunks} "
                    "chunks across blocks; LAMB's trust ratio per chunk cannot be taken on it"
                )
