"""`harness bench peer`: our training step against Hugging Face's, same model, batch and threads.

For each precision, three workers run one after another, each started with the mode's
environment: our BertForPreTraining + LAMB step, Hugging Face's BertForPreTraining + fused AdamW
under the same autocast (harness.bench.peer_steps), and a real `harness train` run of the same
shape (its median step time against our bare step is the harness's own overhead: data pipeline,
metrics, checks). Both models are credited with the same analytic FLOPs (the useful work of a
BERT step), so MFU and the speed ratio compare like with like. One profiled step per
implementation gives the top operators by self CPU time, and one step with the libraries' verbose
logs on where its time goes, split as a `harness train` run's census step is
(harness.results.time_split). This module measures; the table is harness.bench.peer_table's.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from harness.bench import gemm_time
from harness.bench.peer_steps import first_batch, harness_step, hugging_face_step, top_operators
from harness.errors import HarnessError
from harness.launch import launchers
from harness.launch.admission import admitted
from harness.launch.job import Job, WorkerContext, write_figures
from harness.machine import platform
from harness.machine.cores import resolve_cores
from harness.models import load_config
from harness.precision import gemm_route, roofline
from harness.precision.modes import PrecisionMode, get_precision
from harness.results.files import read_metrics, read_result
from harness.results.stats import Spread
from harness.results.time_split import TimeSplit
from harness.train import backends
from harness.train.backends import check_available
from harness.train.config import Fp32Gemm, TrainConfig, check_fp32_gemm
from harness.train.start import start_training

IMPLEMENTATIONS = ("harness", "hugging-face")


@dataclass(frozen=True)
class PeerSpec:
    """What both implementations train; each field is a `bench peer` flag."""

    model: str = "bert-large"
    """Named model config or bert_config.json path."""
    dataset: str | None = None
    """DATASET_DIR (default: the cached synthetic data)."""
    phase: int = 1
    """1: seq 128 batches of the data's phase 1; 2: seq 512."""
    batch_size: int = 8
    """Sequences per step."""
    steps: int = 5
    """Timed steps per implementation."""
    warmup: int = 4
    """Untimed steps first: the allocator faults in fresh memory and oneDNN generates its kernels
    in the first steps (docs/results.md#warm-up: BERT-Large needs four)."""
    top: int = 12
    """Operators listed from one profiled step (0: no profile)."""
    backend: str = "stock"
    """Our step's backend, as `harness train --backend`: stock or fused (the kernels are built
    before the first worker starts)."""
    fp32_gemm: Fp32Gemm = "auto"
    """Where our step's fp32 GEMMs go: auto, mkl or onednn (as `harness train --fp32-gemm`);
    Hugging Face's step runs as stock PyTorch runs it."""
    rounds: int = 1
    """Times the implementations run in turn, each round in fresh processes and started by the
    other one than the round before: a machine whose speed drifts (a neighbour, the host) then
    weighs on all of them alike."""
    system_malloc: bool = False
    """Every worker with glibc malloc's defaults instead of the harness's (harness.launch.environment)."""
    gemms: bool = False
    """The GEMMs of the step each implementation runs, in the first round, with oneDNN's and MKL's
    verbose on (the step the time split is read from): their time by kernel and shape, their
    GFLOP/s, and the time outside them."""

    def validate(self) -> None:
        if min(self.batch_size, self.steps, self.rounds) < 1 or min(self.warmup, self.top) < 0:
            raise HarnessError("--batch-size, --steps and --rounds must be >= 1, --warmup and --top >= 0")
        check_fp32_gemm(self.fp32_gemm)
        if self.backend not in ("stock", "fused"):
            raise HarnessError(f"--backend {self.backend}: expected stock or fused")
        check_available(self.backend)
        if self.phase not in (1, 2):
            raise HarnessError(f"--phase must be 1 or 2, got {self.phase}")


@dataclass(frozen=True)
class PeerRun:
    """What ran: the implementation, its backend, the precision and the shape."""

    impl: str
    """harness, hugging-face or harness train."""
    backend: str
    precision: str
    model: str
    batch_size: int
    seq_len: int
    threads: int
    fp32_gemm: str | None
    """Where the step's fp32 GEMMs went (mkl or onednn)."""


@dataclass(frozen=True)
class PeerRound(PeerRun):
    """One implementation's timed steps in one process: a worker's, or a harness train run's."""

    step_times: list[float]
    flops: float
    """Model FLOPs of one step."""
    peak_rss_gib: float | None
    top_operators: list[dict]
    page_faults: list[int] | None = None
    """Fresh pages each timed step faulted in (bare steps only)."""
    gemms: dict | None = None
    """--gemms: one verbose step's GEMM groups (harness.bench.gemm_time.record_step)."""
    time_split: TimeSplit | None = None
    """Where one step's time went, first round only: the verbose step of a bare one, the census
    step of a harness train run."""
    data_wait_fraction: float | None = None
    """harness train rows only, as its result records them."""
    harness_time_fraction: float | None = None

    @classmethod
    def from_dict(cls, data: dict) -> PeerRound:
        """A round as a worker wrote it (JSON): its split a TimeSplit again."""
        split = data.get("time_split")
        return cls(**{**data, "time_split": TimeSplit.from_dict(split) if split else None})


@dataclass(frozen=True)
class PeerRow(PeerRun):
    """One implementation of one precision, its rounds merged: a line of the table, an object of
    --json."""

    rounds: int
    steps: int
    """Timed steps over all rounds."""
    step_time_s: float
    """Their median."""
    step_time_p10: float
    step_time_p90: float
    round_medians_s: list[float]
    seq_per_s: float
    model_tflops_per_s: float
    peak_rss_gib: float | None
    page_faults_per_step: float | None
    """A timed step that still faults in fresh pages is not warm yet (see PeerSpec.warmup)."""
    data_wait_fraction: float | None
    """In-step shares, from harness train rows only: their mean over the rounds."""
    harness_time_fraction: float | None
    top_operators: list[dict]
    gemms: dict | None
    time_split: TimeSplit | None
    emulated: bool
    malloc: str
    roofline_gflops: float | None
    mfu: float | None


def measure(
    impl: str, mode: PrecisionMode, spec: PeerSpec, context: WorkerContext, first_round: bool
) -> PeerRound:
    """In the worker: time spec.steps steps after spec.warmup; in the first round, profile one
    and record one with the verbose logs on (its time split, and with spec.gemms its GEMMs)."""
    mode.apply_math_mode()
    if impl == "harness":
        route = gemm_route.in_worker(spec.fp32_gemm, mode, context.amx_usable, context.machine_key)
    else:  # stock PyTorch's own choice
        route = gemm_route.choose("mkl", mode, context.amx_usable, None)
    raw = first_batch(spec.dataset, spec.phase, spec.batch_size, load_config(spec.model).vocab_size)
    if impl == "harness":
        step, flops = harness_step(spec.model, raw, mode, spec.backend, context.machine_key, context.gemm_isa)
    else:
        step, flops = hugging_face_step(spec.model, raw, mode)
    for _ in range(spec.warmup):
        step()
    times, faults = [], []
    for _ in range(spec.steps):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    # ru_maxrss is in KiB on Linux: the worker's peak resident memory, read before the profiled
    # and the verbose step add their records to it
    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    operators = top_operators(step, spec.top) if spec.top and first_round else []
    verbose = gemm_time.record_step(step) if first_round else None
    return PeerRound(
        impl=impl,
        backend=spec.backend if impl == "harness" else "transformers",
        precision=mode.name,
        model=spec.model,
        batch_size=spec.batch_size,
        seq_len=raw["input_ids"].shape[1],
        threads=torch.get_num_threads(),
        fp32_gemm=route.library,
        step_times=times,
        page_faults=faults,
        flops=flops,
        peak_rss_gib=peak_rss_gib,
        top_operators=operators,
        gemms=verbose.gemm_groups() if verbose and spec.gemms else None,
        time_split=verbose.time_split() if verbose else None,
    )


def measure_peer(job: Job, context: WorkerContext) -> int:
    """The peer task, in its worker: one implementation's step, timed."""
    settings = dict(job.settings)
    impl, first_round = settings.pop("impl"), settings.pop("first_round")
    return write_figures(job, asdict(measure(impl, job.mode, PeerSpec(**settings), context, first_round)))


def merge(rounds: list[PeerRound], emulated: bool, malloc: str, peak: dict | None) -> PeerRow:
    """One implementation's rounds as one row: step times pooled, figures from their median."""
    times = Spread.of([t for r in rounds for t in r.step_times])
    median = times.median
    first = rounds[0]
    tflops = first.flops / median / 1e12
    return PeerRow(
        **{f.name: getattr(first, f.name) for f in dataclasses.fields(PeerRun)},
        rounds=len(rounds),
        steps=times.n,
        step_time_s=median,
        step_time_p10=times.p10,
        step_time_p90=times.p90,
        round_medians_s=[Spread.of(r.step_times).median for r in rounds],
        seq_per_s=first.batch_size / median,
        model_tflops_per_s=tflops,
        peak_rss_gib=max((r.peak_rss_gib for r in rounds if r.peak_rss_gib is not None), default=None),
        page_faults_per_step=Spread.of([f for r in rounds for f in r.page_faults or []]).median
        if first.page_faults is not None
        else None,
        data_wait_fraction=_mean([r.data_wait_fraction for r in rounds]),
        harness_time_fraction=_mean([r.harness_time_fraction for r in rounds]),
        top_operators=first.top_operators,
        gemms=first.gemms,
        time_split=first.time_split,
        emulated=emulated,
        malloc=malloc,
        roofline_gflops=peak["gflops"] if peak else None,
        mfu=tflops * 1e3 / peak["gflops"] if peak else None,
    )


def _mean(values: list[float | None]) -> float | None:
    return float(np.mean(values)) if values and values[0] is not None else None


def train_round(name: str, spec: PeerSpec, cores: list[int], emulated: bool) -> PeerRound:
    """A real `harness train` run of the same shape: its median step against our bare one is
    what the data pipeline, metrics and checks cost."""
    if spec.phase != 1:
        raise HarnessError("bench peer: the harness train comparison runs phase 1 only; add --no-train")
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        run_dir = Path(tmp) / "run"
        cfg = TrainConfig(
            phase=1,
            precision=name,
            dataset=Path(spec.dataset),
            output=run_dir,
            model=spec.model,
            steps=spec.warmup + spec.steps,
            timing_warmup=spec.warmup,
            batch_size=spec.batch_size,
            eval_examples=8,
            log_every=1000,
            fp32_gemm=spec.fp32_gemm,
            backend=spec.backend,
        )
        cores_flag = ",".join(map(str, cores))
        options = launchers.LaunchOptions(cores_flag, emulated, system_malloc=spec.system_malloc)
        done = start_training(cfg, get_precision(name), options)
        r = read_result(run_dir)
        if done.code != 0 or r is None:
            raise HarnessError(f"bench peer: harness train for {name} exited with {done.code}")
        steps, _ = read_metrics(run_dir)
    timed = [m for m in steps if m.step not in r.cold_steps]
    return PeerRound(
        impl="harness train",
        backend=spec.backend,
        precision=name,
        model=spec.model,
        batch_size=spec.batch_size,
        seq_len=r.seq_len,
        threads=r.threads,
        fp32_gemm=r.fp32_gemm,
        step_times=[m.step_time_s for m in timed],
        flops=Spread.of([m.model_flops for m in timed]).median,
        peak_rss_gib=r.peak_rss_gib,
        data_wait_fraction=r.data_wait_fraction,
        harness_time_fraction=r.harness_time_fraction,
        top_operators=[],
        time_split=TimeSplit.from_dict(r.time_split) if r.time_split else None,
    )


def run_peer(
    spec: PeerSpec, precisions: list[str], with_train: bool, allow_emulation: bool, cores_spec: str | None
) -> list[PeerRow]:
    """Parent: for each precision, our step, Hugging Face's and (with_train) a `harness train`
    run, one after another, each in a worker with the mode's environment."""
    here = platform.detect()
    cores = resolve_cores(cores_spec)
    rows = []
    # every mode admitted before any is measured: a refusal after an hour of fp32 would lose it
    modes = [get_precision(name) for name in precisions]
    contexts = [admitted(mode, here, cores, allow_emulation, "--precisions") for mode in modes]
    for mode in modes:
        if problem := backends.mode_problem(spec.backend, mode):
            raise HarnessError(problem)
    backends.build([spec.backend], contexts[0].machine_key)
    malloc = "glibc defaults" if spec.system_malloc else "freed memory kept (harness default)"
    for mode, context in zip(modes, contexts, strict=True):
        runs = _rounds(spec, mode, context, cores, with_train)
        peak = roofline.lookup(mode.name, context.machine_key, len(cores))
        rows += [merge(impl_rounds, context.emulated, malloc, peak) for impl_rounds in runs.values()]
    return rows


def _rounds(
    spec: PeerSpec, mode: PrecisionMode, context: WorkerContext, cores: list[int], with_train: bool
) -> dict[str, list[PeerRound]]:
    """Each implementation's rounds of one mode, the implementations taking turns, and each round
    starting with the other one than the round before: a host that drifts during a round, or an
    advantage in going first, then falls on both alike over the rounds."""
    name = mode.name
    runs: dict[str, list[PeerRound]] = {impl: [] for impl in IMPLEMENTATIONS}
    for round_ in range(spec.rounds):
        for impl in IMPLEMENTATIONS[:: 1 if round_ % 2 == 0 else -1]:
            print(
                f"{name} {impl}, round {round_ + 1}/{spec.rounds}: {spec.warmup} + {spec.steps} steps",
                file=sys.stderr,
                flush=True,
            )
            # operators are profiled, and a step recorded verbose, once: in the first round
            settings = {"impl": impl, "first_round": round_ == 0, **asdict(spec)}
            measured = launchers.run_task(measure_peer, mode, context, settings, spec.system_malloc)
            runs[impl].append(PeerRound.from_dict(measured))
        if with_train:
            print(f"{name} harness train, round {round_ + 1}/{spec.rounds}", file=sys.stderr, flush=True)
            runs.setdefault("harness train", []).append(train_round(name, spec, cores, context.emulated))
    return runs
