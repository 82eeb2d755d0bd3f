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

CONTENTION_HELP = (
    "a run whose timed steps had less than this share of their cores (the rest taken by other "
    "processes or stolen by the hypervisor) is marked contended (default 0.9)"
)
SYSTEM_MALLOC_HELP = (
    "leave glibc malloc at its defaults, which return freed blocks over 128 KiB to the "
    "OS so that every step faults them in again (default: keep freed memory)"
)


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="run one phase of BERT pre-training",
        description="Run one phase of BERT pre-training and measure it.",
    )
    p.add_argument("--phase", type=int, required=True, choices=(1, 2))
    p.add_argument(
        "--precision",
        required=True,
        help=f"one of: {', '.join(m.name for m in BUILTIN)}, or a mode of $HARNESS_PRECISION_FILE",
    )
    p.add_argument(
        "--model",
        help="bert-large (phase 1 default), bert-base, bert-mini, bert-tiny, or a "
        "bert_config.json path; phase 2 takes the checkpoint's architecture",
    )
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
    p.add_argument(
        "--phase-fraction",
        type=float,
        default=0.9,
        help="share of the shard list for phase 1; phase 2 reads the rest",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--resume", action="store_true", help="continue the run in --output")
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every K steps too")
    p.add_argument("--data-workers", type=int, default=1)
    p.add_argument(
        "--timing-warmup", type=int, default=5, help="leading steps left out of the throughput statistics"
    )
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument(
        "--cores",
        help="CPUs to bind the run to, e.g. 0-3 (default: every physical core "
        "of the first socket); one OpenMP thread per CPU",
    )
    p.add_argument(
        "--allow-emulation",
        action="store_true",
        help="run a mode whose CPU features are missing; its results are marked emulated",
    )
    p.add_argument(
        "--shuffle-buffer",
        type=int,
        default=2048,
        help="examples each data shard holds for shuffling (0: record order)",
    )
    p.add_argument(
        "--contention-threshold",
        type=float,
        default=0.9,
        help=CONTENTION_HELP,
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model (inductor); compilation falls in the first steps",
    )
    p.add_argument("--system-malloc", action="store_true", help=SYSTEM_MALLOC_HELP)
    p.add_argument(
        "--backend",
        default="stock",
        choices=("stock", "ipex"),
        help="stock PyTorch, or ipex (intel-extension-for-pytorch, installed separately)",
    )
    p.add_argument(
        "--dist-backend",
        default="auto",
        choices=("auto", "gloo", "ccl"),
        help="process-group backend with several ranks (auto: ccl if oneCCL's bindings import, else gloo)",
    )
    p.add_argument(
        "--instances",
        type=int,
        default=1,
        help="K independent copies on disjoint core sets, started together; OUTPUT holds "
        "their aggregate (throughput summed) and instance-<k>/ each one",
    )
    _rank_flags(p)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


LAUNCH_FLAGS = (
    "nproc_per_node",
    "nnodes",
    "node_rank",
    "master_addr",
    "master_port",
    "rdzv_endpoint",
    "rdzv_id",
)


def _rank_flags(p: argparse.ArgumentParser, nodes: bool = True) -> None:
    """torchrun's layout flags: train takes them all, compare (one node) --nproc-per-node."""
    g = p.add_argument_group("several ranks (torchrun, DistributedDataParallel)")
    g.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        help="ranks on this node, each on an equal share of the cores; --batch-size is per rank",
    )
    if not nodes:
        return
    g.add_argument("--nnodes", type=int, default=1, help="nodes; run the same command on each")
    g.add_argument("--node-rank", type=int, help="this node's rank, with --master-addr")
    g.add_argument("--master-addr", help="address of node 0 (static rendezvous)")
    g.add_argument("--master-port", type=int, default=29500)
    g.add_argument("--rdzv-endpoint", help="HOST:PORT of a c10d rendezvous (instead of --master-addr)")
    g.add_argument("--rdzv-id", default="harness", help="job id shared by the nodes of one run")


def _rank_layout(args: argparse.Namespace):  # -> harness.launch.RankLayout
    from harness.launch import RankLayout

    layout = RankLayout(**{k: getattr(args, k) for k in LAUNCH_FLAGS if hasattr(args, k)})
    layout.validate()
    return layout


def _data_parser(sub: argparse._SubParsersAction) -> None:
    from harness.datasets.synth import SynthSpec

    p = sub.add_parser("data", help="make or inspect pre-training data")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    s = data_sub.add_parser("synth", help="write synthetic MLCommons-format TFRecords")
    s.add_argument("--output", type=Path, required=True)
    s.add_argument(
        "--examples",
        type=int,
        default=SynthSpec.examples,
        help="training examples at seq 128 (seq 512 gets a quarter)",
    )
    s.add_argument("--eval-examples", type=int, default=SynthSpec.eval_examples)
    s.add_argument("--shards", type=int, default=SynthSpec.shards)
    s.add_argument("--max-predictions", type=int, default=SynthSpec.max_predictions)
    s.add_argument("--seed", type=int, default=SynthSpec.seed)
    s.add_argument(
        "--reuse",
        action="store_true",
        help="keep a data set already at --output if it was written with the same settings",
    )


def _gate_parser(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "gate",
        help="fail on a real throughput or convergence regression against a baseline",
        description="Compare a run set with a baseline. Exit 0: every check passed; 1: a "
        "check failed; 2: bad input or usage, or the machines differ; 3: nothing failed, but a "
        "contended run's throughput was not judged.",
    )
    g.add_argument(
        "--current",
        type=Path,
        nargs="+",
        required=True,
        help="compare --output folder or its runs.csv; several are judged as one run set",
    )
    g.add_argument(
        "--baseline",
        nargs="+",
        help="compare --output folder, its runs.csv, or a saved baseline's name; several are judged as "
        "one run set (interleave them in time with the current ones)",
    )
    g.add_argument(
        "--baselines-dir",
        type=Path,
        default=Path("baselines"),
        help="where --save-baseline keeps baselines and --baseline NAME finds them",
    )
    g.add_argument(
        "--save-baseline",
        metavar="NAME",
        help="keep --current as baseline NAME (after the gate passes, when --baseline is given)",
    )
    g.add_argument(
        "--max-regression",
        action="append",
        default=[],
        metavar="[MODE=]SHARE",
        help="largest tolerated throughput drop, e.g. 5%% (default) or bf16=8%%; repeatable",
    )
    g.add_argument(
        "--alpha",
        type=float,
        default=0.01,
        help="a drop counts only if a one-sided Mann-Whitney test on the runs' medians gives p below "
        "this (with 3 or more runs a side)",
    )
    g.add_argument(
        "--min-speedup",
        action="append",
        default=[],
        metavar="MODE/MODE=FACTOR",
        help="speed-up floor inside the current run set, e.g. bf16/fp32=1.5; repeatable",
    )
    g.add_argument(
        "--loss-tolerance",
        type=float,
        default=0.02,
        help="final loss may exceed the baseline's and fp32's by this share",
    )
    g.add_argument(
        "--accuracy-tolerance",
        type=float,
        default=0.02,
        help="eval MLM accuracy may fall below the baseline's by this much",
    )
    g.add_argument(
        "--allow-machine-mismatch",
        action="store_true",
        help="compare run sets whose CPU, cores or library builds differ",
    )
    g.add_argument(
        "--allow-missing",
        action="store_true",
        help="let a configuration the baseline lacks pass (default: it fails, since its throughput "
        "cannot be judged)",
    )
    g.add_argument(
        "--markdown",
        type=Path,
        help="Markdown summary to write (default: gate.md beside --current's runs.csv)",
    )
    g.add_argument("--json", type=Path, help="JSON result to write (default: gate.json beside it)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness", description="BERT-Large pre-training benchmark harness for Xeon CPUs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("detect", help="what this CPU and OS offer (CPUID, AMX permission, cores)")
    d.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    _train_parser(sub)
    _data_parser(sub)
    c = sub.add_parser(
        "compare",
        help="train every (phase, precision) in its own process and compare",
        description="Run every (phase, precision) one at a time, each in its own "
        "process, then write runs.csv and steps.csv.",
    )
    c.add_argument("--precisions", default="fp32,avx-fp32,bf16", help="comma-separated modes")
    c.add_argument("--phases", default="1,2", help="1, 2 or 1,2 (phase 2 starts from phase 1's model_save)")
    c.add_argument("--backends", default="stock", help="stock, ipex or stock,ipex: compared like precisions")
    c.add_argument("--preset", default="default", help="default (bert-large), smoke, convergence")
    c.add_argument("--model", help="override the preset's model")
    c.add_argument("--dataset", type=Path, help="DATASET_DIR; default: synthetic data, made once and cached")
    c.add_argument("--steps", type=int, help="override the preset's steps (each phase)")
    c.add_argument("--warmup-steps", type=int, help="learning-rate warm-up steps per run")
    c.add_argument("--repeats", type=int, default=1, help="run the whole plan R times")
    c.add_argument("--output", type=Path, default=Path("runs/compare"))
    c.add_argument("--resume", action="store_true", help="finish an interrupted comparison in --output")
    c.add_argument(
        "--timeout",
        type=float,
        help="seconds after which a run is stopped as `timeout` (default: the preset's)",
    )
    c.add_argument("--cores", help="CPUs every run is bound to")
    c.add_argument("--instances", type=int, default=1, help="run each as K instances on disjoint cores")
    c.add_argument("--compile", action="store_true", help="torch.compile every run's model")
    c.add_argument("--contention-threshold", type=float, help=CONTENTION_HELP)
    c.add_argument("--system-malloc", action="store_true", help=SYSTEM_MALLOC_HELP)
    c.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep every run's model_save (default: delete those no run of the plan reads)",
    )
    c.add_argument(
        "--allow-emulation",
        action="store_true",
        help="run modes whose CPU features are missing (marked emulated)",
    )
    c.add_argument(
        "--loss-tolerance",
        type=float,
        default=0.02,
        help="a precision converges like fp32 when its final loss is within this share of fp32's",
    )
    _rank_flags(c, nodes=False)
    rep = sub.add_parser(
        "report",
        help="re-render a comparison's report, compare run sets side by side, or index a folder of run sets",
        description="One compare output: re-render its runs.csv, steps.csv and "
        "report.html. Several (folders or runs.csv): one page with them side by side. "
        "A folder holding run sets: index.html with throughput over time.",
    )
    rep.add_argument(
        "directories",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="compare --output folders, their runs.csv, or one folder of run sets",
    )
    rep.add_argument(
        "--output",
        type=Path,
        help="page to write for several run sets (default "
        "side-by-side.html) or a folder of them (default FOLDER/index.html)",
    )
    rep.add_argument("--loss-tolerance", type=float, default=0.02)
    _gate_parser(sub)
    b = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = b.add_subparsers(dest="bench_command", required=True)
    peer = bench_sub.add_parser(
        "peer",
        help="our training step against Hugging Face's, side by side",
        description="Time our BertForPreTraining + LAMB step, Hugging Face's "
        "BertForPreTraining + fused AdamW, and a real `harness train` run, per "
        "precision, each in a process with the mode's environment; print the "
        "ratio, MFU, peak memory, the harness's overhead and the top operators.",
    )
    peer.add_argument("--precisions", default="fp32,bf16")
    peer.add_argument("--model", default="bert-large")
    peer.add_argument("--phase", type=int, default=1, choices=(1, 2), help="1: seq 128; 2: seq 512")
    peer.add_argument("--batch-size", type=int, default=8)
    peer.add_argument("--steps", type=int, default=5, help="timed steps per implementation")
    peer.add_argument(
        "--warmup",
        type=int,
        default=4,
        help="untimed steps first (BERT-Large faults in fresh memory for three steps)",
    )
    peer.add_argument("--top", type=int, default=12, help="operators listed from one profiled step")
    peer.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the implementations in turn R times, fresh processes each round",
    )
    peer.add_argument("--dataset", type=Path, help="DATASET_DIR (default: the cached synthetic data)")
    peer.add_argument("--no-train", action="store_true", help="skip the `harness train` overhead run")
    peer.add_argument("--json", type=Path, help="also write the measurements here")
    peer.add_argument("--cores", help="CPUs to bind every worker to")
    peer.add_argument("--allow-emulation", action="store_true")
    peer.add_argument("--system-malloc", action="store_true", help=SYSTEM_MALLOC_HELP)
    peer.add_argument("--worker", help=argparse.SUPPRESS)
    r = sub.add_parser("roofline", help="measure the large-matmul peak of each precision mode")
    r.add_argument(
        "--precisions",
        default=",".join(m.name for m in BUILTIN),
        help="comma-separated modes (default: all built-in)",
    )
    r.add_argument("--size", type=int, default=4096, help="matrix size N of the NxNxN matmul")
    r.add_argument("--repeats", type=int, default=10)
    r.add_argument("--cores", help="CPUs to bind to (default: every physical core of the first socket)")
    r.add_argument(
        "--allow-emulation",
        action="store_true",
        help="also measure modes whose CPU features are missing (marked emulated)",
    )
    r.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    """The parent checks the mode against the machine and starts the worker with the mode's
    environment; the worker (--worker) trains."""
    from harness.launch import admitted_context, default_cores, parse_cores, run_worker, worker_environment
    from harness.platform import detect
    from harness.precision import get_precision

    options = {
        k: v
        for k, v in vars(args).items()
        if k
        not in ("command", "cores", "allow_emulation", "worker", "instances", "system_malloc", *LAUNCH_FLAGS)
    }
    cfg = TrainConfig(**options)
    cfg.validate()
    mode = get_precision(cfg.precision)
    if args.worker:
        from harness.trainer import train

        return train(cfg, mode)
    from harness.backends import check_available

    check_available(cfg.backend)
    context = admitted_context(mode, detect(), args.allow_emulation, "--precision")
    layout = _rank_layout(args)
    cores = parse_cores(args.cores) if args.cores else default_cores()
    if layout.nproc_per_node > len(cores):
        raise HarnessError(
            f"--nproc-per-node {layout.nproc_per_node}: more ranks than the {len(cores)} "
            f"cores this run may use ({','.join(map(str, cores))}); each rank needs one"
        )
    if args.instances != 1:
        from harness.instances import run_instances

        if layout.world_size > 1:
            raise HarnessError(
                "--instances runs independent copies; it does not combine with --nproc-per-node"
            )
        if not cfg.resume and cfg.output.exists() and any(cfg.output.iterdir()):
            raise HarnessError(
                f"--output {cfg.output}: holds a previous run; use an empty directory or --resume"
            )
        return run_instances(
            argv, cfg.output, cfg.seed, args.instances, mode, cores, context, args.system_malloc
        )
    return run_worker(
        [*argv, "--worker"], worker_environment(mode, cores, context, args.system_malloc), cores, layout
    )


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
    from harness.backends import check_available

    backends = tuple(b for b in args.backends.split(",") if b)
    for backend in backends:
        check_available(backend)
    plan = make_plan(
        [p for p in args.precisions.split(",") if p],
        phases,
        args.repeats,
        preset,
        args.steps,
        args.warmup_steps,
        args.model,
        backends,
    )
    from harness.datasets.synth import cached_default

    dataset = args.dataset or cached_default(preset.synth_examples)
    layout = _rank_layout(args)
    extra = (
        (["--cores", args.cores] if args.cores else [])
        + (["--allow-emulation"] if args.allow_emulation else [])
        + (["--instances", str(args.instances)] if args.instances != 1 else [])
        + (["--compile"] if args.compile else [])
        + (["--system-malloc"] if args.system_malloc else [])
        + (["--contention-threshold", str(args.contention_threshold)] if args.contention_threshold else [])
    )
    # every run of the plan trains on the same layout of ranks
    for name in LAUNCH_FLAGS:
        value, default = getattr(layout, name), getattr(type(layout)(), name)
        if value != default:
            extra += [f"--{name.replace('_', '-')}", str(value)]
    comparison = Comparison(args.output, dataset, preset, plan, args.resume, extra, args.keep_checkpoints)
    code = comparison.run()
    from harness.reports.render import render_run_set

    render_run_set(args.output, args.loss_tolerance)
    return code


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
            from harness.precision import admit, format_admissions, load_modes

            platform = detect()
            if args.json:
                modes = {m.name: dataclasses.asdict(admit(m, platform)) for m in load_modes().values()}
                print(json.dumps({**as_dict(platform), "modes": modes}, indent=2))
            else:
                print(f"{format_table(platform)}\n\n{format_admissions(platform)}")
            return 0
        if args.command == "compare":
            return _compare(args)
        if args.command == "report":
            from harness.reports.render import main as report_main

            return report_main(args)
        if args.command == "roofline":
            return _roofline(args)
        if args.command == "gate":
            from harness.gate import main as gate_main

            return gate_main(args)
        if args.command == "bench":
            from harness.bench import main as bench_main

            return bench_main(args)
        if args.command == "data":
            from harness.datasets.synth import SynthSpec, synthesize

            info = synthesize(
                args.output,
                SynthSpec(
                    examples=args.examples,
                    eval_examples=args.eval_examples,
                    shards=args.shards,
                    seed=args.seed,
                    max_predictions=args.max_predictions,
                ),
                reuse=args.reuse,
            )
            print(json.dumps(info, indent=2))
            return 0
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return exc.exit_code
    raise AssertionError(f"unhandled command {args.command}")
