"""`harness compare`: every (phase, precision) in its own process, then the tables and report."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.flags import add_fields, from_args
from harness.datasets.synth import cached_default
from harness.files import folder_lock
from harness.launch.launchers import LaunchOptions
from harness.launch.ranks import RankLayout
from harness.plan.executor import Comparison, check_output
from harness.plan.peaks import measure_unmeasured
from harness.plan.plan import CompareConfig, make_plan
from harness.reports.render import render_run_set
from harness.results.convergence import Criteria
from harness.train.backends import check_available
from harness.train.config import TrainConfig

TRAIN_FIELDS = (
    "compile",
    "fp32_gemm",
    "contention_threshold",
    "submission_org",
    "submission_platform",
    "submission_division",
)
"""TrainConfig settings a comparison passes to every run; the plan and preset set the others."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="train every (phase, precision) in its own process and compare",
        description="Run every (phase, precision) one at a time, each in its own process, then "
        "write runs.csv, steps.csv and report.html.",
    )
    add_fields(p, CompareConfig)
    add_fields(p.add_argument_group("how convergence is judged"), Criteria)
    add_fields(p.add_argument_group("every run"), TrainConfig, only=TRAIN_FIELDS)
    add_fields(p.add_argument_group("how every run is started"), LaunchOptions, skip=("layout",))
    add_fields(p.add_argument_group("several ranks (one node)"), RankLayout, only=("nproc_per_node",))


def run(args: argparse.Namespace) -> int:
    cfg: CompareConfig = from_args(CompareConfig, args)
    criteria: Criteria = from_args(Criteria, args)
    criteria.validate()
    preset = cfg.workload()
    check_output(cfg.output, cfg.resume)  # before the lock creates the folder: a refusal leaves none
    plan = make_plan(cfg, preset)
    for backend in dict.fromkeys(s.backend for s in plan):
        check_available(backend, "--backends")
    options = from_args(LaunchOptions, args, layout=from_args(RankLayout, args))
    options.layout.validate()
    settings = {k: getattr(args, k) for k in TRAIN_FIELDS}
    if criteria.target_accuracy is not None:
        settings["target_accuracy"] = criteria.target_accuracy
    # Every run checks its settings again; checked here, a bad one is refused before any data
    # is made or run started (the data set is not among them).
    plan[0].train_config(cfg.dataset or Path(), cfg.output / "runs", preset, **settings).validate()
    dataset = cfg.dataset or cached_default(preset.synth_examples)
    measure_unmeasured(list(dict.fromkeys(s.precision for s in plan)), options, cfg.roofline_size)
    with folder_lock(cfg.output, "--output"):  # one compare at a time in a folder
        comparison = Comparison(
            cfg.output, dataset, preset, plan, cfg.resume, options, settings, cfg.keep_checkpoints
        )
        code = comparison.run()
        render_run_set(cfg.output, criteria)
    return code
