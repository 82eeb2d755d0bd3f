"""One lever of the fused backend on and off, alternating step by step in one BERT-Large training
process: the step-level effect of a change, free of the drift between processes (larger here than
most levers).

    python tests/benchmarks/lever_ab.py weight-grads --precision bf16 --phase 1 --batch-size 8 --pairs 6

Levers:
  weight-grads  the dense layers' weight gradients read their output gradient as a contiguous
                transpose (on) or as a transposed view (off) (harness.kernels.layers.dense)
  decoder-copy  the tied decoder reads the word embeddings' bf16 copy (on) or casts the fp32 matrix
                (off) (BertForPreTraining.decoder_weight16); the optimizer writes the copy either
                way, so its cost is in both arms
  row-split     the fused dense layers' GEMMs split their rows among the threads where the
                process measured that faster (on), or all run as torch.mm (off)
                (harness.kernels.row_split)

It builds bench peer's fused step, runs the warm-up, then pairs of steps, on and off, the order
alternating pair by pair, and prints the medians and every step. It runs under the harness's malloc
settings, as a worker does.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from harness import kernels
from harness.bench.peer_steps import first_batch, harness_step
from harness.datasets.synth import cached_default
from harness.kernels import row_split
from harness.launch.environment import restart_with_retained_malloc
from harness.machine.platform import detect
from harness.models import load_config
from harness.precision.modes import admit, get_precision
from harness.train import prepare_backend


def weight_grads(model: torch.nn.Module, ops) -> Callable[[bool], None]:
    layers = [m for m in model.modules() if hasattr(m, "transpose_ops")]

    def switch(on: bool) -> None:
        for layer in layers:
            layer.transpose_ops = ops if on else None

    return switch


def decoder_copy(model: torch.nn.Module, _ops) -> Callable[[bool], None]:
    copy = model.decoder_weight16
    if copy is None:
        raise SystemExit("decoder-copy: this mode has no bf16 copy of the word embeddings (bf16 only)")

    def switch(on: bool) -> None:
        model.decoder_weight16 = copy if on else None

    return switch


def row_split_gemms(_model: torch.nn.Module, _ops) -> Callable[[bool], None]:
    chosen = row_split.mm

    def switch(on: bool) -> None:
        # the layers look the function up at each call
        row_split.mm = chosen if on else lambda a, b, _ops: torch.mm(a, b)

    return switch


LEVERS = {"weight-grads": weight_grads, "decoder-copy": decoder_copy, "row-split": row_split_gemms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lever", choices=sorted(LEVERS))
    # no ISA cap is applied here (a worker sets it before torch loads): avx-fp32 and avx-bf16 would
    # run as fp32 and bf16
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--phase", type=int, choices=[1, 2], default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=6, help="steps in each arm (6)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (3)")
    args = parser.parse_args()
    restart_with_retained_malloc()
    models: list[torch.nn.Module] = []
    fuse = prepare_backend.fuse

    def keeping(model, ops, **kwargs):
        models.append(model)
        return fuse(model, ops, **kwargs)

    prepare_backend.fuse = keeping
    raw = first_batch(
        str(cached_default(1024)), args.phase, args.batch_size, load_config("bert-large").vocab_size
    )
    here = detect()
    machine_key, mode = here.key(), get_precision(args.precision)
    step, _ = harness_step("bert-large", raw, mode, "fused", machine_key, admit(mode, here).gemm_isa)
    switch = LEVERS[args.lever](models[0], kernels.load(machine_key))
    for _ in range(args.warmup):
        step()
    times: dict[bool, list[float]] = {True: [], False: []}
    for n in range(args.pairs):
        for on in (True, False) if n % 2 == 0 else (False, True):
            switch(on)
            start = time.perf_counter()
            step()
            times[on].append(time.perf_counter() - start)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(
        f"{args.lever}, bert-large {args.precision}, phase {args.phase}, {args.batch_size} x "
        f"{raw['input_ids'].shape[1]}, {args.pairs} pairs: "
        f"off {off:.3f} s, on {on:.3f} s ({on / off - 1:+.1%})"
    )
    for arm, label in ((False, "off"), (True, "on")):
        print(f"  {label:>3}: " + " ".join(f"{t:.3f}" for t in times[arm]))


if __name__ == "__main__":
    main()
