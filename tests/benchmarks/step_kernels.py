"""Each fused kernel's time inside real BERT-Large training steps: bench peer's step on the fused
backend, with every call into the kernels' module timed. Prints, per kernel, its calls a step, the
median and p90 of a call and its total a step, against the step's own time.

    python tests/benchmarks/step_kernels.py --precision bf16 --phase 2 --batch-size 2 --steps 3

The profiler's self time of a kernel's autograd node is not its kernel's time (it counted 143 ms a
step for the GELU backward whose calls took 52 ms); this times the calls themselves. Inside a step a
kernel's inputs come from memory the GEMMs have since evicted, so its calls run slower than in
kernel_ab.py's loops. It runs under the harness's malloc settings (RETAINED_MALLOC: it starts
itself again with them where they are missing), as a worker does. Run it on a quiet machine, with
the threads the step would have (OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from types import ModuleType

from harness import kernels
from harness.bench.peer_steps import first_batch, harness_step
from harness.datasets.synth import cached_default
from harness.launch.environment import restart_with_retained_malloc
from harness.machine.platform import detect
from harness.models import load_config
from harness.precision.modes import admit, get_precision


class TimedKernels:
    """The kernels' module, each call timed into `calls` while `recording`."""

    def __init__(self, ops: ModuleType) -> None:
        self.ops = ops
        self.recording = False
        self.calls: dict[str, list[float]] = defaultdict(list)

    def __getattr__(self, name: str) -> Callable:
        kernel = getattr(self.ops, name)

        def timed(*args: object) -> object:
            start = time.perf_counter()
            out = kernel(*args)
            if self.recording:
                self.calls[name].append(time.perf_counter() - start)
            return out

        return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", default="bf16", help="a precision mode (bf16)")
    parser.add_argument("--phase", type=int, choices=[1, 2], default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (3)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (3)")
    args = parser.parse_args()
    restart_with_retained_malloc()

    here = detect()
    machine_key, mode = here.key(), get_precision(args.precision)
    timed = TimedKernels(kernels.load(machine_key))
    # prepare_backend loads the kernels through harness.kernels.load: it gets the timed module
    kernels.load = lambda _key: timed
    model = "bert-large"
    raw = first_batch(str(cached_default(1024)), args.phase, args.batch_size, load_config(model).vocab_size)
    step, _ = harness_step(model, raw, mode, "fused", machine_key, admit(mode, here).gemm_isa)
    steps = []
    for n in range(args.warmup + args.steps):
        timed.recording = n >= args.warmup
        start = time.perf_counter()
        step()
        if timed.recording:
            steps.append(time.perf_counter() - start)
        print(f"step {n + 1}/{args.warmup + args.steps}: {time.perf_counter() - start:.3f} s", flush=True)
    step_s = statistics.median(steps)
    seq = raw["input_ids"].shape[1]
    print(
        f"{model} {args.precision}, phase {args.phase}, {args.batch_size} x {seq}, median step {step_s:.3f} s"
    )
    print(f"{'kernel':28} {'calls/step':>10} {'median ms':>10} {'p90 ms':>8} {'ms/step':>8} {'of step':>8}")
    total = 0.0
    for name, times in sorted(timed.calls.items(), key=lambda kv: -sum(kv[1])):
        per_step = sum(times) / args.steps
        total += per_step
        p90 = statistics.quantiles(times, n=10)[-1] if len(times) > 1 else times[0]
        print(
            f"{name:28} {len(times) / args.steps:10.0f} {statistics.median(times) * 1e3:10.3f} "
            f"{p90 * 1e3:8.3f} {per_step * 1e3:8.1f} {per_step / step_s:8.1%}"
        )
    print(f"{'all kernels':28} {'':10} {'':10} {'':8} {total * 1e3:8.1f} {total / step_s:8.1%}")


if __name__ == "__main__":
    main()
