"""`harness bench peer`: our training step against Hugging Face's, per precision."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from harness.bench.peer import PeerSpec, run_peer
from harness.bench.peer_table import format_rows
from harness.cli.flags import add_fields, from_args
from harness.datasets.synth import cached_default
from harness.files import write_atomic


def add_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = b.add_subparsers(dest="bench_command", required=True)
    peer = bench_sub.add_parser(
        "peer",
        help="our training step against Hugging Face's, side by side",
        description="Time our BertForPreTraining + LAMB step, Hugging Face's BertForPreTraining + "
        "fused AdamW, and a real `harness train` run, per precision, each in a process with the "
        "mode's environment; print the ratio, MFU, peak memory, the harness's overhead, where one "
        "step of each went and the top operators.",
    )
    peer.add_argument("--precisions", default="fp32,bf16", help="comma-separated modes (default fp32,bf16)")
    add_fields(peer, PeerSpec)
    peer.add_argument("--no-train", action="store_true", help="skip the `harness train` overhead run")
    peer.add_argument("--json", type=Path, help="also write the measurements here")
    peer.add_argument("--cores", help="CPUs to bind every worker to")
    peer.add_argument("--allow-emulation", action="store_true", help="run modes the CPU lacks (marked)")


def run(args: argparse.Namespace) -> int:
    spec: PeerSpec = from_args(PeerSpec, args)
    spec.validate()
    spec = dataclasses.replace(spec, dataset=spec.dataset or str(cached_default(1024)))
    precisions = [p for p in args.precisions.split(",") if p]
    rows = run_peer(spec, precisions, not args.no_train, args.allow_emulation, args.cores)
    print(format_rows(rows))
    if args.json:
        write_atomic(args.json, json.dumps([dataclasses.asdict(r) for r in rows], indent=2) + "\n")
    return 0
