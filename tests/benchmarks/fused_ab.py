"""A fused block against its earlier form on the same parameters, forward and backward, the two
alternating call by call in one process: between processes this host's noise is larger than the
differences a kernel change makes (docs/fused.md). Prints each form's median and p10..p90.

    python tests/benchmarks/fused_ab.py attention --precision bf16 --batch 8 --seq 128 --calls 120

Blocks (BERT-Large's shapes):
- attention: one self-attention block; before = stock SelfAttention.forward (the GEMM adds the
  bias, the batched GEMMs copy q, k, v out of the projection's views), after = the fused one
  (csrc/qkv_heads.cpp). Both run the fused softmax + dropout.
- encoder: two encoder layers on the fused sublayers; before = each layer's stock forward (autocast
  casts each LayerNorm's output for the next GEMM, autograd casts that gradient back and adds it to
  the residual's), after = FusedEncoder (the LayerNorm kernels write and take the bf16 copies).
  The same in fp32, where there are no copies.
- norm-copy: bf16 only, the kernels of one such LayerNorm site alone (batch x seq rows), as
  norm_copy_calls says: the difference the encoder's noise hides.

bf16 runs under autocast with the Linear parameters held in bf16, as `--backend fused` trains.
Run it on a quiet machine, with the threads the step would have (OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from types import ModuleType

import torch

from harness import kernels
from harness.kernels.layers import FusedEncoder, FusedSelfAttention, fuse
from harness.machine.platform import detect
from harness.models import NAMED_CONFIGS
from harness.models.bert import Encoder, Layer, SelfAttention

Forward = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Call = Callable[[], object]


def _layer_by_layer(encoder: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    for layer in encoder.layer:
        x = Layer.forward(layer, x, mask)
    return x


BLOCKS: dict[str, tuple[type[torch.nn.Module], Forward, Forward]] = {
    "attention": (SelfAttention, SelfAttention.forward, FusedSelfAttention.forward),
    "encoder": (Encoder, _layer_by_layer, FusedEncoder.forward),
}
"""Each block: the stock module it is built as, its forward before and after."""


def block_calls(block: str, ops: ModuleType, bf16: bool, batch: int, seq: int) -> tuple[Call, Call]:
    """One forward and backward of the block before and after, on the same parameters and input."""
    cfg = dataclasses.replace(NAMED_CONFIGS["bert-large"], num_hidden_layers=2)
    module_type, before, after = BLOCKS[block]
    module = module_type(cfg).train()
    fuse(module, ops)
    if bf16:
        for m in module.modules():
            if isinstance(m, torch.nn.Linear):
                for p in m.parameters():
                    p.data = p.data.to(torch.bfloat16)
    x = torch.randn(batch, seq, cfg.hidden_size, requires_grad=True)
    mask = torch.ones(batch, 1, 1, seq, dtype=torch.bool)
    mask[0, ..., seq // 2 :] = False  # one sequence half padding
    grad = torch.randn(batch, seq, cfg.hidden_size)

    def call(forward: Forward) -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = forward(module, x, mask)
        out.float().backward(grad)

    return (lambda: call(before)), (lambda: call(after))


def norm_copy_calls(ops: ModuleType, rows: int) -> tuple[Call, Call]:
    """The dropout + residual + LayerNorm kernel of one site, [rows, 1024], forward and backward;
    before: autocast's cast of its output for the next GEMM and autograd's sum of that GEMM's bf16
    gradient (cast to fp32) with the residual's; after: the kernel writes and takes the copy."""
    width = NAMED_CONFIGS["bert-large"].hidden_size
    y, bias, residual = torch.randn(rows, width).bfloat16(), torch.randn(width), torch.randn(rows, width)
    gamma, beta = torch.rand(width) + 0.5, torch.randn(width)
    grad, grad16, none = (
        torch.randn(rows, width),
        torch.randn(rows, width).bfloat16(),
        torch.empty(0).bfloat16(),
    )

    def before() -> object:
        out, _, h, mean, rstd = ops.dropout_add_norm_forward(
            y, bias, residual, gamma, beta, 0.1, 1e-12, 5, False
        )
        out.to(torch.bfloat16)
        both = grad + grad16.float()
        return ops.dropout_add_norm_backward(both, none, h, mean, rstd, gamma, 0.1, 5, torch.bfloat16)

    def after() -> object:
        _, _, h, mean, rstd = ops.dropout_add_norm_forward(
            y, bias, residual, gamma, beta, 0.1, 1e-12, 5, True
        )
        return ops.dropout_add_norm_backward(grad, grad16, h, mean, rstd, gamma, 0.1, 5, torch.bfloat16)

    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("block", choices=[*sorted(BLOCKS), "norm-copy"])
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--calls", type=int, default=120, help="timed calls of each form")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls of each form first")
    args = parser.parse_args()
    if args.block == "norm-copy" and args.precision != "bf16":
        parser.error("--precision: norm-copy is bf16 only (fp32 has no copies)")

    ops = kernels.load(detect().key())
    torch.manual_seed(0)
    if args.block == "norm-copy":
        before, after = norm_copy_calls(ops, args.batch * args.seq)
    else:
        before, after = block_calls(args.block, ops, args.precision == "bf16", args.batch, args.seq)
    times: dict[str, list[float]] = {"before": [], "after": []}
    for n in range(args.warmup + args.calls):
        for name, call in (("before", before), ("after", after)):
            start = time.perf_counter()
            call()
            if n >= args.warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    for name, ms in times.items():
        p10, *_, p90 = statistics.quantiles(ms, n=10)
        shape = f"{args.batch}x{args.seq}"
        print(
            f"{args.block} {args.precision} {shape} {name}: median {statistics.median(ms):.3f} ms"
            f" (p10..p90 {p10:.3f}..{p90:.3f}, {len(ms)} calls, {torch.get_num_threads()} threads)"
        )


if __name__ == "__main__":
    main()
