"""The fused kernels of a git revision against the working tree's, one kernel's forward and backward
alternating call by call in one process: between processes this host's noise is larger than the
differences a kernel change makes (docs/fused.md). Prints each side's median and p10..p90.

    python tests/benchmarks/kernel_ab.py softmax --against HEAD~1 --precision bf16 --batch 2 --seq 512

The revision's csrc/ is built (about 20 s on 2 cores) under another module name in a temporary
folder, removed afterwards; both sides run on the same inputs and must give the same bits unless
`--allow-different` (a change of numerics, measured on purpose). Kernels, at BERT-Large's shapes
for batch x seq tokens:
- softmax: attention's scale + mask + softmax + dropout ([batch x 16 heads x seq, seq], one
  sequence a quarter padding);
- gelu: the FFN's bias + GELU ([tokens, 4096]);
- norm: bias + dropout + residual + LayerNorm ([tokens, 1024], no bf16 copy);
- qkv: the query/key/value bias and head split ([tokens, 3072] to [3, batch, 16, seq, 64]);
- norms: LAMB's first pass, the gradients' squared norms, over tensors of BERT-Large's parameter
  sizes (336 M elements, whatever --batch and --seq say; one pass, no backward).
A revision whose binding of the kernel takes other arguments than the working tree's is refused.
Run it on a quiet machine, with the threads the step would have (OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

from harness import kernels
from harness.machine.platform import detect
from harness.models import BertForPreTraining, load_config

HIDDEN, HEADS, INTERMEDIATE = 1024, 16, 4096
Pass = Callable[[ModuleType], tuple]
"""One pass of a kernel on fixed inputs, given a build of the kernels: its outputs. A backward
pass takes what its forward saves from the working tree's forward, made once."""
Passes = dict[str, Pass]
"""A kernel's passes by name: forward and backward, or one."""


def softmax_passes(ours: ModuleType, dtype: torch.dtype, batch: int, seq: int) -> Passes:
    scores = (torch.randn(batch * HEADS * seq, seq) * 3).to(dtype)
    mask = torch.ones(batch, seq, dtype=torch.bool)
    mask[0, seq * 3 // 4 :] = False
    grad = torch.randn_like(scores)
    scale, p, seed = 0.125, 0.1, 7

    def forward(ops: ModuleType) -> tuple:
        return tuple(ops.softmax_dropout_forward(scores, mask, HEADS * seq, scale, p, seed))

    out, probs = forward(ours)
    return {
        "forward": forward,
        "backward": lambda ops: (ops.softmax_dropout_backward(grad, probs, out, scale, p),),
    }


def gelu_passes(ours: ModuleType, dtype: torch.dtype, batch: int, seq: int) -> Passes:
    y = torch.randn(batch * seq, INTERMEDIATE).to(dtype)
    grad, bias = torch.randn_like(y), torch.randn(INTERMEDIATE)
    return {
        "forward": lambda ops: (ops.bias_gelu_forward(y, bias),),
        "backward": lambda ops: tuple(ops.bias_gelu_backward(grad, y, bias)),
    }


def norm_passes(ours: ModuleType, dtype: torch.dtype, batch: int, seq: int) -> Passes:
    y, residual = torch.randn(batch * seq, HIDDEN).to(dtype), torch.randn(batch * seq, HIDDEN)
    bias, gamma, beta = torch.randn(HIDDEN), torch.rand(HIDDEN) + 0.5, torch.randn(HIDDEN)
    grad, none = torch.randn(batch * seq, HIDDEN), torch.empty(0, dtype=dtype)

    def forward(ops: ModuleType) -> tuple:
        return tuple(ops.dropout_add_norm_forward(y, bias, residual, gamma, beta, 0.1, 1e-12, 5, False))

    _, _, h, mean, rstd = forward(ours)
    return {
        "forward": forward,
        "backward": lambda ops: tuple(
            ops.dropout_add_norm_backward(grad, none, h, mean, rstd, gamma, 0.1, 5, dtype)
        ),
    }


def qkv_passes(ours: ModuleType, dtype: torch.dtype, batch: int, seq: int) -> Passes:
    y, bias = torch.randn(batch * seq, 3 * HIDDEN).to(dtype), torch.randn(3 * HIDDEN)
    dq, dk, dv = (torch.randn(batch, HEADS, seq, HIDDEN // HEADS).to(dtype) for _ in range(3))
    return {
        "forward": lambda ops: (ops.qkv_heads_forward(y, bias, batch, HEADS),),
        "backward": lambda ops: tuple(ops.qkv_heads_backward(dq, dk, dv)),
    }


def norms_passes(ours: ModuleType, dtype: torch.dtype, batch: int, seq: int) -> Passes:
    model = BertForPreTraining(load_config("bert-large"))
    grads = [torch.randn(p.numel()).to(dtype) for p in model.parameters()]
    del model
    return {"gradient norms": lambda ops: (ops.sum_squares(grads),)}


KERNELS: dict[str, Callable[[ModuleType, torch.dtype, int, int], Passes]] = {
    "softmax": softmax_passes,
    "gelu": gelu_passes,
    "norm": norm_passes,
    "qkv": qkv_passes,
    "norms": norms_passes,
}


def build_revision(revision: str, where: Path) -> ModuleType:
    """The kernels as `revision` has them, built in `where` with the working tree's flags."""
    root = Path(
        subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=kernels.CSRC, capture_output=True, text=True
        ).stdout.strip()
        or "."
    )
    csrc = kernels.CSRC.resolve().relative_to(root.resolve())
    archive = subprocess.run(["git", "archive", revision, str(csrc)], cwd=root, capture_output=True)
    if archive.returncode != 0:
        sys.exit(f"kernel_ab: --against {revision}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(where, filter="data")
    from torch.utils import cpp_extension

    sources = sorted((where / csrc).glob("*.cpp"))
    print(f"building {revision}'s kernels ({len(sources)} files)", file=sys.stderr, flush=True)
    with contextlib.redirect_stdout(io.StringIO()):
        return cpp_extension.load(
            name="harness_kernels_ab",
            sources=[str(s) for s in sources],
            extra_cflags=kernels.flags(),
            extra_ldflags=["-fopenmp"],
            build_directory=str(where),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kernel", choices=sorted(KERNELS))
    parser.add_argument("--against", default="HEAD", help="the git revision to compare with (HEAD)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--calls", type=int, default=100, help="timed calls of each side and pass")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls of each first")
    parser.add_argument("--allow-different", action="store_true", help="do not require the same bits")
    args = parser.parse_args()

    ours = kernels.load(detect().key())
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    passes = KERNELS[args.kernel](ours, dtype, args.batch, args.seq)
    with tempfile.TemporaryDirectory(prefix="kernel-ab-") as tmp:
        theirs = build_revision(args.against, Path(tmp))
        sides = {args.against: theirs, "working tree": ours}
        for name, run in passes.items():
            try:
                expected = run(theirs)
            except TypeError as exc:
                sys.exit(f"kernel_ab: {args.against}'s {args.kernel} {name} takes other arguments: {exc}")
            same = all(torch.equal(a, b) for a, b in zip(expected, run(ours), strict=True))
            if not same and not args.allow_different:
                sys.exit(f"kernel_ab: the {args.kernel} {name} pass gives other bits than {args.against}'s")
            times: dict[str, list[float]] = {side: [] for side in sides}
            for n in range(args.warmup + args.calls):
                # each side first on alternate calls, so neither always runs on the other's caches
                order = list(sides.items()) if n % 2 else list(sides.items())[::-1]
                for side, ops in order:
                    start = time.perf_counter()
                    run(ops)
                    if n >= args.warmup:
                        times[side].append((time.perf_counter() - start) * 1e3)
            for side, ms in times.items():
                p10, *_, p90 = statistics.quantiles(ms, n=10)
                print(
                    f"{args.kernel} {name} {args.precision} {args.batch}x{args.seq} {side:>14}: "
                    f"median {statistics.median(ms):8.3f} ms  p10..p90 {p10:.3f}..{p90:.3f}"
                    + ("" if same else "  (other bits)")
                )


if __name__ == "__main__":
    main()
