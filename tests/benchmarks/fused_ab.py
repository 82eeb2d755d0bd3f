"""A fused block against its earlier form on the same parameters, forward and backward, the two
alternating call by call in one process: between processes this host's noise is larger than the
differences a kernel change makes (docs/fused.md). Prints each form's median and p10..p90.

    python tests/benchmarks/fused_ab.py attention --precision bf16 --batch 8 --seq 128 --calls 120

Blocks (BERT-Large's shapes):
- attention: one self-attention block; before = stock SelfAttention.forward (the GEMM adds the
  bias, the batched GEMMs copy q, k, v out of the projection's views), after = the fused one
  (csrc/qkv_heads.cpp). Both run the fused softmax + dropout.

bf16 runs under autocast with the Linear parameters held in bf16, as `--backend fused` trains.
Run it on a quiet machine, with the threads the step would have (OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from harness import kernels
from harness.kernels.layers import FusedSelfAttention, fuse
from harness.machine.platform import as_dict, detect, fingerprint_key
from harness.models import NAMED_CONFIGS
from harness.models.bert import SelfAttention

Forward = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

BLOCKS: dict[str, tuple[type[torch.nn.Module], Forward, Forward]] = {
    "attention": (SelfAttention, SelfAttention.forward, FusedSelfAttention.forward),
}
"""Each block: the stock module it is built as, its forward before and after."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("block", choices=sorted(BLOCKS))
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--calls", type=int, default=120, help="timed calls of each form")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls of each form first")
    args = parser.parse_args()

    ops = kernels.load(fingerprint_key(as_dict(detect())))
    cfg = NAMED_CONFIGS["bert-large"]
    torch.manual_seed(0)
    module_type, before, after = BLOCKS[args.block]
    module = module_type(cfg).train()
    fuse(module, ops)
    bf16 = args.precision == "bf16"
    if bf16:
        for m in module.modules():
            if isinstance(m, torch.nn.Linear):
                for p in m.parameters():
                    p.data = p.data.to(torch.bfloat16)
    x = torch.randn(args.batch, args.seq, cfg.hidden_size, requires_grad=True)
    mask = torch.ones(args.batch, 1, 1, args.seq, dtype=torch.bool)
    mask[0, ..., args.seq // 2 :] = False  # one sequence half padding
    grad = torch.randn(args.batch, args.seq, cfg.hidden_size)

    times: dict[str, list[float]] = {"before": [], "after": []}
    for call in range(args.warmup + args.calls):
        for name, forward in (("before", before), ("after", after)):
            module.zero_grad(set_to_none=True)
            x.grad = None
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = forward(module, x, mask)
            out.float().backward(grad)
            if call >= args.warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    for name, ms in times.items():
        p10, *_, p90 = statistics.quantiles(ms, n=10)
        shape = f"{args.batch}x{args.seq}"
        print(
            f"{args.block} {args.precision} {shape} {name}: median {statistics.median(ms):.2f} ms"
            f" (p10..p90 {p10:.2f}..{p90:.2f}, {len(ms)} calls, {torch.get_num_threads()} threads)"
        )


if __name__ == "__main__":
    main()
