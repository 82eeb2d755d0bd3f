"""`harness bench`: benchmarks that print figures."""

from __future__ import annotations

import argparse
import json

from harness.errors import HarnessError


def main(args: argparse.Namespace) -> int:
    from harness.bench.peer import PeerSpec, format_rows, main_worker, run_peer
    from harness.datasets.synth import cached_default
    from harness.files import write_atomic

    if args.worker:
        return main_worker(args.worker)
    if min(args.batch_size, args.steps, args.rounds) < 1 or min(args.warmup, args.top) < 0:
        raise HarnessError("--batch-size, --steps and --rounds must be >= 1, --warmup and --top >= 0")
    dataset = args.dataset or cached_default(1024)
    spec = PeerSpec(
        args.model,
        str(dataset),
        args.phase,
        args.batch_size,
        args.steps,
        args.warmup,
        args.top,
        args.rounds,
        args.system_malloc,
    )
    rows = run_peer(
        spec,
        [p for p in args.precisions.split(",") if p],
        not args.no_train,
        args.allow_emulation,
        args.cores,
    )
    print(format_rows(rows))
    if args.json:
        write_atomic(args.json, json.dumps(rows, indent=2) + "\n")
    return 0
