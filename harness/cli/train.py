"""`harness train`: one phase of BERT pre-training, in a worker with the mode's environment."""

from __future__ import annotations

import argparse
import sys

from harness.cli.flags import add_fields, from_args
from harness.launch.launchers import LaunchOptions
from harness.launch.ranks import RankLayout
from harness.precision.modes import get_precision
from harness.train.config import TrainConfig
from harness.train.start import start_training


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="run one phase of BERT pre-training",
        description="Run one phase of BERT pre-training and measure it.",
    )
    add_fields(p, TrainConfig)
    add_fields(p.add_argument_group("how the run is started"), LaunchOptions, skip=("layout",))
    add_fields(p.add_argument_group("several ranks (torchrun, DistributedDataParallel)"), RankLayout)


def run(args: argparse.Namespace) -> int:
    """The parent checks the mode against the machine and starts the worker(s); they train."""
    cfg = from_args(TrainConfig, args)
    cfg.validate()
    options = from_args(LaunchOptions, args, layout=from_args(RankLayout, args))
    done = start_training(cfg, get_precision(cfg.precision), options)
    if done.killed_by:
        print(f"harness: the worker was killed by {done.killed_by} (exit {done.code})", file=sys.stderr)
    return done.code
