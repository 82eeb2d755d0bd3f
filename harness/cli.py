"""`python -m harness`: the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.precision import BUILTIN
from harness.train_config import TrainConfig


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="run one phase of BERT pre-training",
                       description="Run one phase of BERT pre-training and measure it.")
    p.add_argument("--phase", type=int, required=True, choices=(1, 2))
    p.add_argument("--precision", required=True,
                   help=f"one of: {', '.join(m.name for m in BUILTIN)}, or a mode of $HARNESS_PRECISION_FILE")
    p.add_argument("--model", help="bert-large (phase 1 default), bert-base, bert-mini, bert-tiny, or a "
                   "bert_config.json path; phase 2 takes the checkpoint's architecture")
    p.add_argument("--dataset", type=Path, required=True, help="DATASET_DIR (seq_128/, seq_512/, eval/)")
    p.add_argument("--output", type=Path, required=True, help="run directory to write")
    p.add_argument("--checkpoint", type=Path, help="phase 2: a phase-1 run's model_save directory")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, help="sequences per step (default 8 in phase 1, 2 in phase 2)")
    p.add_argument("--learning-rate", type=float, help="LAMB peak learning rate")
    p.add_argument("--warmup-steps", type=int, help="learning-rate warm-up steps (default 10%% of --steps)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every K steps (0: at the end)")
    p.add_argument("--eval-examples", type=int, default=256)
    p.add_argument("--phase-fraction", type=float, default=0.9,
                   help="share of the shard list for phase 1; phase 2 reads the rest")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--resume", action="store_true", help="continue the run in --output")
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every K steps too")
    p.add_argument("--data-workers", type=int, default=1)
    p.add_argument("--timing-warmup", type=int, default=5,
                   help="leading steps left out of the throughput statistics")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--cores", help="CPUs to bind the run to, e.g. 0-3 (default: every physical core "
                   "of the first socket); one OpenMP thread per CPU")
    p.add_argument("--allow-emulation", action="store_true",
                   help="run a mode whose CPU features are missing; its results are marked emulated")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


def _data_parser(sub: argparse._SubParsersAction) -> None:
    from harness.datasets.synth import SynthSpec

    p = sub.add_parser("data", help="make or inspect pre-training data")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    s = data_sub.add_parser("synth", help="write synthetic MLCommons-format TFRecords")
    s.add_argument("--output", type=Path, required=True)
    s.add_argument("--examples", type=int, default=SynthSpec.examples,
                   help="training examples at seq 128 (seq 512 gets a quarter)")
    s.add_argument("--eval-examples", type=int, default=SynthSpec.eval_examples)
    s.add_argument("--shards", type=int, default=SynthSpec.shards)
    s.add_argument("--max-predictions", type=int, default=SynthSpec.max_predictions)
    s.add_argument("--seed", type=int, default=SynthSpec.seed)
    s.add_argument("--reuse", action="store_true",
                   help="keep a data set already at --output if it was written with the same settings")


def _gate_parser(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("gate", help="fail on a real throughput or convergence regression against a baseline",
                       description="Compare a run set with a baseline. Exit 0: every check passed; 1: a "
                       "check failed; 2: bad input or usage, or the machines differ.")
    g.add_argument("--current", type=Path, required=True, help="compare --output folder or its runs.csv")
    g.add_argument("--baseline", help="compare --output folder, its runs.csv, or a saved baseline's name")
    g.add_argument("--baselines-dir", type=Path, default=Path("baselines"),
                   help="where --save-baseline keeps baselines and --baseline NAME finds them")
    g.add_argument("--save-baseline", metavar="NAME",
                   help="keep --current as baseline NAME (after the gate passes, when --baseline is given)")
    g.add_argument("--max-regression", action="append", default=[], metavar="[MODE=]SHARE",
                   help="largest tolerated throughput drop, e.g. 5%% (default) or bf16=8%%; repeatable")
    g.add_argument("--alpha", type=float, default=0.01,
                   help="a drop counts only if a one-sided Mann-Whitney test on the per-step samples "
                   "gives p below this")
    g.add_argument("--min-speedup", action="append", default=[], metavar="MODE/MODE=FACTOR",
                   help="speed-up floor inside the current run set, e.g. bf16/fp32=1.5; repeatable")
    g.add_argument("--loss-tolerance", type=float, default=0.02,
                   help="final loss may exceed the baseline's and fp32's by this share")
    g.add_argument("--accuracy-tolerance", type=float, default=0.02,
                   help="eval MLM accuracy may fall below the baseline's by this much")
    g.add_argument("--allow-machine-mismatch", action="store_true",
                   help="compare run sets whose CPU, cores or library builds differ")
    g.add_argument("--markdown", type=Path, help="Markdown summary to write (default: gate.md beside "
                   "--current's runs.csv)")
    g.add_argument("--json", type=Path, help="JSON result to write (default: gate.json beside it)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness",
                                     description="BERT-Large pre-training benchmark harness for Xeon CPUs.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("detect", help="what this CPU and OS offer (CPUID, AMX permission, cores)")
    d.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    _train_parser(sub)
    _data_parser(sub)
    c = sub.add_parser("compare", help="train every (phase, precision) in its own process and compare",
                       description="Run every (phase, precision) one at a time, each in its own "
                       "process, then write runs.csv and steps.csv.")
    c.add_argument("--precisions", default="fp32,avx-fp32,bf16", help="comma-separated modes")
    c.add_argument("--phases", default="1,2", help="1, 2 or 1,2 (phase 2 starts from phase 1's model_save)")
    c.add_argument("--preset", default="default", help="default (bert-large), smoke, convergence")
    c.add_argument("--model", help="override the preset's model")
    c.add_argument("--dataset", type=Path, help="DATASET_DIR; default: synthetic data, made once and cached")
    c.add_argument("--steps", type=int, help="override the preset's steps (each phase)")
    c.add_argument("--warmup-steps", type=int, help="learning-rate warm-up steps per run")
    c.add_argument("--repeats", type=int, default=1, help="run the whole plan R times")
    c.add_argument("--output", type=Path, default=Path("runs/compare"))
    c.add_argument("--resume", action="store_true", help="finish an interrupted comparison in --output")
    c.add_argument("--timeout", type=float, help="seconds after which a run is stopped as `timeout` "
                   "(default: the preset's)")
    c.add_argument("--cores", help="CPUs every run is bound to")
    c.add_argument("--allow-emulation", action="store_true",
                   help="run modes whose CPU features are missing (marked emulated)")
    c.add_argument("--loss-tolerance", type=float, default=0.02,
                   help="a precision converges like fp32 when its final loss is within this share of fp32's")
    rep = sub.add_parser("report", help="re-render a comparison's report, compare run sets side by side, "
                         "or index a folder of run sets",
                         description="One compare output: re-render its runs.csv, steps.csv and "
                         "report.html. Several (folders or runs.csv): one page with them side by side. "
                         "A folder holding run sets: index.html with throughput over time.")
    rep.add_argument("directories", type=Path, nargs="+", metavar="DIR",
                     help="compare --output folders, their runs.csv, or one folder of run sets")
    rep.add_argument("--output", type=Path, help="page to write for several run sets (default "
                     "side-by-side.html) or a folder of them (default FOLDER/index.html)")
    rep.add_argument("--loss-tolerance", type=float, default=0.02)
    _gate_parser(sub)
    r = sub.add_parser("roofline", help="measure the large-matmul peak of each precision mode")
    r.add_argument("--precisions", default=",".join(m.name for m in BUILTIN),
                   help="comma-separated modes (default: all built-in)")
    r.add_argument("--size", type=int, default=4096, help="matrix size N of the NxNxN matmul")
    r.add_argument("--repeats", type=int, default=10)
    r.add_argument("--cores", help="CPUs to bind to (default: every physical core of the first socket)")
    r.add_argument("--allow-emulation", action="store_true",
                   help="also measure modes whose CPU features are missing (marked emulated)")
    r.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    """The parent checks the mode against the machine and starts the worker with the mode's
    environment; the worker (--worker) trains."""
    from harness.launch import default_cores, parse_cores, run_worker, worker_environment
    from harness.platform import detect
    from harness.precision import get_precision

    options = {k: v for k, v in vars(args).items()
               if k not in ("command", "cores", "allow_emulation", "worker")}
    cfg = TrainConfig(**options)
    cfg.validate()
    mode = get_precision(cfg.precision)
    if args.worker:
        from harness.trainer import train

        return train(cfg, mode)
    platform = detect()
    missing = [f for f in mode.requires if not platform.has(f)]
    if missing and not args.allow_emulation:
        raise HarnessError(f"--precision {mode.name}: needs {', '.join(missing)}, which this machine "
                           f"({platform.cpu_model}) lacks; --allow-emulation runs it anyway, marked "
                           "emulated")
    cores = parse_cores(args.cores) if args.cores else default_cores()
    context = {"emulated": bool(missing), "missing_features": missing,
               "amx_usable": platform.amx_usable, "cpu_model": platform.cpu_model}
    return run_worker([*argv, "--worker"], worker_environment(mode, cores, context), cores)


def _compare(args: argparse.Namespace) -> int:
    from harness.compare import Comparison, make_plan
    from harness.presets import get_preset

    preset = get_preset(args.preset)
    if args.timeout is not None:
        if args.timeout <= 0:
            raise HarnessError(f"--timeout must be > 0 seconds, got {args.timeout}")
        preset = dataclasses.replace(preset, timeout_s=args.timeout)
    try:
        phases = [int(p) for p in args.phases.split(",")]
    except ValueError:
        raise HarnessError(f"--phases {args.phases}: expected 1, 2 or 1,2") from None
    plan = make_plan([p for p in args.precisions.split(",") if p], phases, args.repeats, preset,
                     args.steps, args.warmup_steps, args.model)
    dataset = args.dataset or _cached_synthetic_data(preset.synth_examples)
    extra = (["--cores", args.cores] if args.cores else []) + \
        (["--allow-emulation"] if args.allow_emulation else [])
    comparison = Comparison(args.output, dataset, preset, plan, args.resume, extra)
    code = comparison.run()
    _report(args.output, args.loss_tolerance)
    return code


def _report(directory: Path, tolerance: float) -> int:
    from harness.reports.html import write_report
    from harness.reports.tables import runs_table, summary_lines, write_tables

    if not (directory / "plan.json").is_file():
        raise HarnessError(f"{directory}: no plan.json; not a `harness compare` output directory")
    if not 0 < tolerance < 1:
        raise HarnessError(f"--loss-tolerance must be in (0, 1), got {tolerance}")
    runs_csv, steps_csv = write_tables(directory)
    report = write_report(directory, tolerance)
    print("\n".join(summary_lines(runs_table(directory))))
    print(f"\nwrote {runs_csv}, {steps_csv} and {report}")
    return 0


def _reports(args: argparse.Namespace) -> int:
    from harness.files import write_atomic
    from harness.reports.history import find_runsets, render_history
    from harness.reports.runsets import is_runset, load_runset, name_sets
    from harness.reports.side_by_side import render_side_by_side

    dirs: list[Path] = args.directories
    if len(dirs) == 1 and (dirs[0] / "plan.json").is_file():
        return _report(dirs[0], args.loss_tolerance)
    if len(dirs) == 1 and dirs[0].is_dir() and not is_runset(dirs[0]):
        found = find_runsets(dirs[0])
        if not found:
            raise HarnessError(f"{dirs[0]}: holds no run sets (folders with plan.json or runs.csv)")
        for folder in found:  # every set gets its own page for the index to link to
            if (folder / "plan.json").is_file():
                _report(folder, args.loss_tolerance)
        sets = name_sets(sorted((load_runset(f) for f in found), key=lambda s: s.started_at))
        page, path = render_history(dirs[0], sets), args.output or dirs[0] / "index.html"
    else:
        if len(dirs) == 1:
            raise HarnessError(f"{dirs[0]}: a saved run set has nothing to re-render; give two or more "
                               "to compare them side by side")
        page = render_side_by_side(name_sets([load_runset(d) for d in dirs]))
        path = args.output or Path("side-by-side.html")
    write_atomic(path, page)
    print(f"wrote {path}")
    return 0


def _gate(args: argparse.Namespace) -> int:
    from harness.gate import EXIT_FAILED, run_checks, terminal_table, write_outputs
    from harness.gate.baselines import resolve, save
    from harness.gate.checks import GateConfig, SpeedupFloor, parse_fraction
    from harness.reports.runsets import load_runset, name_sets

    cfg = GateConfig(alpha=args.alpha, loss_tolerance=args.loss_tolerance,
                     accuracy_tolerance=args.accuracy_tolerance,
                     min_speedup=[SpeedupFloor.parse(s) for s in args.min_speedup])
    for spec in args.max_regression:
        mode, _, share = spec.rpartition("=")
        if mode:
            cfg.max_regression_for[mode] = parse_fraction("--max-regression", share)
        else:
            cfg.max_regression = parse_fraction("--max-regression", share)
    if not 0 < cfg.alpha < 1 or not 0 <= cfg.loss_tolerance < 1 or not 0 <= cfg.accuracy_tolerance < 1:
        raise HarnessError("--alpha must be in (0, 1), --loss-tolerance and --accuracy-tolerance in [0, 1)")
    if args.baseline is None:
        if args.save_baseline is None:
            raise HarnessError("gate: give --baseline to compare with, --save-baseline NAME to keep "
                               "--current as a baseline, or both")
        load_runset(args.current)  # a run set that cannot be read is no baseline
        print(f"saved baseline {save(args.save_baseline, args.current, args.baselines_dir)}")
        return 0
    baseline, current = name_sets([load_runset(resolve(args.baseline, args.baselines_dir)),
                                   load_runset(args.current)])
    checks, differences = run_checks(baseline, current, cfg, args.allow_machine_mismatch)
    folder = args.current if args.current.is_dir() else args.current.parent
    md_path, json_path = args.markdown or folder / "gate.md", args.json or folder / "gate.json"
    write_outputs(checks, baseline, current, differences, md_path, json_path)
    print(terminal_table(checks))
    failed = [c for c in checks if not c.passed]
    print(f"\ngate {'FAILED' if failed else 'passed'}: {len(checks) - len(failed)} of {len(checks)} checks "
          f"passed; wrote {md_path} and {json_path}")
    if failed:
        return EXIT_FAILED
    if args.save_baseline:
        print(f"saved baseline {save(args.save_baseline, args.current, args.baselines_dir)}")
    return 0


def _cached_synthetic_data(examples: int) -> Path:
    """The embedded default: synthetic MLCommons-format data, written once per size and reused."""
    from harness.datasets.synth import GENERATOR_VERSION, SynthSpec, synthesize
    from harness.roofline import store_path

    path = store_path().parent / "data" / f"synth-v{GENERATOR_VERSION}-{examples}"
    synthesize(path, SynthSpec(examples=examples), reuse=True)
    return path


def _roofline(args: argparse.Namespace) -> int:
    from harness import roofline
    from harness.precision import get_precision

    if args.size < 64 or args.repeats < 1:
        raise HarnessError("--size must be >= 64 and --repeats >= 1")
    names = [n for n in args.precisions.split(",") if n]
    if args.worker:
        from harness.launch import worker_context

        mode = get_precision(names[0])
        worker_context(mode)
        print(json.dumps(roofline.measure(mode, args.size, args.repeats)))
        return 0
    return roofline.run_all(names, args.size, args.repeats, args.allow_emulation, args.cores)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args, argv if argv is not None else sys.argv[1:])
        if args.command == "detect":
            from harness.platform import as_dict, detect, format_table

            print(json.dumps(as_dict(detect()), indent=2) if args.json else format_table(detect()))
            return 0
        if args.command == "compare":
            return _compare(args)
        if args.command == "report":
            return _reports(args)
        if args.command == "roofline":
            return _roofline(args)
        if args.command == "gate":
            return _gate(args)
        if args.command == "data":
            from harness.datasets.synth import SynthSpec, synthesize

            info = synthesize(args.output, SynthSpec(
                examples=args.examples, eval_examples=args.eval_examples, shards=args.shards,
                seed=args.seed, max_predictions=args.max_predictions), reuse=args.reuse)
            print(json.dumps(info, indent=2))
            return 0
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return exc.exit_code
    raise AssertionError(f"unhandled command {args.command}")
