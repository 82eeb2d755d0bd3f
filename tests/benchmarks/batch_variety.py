"""A training step on one batch repeated against steps on the training data's successive batches,
alternating in one process: what the shapes that change from batch to batch cost a step (bench
peer's bare step repeats one batch; a `harness train` run does not).

    python tests/benchmarks/batch_variety.py --precision bf16 --backend fused --pairs 10

It builds bench peer's model and optimizer on the backend, runs 3 warm-up steps on the first
batch, then pairs of steps (the first batch again; the next unseen batch), the order alternating
pair by pair, and prints both medians and every step. It runs under the harness's malloc
settings, as a worker does.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

from harness.datasets.mlcommons import checked, resolve_phase_data, training_loader
from harness.datasets.synth import cached_default
from harness.launch.environment import restart_with_retained_malloc
from harness.machine.platform import detect
from harness.models import BertForPreTraining, Lamb, load_config, parameter_groups
from harness.precision.modes import admit, get_precision
from harness.train import prepare_backend
from harness.train.evaluate import to_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # no ISA cap is applied here (a worker sets it before torch loads): avx-fp32 and avx-bf16 would
    # run as fp32 and bf16
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--backend", default="fused", choices=["stock", "fused"])
    parser.add_argument("--phase", type=int, choices=[1, 2], default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=10, help="steps in each arm (10)")
    args = parser.parse_args()
    restart_with_retained_malloc()
    mode = get_precision(args.precision)
    cfg = load_config("bert-large")
    data = resolve_phase_data(Path(str(cached_default(1024))), args.phase, 0.9, 8)
    loader = training_loader(data, args.batch_size, seed=0, workers=0, vocab_size=cfg.vocab_size)
    batches = [to_batch(checked(raw)) for raw in itertools.islice(iter(loader), args.pairs + 1)]
    model = BertForPreTraining(cfg).train()
    optimizer = Lamb(parameter_groups(model, 0.01), lr=1e-4)
    here = detect()
    model, optimizer, _ = prepare_backend.prepare(
        args.backend, model, optimizer, mode, here.key(), admit(mode, here).gemm_isa
    )

    def step(batch) -> float:
        start = time.perf_counter()
        with mode.autocast_context():
            out = model(batch)
        out.loss.backward()
        optimizer.step_if_finite()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    for _ in range(3):
        step(batches[0])
    times: dict[str, list[float]] = {"one batch": [], "successive batches": []}
    for n in range(args.pairs):
        for arm in ("one batch", "successive batches")[:: 1 if n % 2 == 0 else -1]:
            times[arm].append(step(batches[0] if arm == "one batch" else batches[n + 1]))
    one, successive = (statistics.median(times[arm]) for arm in times)
    print(
        f"bert-large {args.precision} on {args.backend}, phase {args.phase}, {args.pairs} pairs: one batch "
        f"{one:.3f} s, successive batches {successive:.3f} s ({successive / one - 1:+.1%})"
    )
    for arm, steps in times.items():
        print(f"  {arm:>18}: " + " ".join(f"{t:.3f}" for t in steps))


if __name__ == "__main__":
    main()
