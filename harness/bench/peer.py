"""`harness bench peer`: our training step against Hugging Face's, same model, batch and threads.

For each precision, three workers run one after another, each started with the mode's
environment: our BertForPreTraining + LAMB step, Hugging Face's BertForPreTraining + fused AdamW
under the same autocast, and a real `harness train` run of the same shape (its median step time
against our bare step is the harness's own overhead: data pipeline, metrics, checks). Both
models are credited with the same analytic FLOPs (the useful work of a BERT step), so MFU and
the speed ratio compare like with like. One profiled step per implementation gives the top
operators by self CPU time.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.bench import gemm_time
from harness.errors import HarnessError
from harness.precision import gemm_route
from harness.results.files import read_metrics, read_result
from harness.results.stats import Spread, ratio
from harness.train import backends
from harness.train.backends import check_available
from harness.train.config import Fp32Gemm, check_fp32_gemm

if TYPE_CHECKING:
    from harness.launch.job import Job, WorkerContext


def first_batch(dataset: str, phase: int, batch_size: int, vocab: int) -> dict:
    """The first training batch of the phase's data: the same examples (padding, masked counts)
    a `harness train` run of that phase sees, so all three workers do comparable work."""
    from harness.datasets.mlcommons import checked, resolve_phase_data, training_loader

    data = resolve_phase_data(Path(dataset), phase, 0.9, 8)
    return checked(next(iter(training_loader(data, batch_size, seed=0, workers=0, vocab_size=vocab))))


def _ours(model_name: str, raw: dict, mode, backend: str, machine_key: str) -> tuple[Callable[[], None], int]:

    from harness.models import BertForPreTraining, Lamb, load_config
    from harness.models.lamb import parameter_groups
    from harness.train.trainer import to_batch

    model = BertForPreTraining(load_config(model_name)).train()
    optimizer = Lamb(parameter_groups(model, 0.01), lr=1e-4)
    model, optimizer, _ = backends.prepare(backend, model, optimizer, mode.autocast, machine_key)
    batch = to_batch(raw)

    def step() -> None:
        with mode.autocast_context():
            out = model(batch)
        out.loss.backward()
        optimizer.step_if_finite()
        optimizer.zero_grad(set_to_none=True)

    flops = model.training_flops(
        raw["input_ids"].shape[0], raw["input_ids"].shape[1], int((raw["masked_lm_weights"] > 0).sum())
    )
    return step, flops


def _hugging_face(model_name: str, raw: dict, mode) -> tuple[Callable[[], None], int]:
    import torch

    from harness.models import load_config
    from harness.models.flops import training_step_flops

    try:
        import transformers
    except ImportError:
        raise HarnessError(
            "bench peer: the Hugging Face side needs transformers (pip install -e '.[test]' "
            "or pip install transformers)"
        ) from None
    cfg = load_config(model_name)
    hf_config = transformers.BertConfig(**cfg.to_hf_dict())
    model = transformers.BertForPreTraining(hf_config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
    labels = torch.full_like(raw["input_ids"], -100)
    labels.scatter_(1, raw["masked_lm_positions"], raw["masked_lm_ids"])

    def step() -> None:
        with mode.autocast_context():
            out = model(
                input_ids=raw["input_ids"],
                attention_mask=raw["input_mask"],
                token_type_ids=raw["segment_ids"],
                labels=labels,
                next_sentence_label=raw["next_sentence_labels"],
            )
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # Credited with our model's FLOPs: the same useful work (HF's MLM head also runs on every
    # unmasked token, which is its cost, not extra work done).
    flops = training_step_flops(
        cfg, raw["input_ids"].shape[0], raw["input_ids"].shape[1], int((raw["masked_lm_weights"] > 0).sum())
    )
    return step, flops


IMPLEMENTATIONS = ("harness", "hugging-face")


def _top_operators(step: Callable[[], None], top: int) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [
        {
            "op": e.key,
            "self_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total,
            "calls": e.count,
        }
        for e in events[:top]
    ]


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
    """Times the implementations run in turn, each round in fresh processes: a machine whose
    speed drifts (a neighbour, the host) then weighs on all of them alike."""
    system_malloc: bool = False
    """Every worker with glibc malloc's defaults instead of the harness's (harness.launch.environment)."""
    gemms: bool = False
    """One more step of each implementation, in the first round, with oneDNN's and MKL's verbose on:
    its GEMM time by kernel and shape, their GFLOP/s, and the time outside them."""

    def validate(self) -> None:
        if min(self.batch_size, self.steps, self.rounds) < 1 or min(self.warmup, self.top) < 0:
            raise HarnessError("--batch-size, --steps and --rounds must be >= 1, --warmup and --top >= 0")
        check_fp32_gemm(self.fp32_gemm)
        if self.backend not in ("stock", "fused"):
            raise HarnessError(f"--backend {self.backend}: expected stock or fused")
        check_available(self.backend)
        if self.phase not in (1, 2):
            raise HarnessError(f"--phase must be 1 or 2, got {self.phase}")


def measure(impl: str, mode, spec: PeerSpec, context: WorkerContext) -> dict:
    """In the worker: time spec.steps steps after spec.warmup, then profile one."""
    import torch

    from harness.models import load_config

    mode.apply_math_mode()
    if impl == "harness":
        route = gemm_route.in_worker(spec.fp32_gemm, mode, context.amx_usable, context.machine_key)
    else:  # stock PyTorch's own choice
        route = gemm_route.choose("mkl", mode, context.amx_usable, None)
    raw = first_batch(spec.dataset, spec.phase, spec.batch_size, load_config(spec.model).vocab_size)
    if impl == "harness":
        step, flops = _ours(spec.model, raw, mode, spec.backend, context.machine_key)
    else:
        step, flops = _hugging_face(spec.model, raw, mode)
    for _ in range(spec.warmup):
        step()
    times, faults = [], []
    for _ in range(spec.steps):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return {
        "impl": impl,
        "backend": spec.backend if impl == "harness" else "transformers",
        "precision": mode.name,
        "model": spec.model,
        "batch_size": spec.batch_size,
        "seq_len": raw["input_ids"].shape[1],
        "threads": torch.get_num_threads(),
        "fp32_gemm": route.library,
        "step_times": times,
        "page_faults": faults,
        "flops": flops,
        # ru_maxrss is in KiB on Linux: the worker's peak resident memory
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "top_operators": _top_operators(step, spec.top) if spec.top else [],
        "gemms": gemm_time.record_step(step) if spec.gemms else None,
    }


def measure_peer(job: Job, context: WorkerContext) -> int:
    """The peer task, in its worker: one implementation's step, timed."""
    from harness.launch.job import write_figures

    settings = dict(job.settings)
    impl = settings.pop("impl")
    return write_figures(job, measure(impl, job.mode, PeerSpec(**settings), context))


def merge(rounds: list[dict]) -> dict:
    """One implementation's rounds as one row: step times pooled, figures from their median."""
    times = Spread.of([t for r in rounds for t in r["step_times"]])
    median = times.median
    first = rounds[0]
    return {
        **{
            k: first[k]
            for k in (
                "impl",
                "backend",
                "precision",
                "model",
                "batch_size",
                "seq_len",
                "threads",
                "fp32_gemm",
            )
        },
        "rounds": len(rounds),
        "steps": times.n,
        "step_time_s": median,
        "step_time_p10": times.p10,
        "step_time_p90": times.p90,
        "round_medians_s": [Spread.of(r["step_times"]).median for r in rounds],
        "seq_per_s": first["batch_size"] / median,
        "model_tflops_per_s": first["flops"] / median / 1e12,
        "peak_rss_gib": max(r["peak_rss_gib"] for r in rounds),
        # a timed step that still faults in fresh pages is not warm yet (see PeerSpec.warmup)
        "page_faults_per_step": Spread.of([f for r in rounds for f in r["page_faults"]]).median
        if "page_faults" in first
        else None,
        # in-step shares, from `harness train` rows only: their mean over the rounds
        **{
            k: float(np.mean([r[k] for r in rounds])) if k in first else None
            for k in ("data_wait_fraction", "harness_time_fraction")
        },
        "top_operators": first["top_operators"],
        "gemms": first.get("gemms"),
    }


def _train_row(name: str, spec: PeerSpec, cores: list[int], emulated: bool) -> dict:
    """A real `harness train` run of the same shape: its median step against our bare one is
    what the data pipeline, metrics and checks cost."""
    import tempfile

    from harness.launch.launchers import LaunchOptions
    from harness.precision.modes import get_precision
    from harness.train.config import TrainConfig
    from harness.train.start import start_training

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
        options = LaunchOptions(",".join(map(str, cores)), emulated, system_malloc=spec.system_malloc)
        done = start_training(cfg, get_precision(name), options)
        r = read_result(run_dir)
        if done.code != 0 or r is None:
            raise HarnessError(f"bench peer: harness train for {name} exited with {done.code}")
        steps, _ = read_metrics(run_dir)
    timed = [m for m in steps if m.step not in r.cold_steps]
    return {
        "impl": "harness train",
        "backend": spec.backend,
        "precision": name,
        "model": spec.model,
        "batch_size": spec.batch_size,
        "seq_len": r.seq_len,
        "threads": r.threads,
        "fp32_gemm": r.fp32_gemm,
        "step_times": [m.step_time_s for m in timed],
        "flops": Spread.of([m.model_flops for m in timed]).median,
        "peak_rss_gib": r.peak_rss_gib,
        "data_wait_fraction": r.data_wait_fraction,
        "harness_time_fraction": r.harness_time_fraction,
        "top_operators": [],
    }


def run_peer(
    spec: PeerSpec, precisions: list[str], with_train: bool, allow_emulation: bool, cores_spec: str | None
) -> list[dict]:
    """Parent: for each precision, our step, Hugging Face's and (with_train) a `harness train`
    run, one after another, each in a worker with the mode's environment."""
    import sys
    from dataclasses import asdict

    from harness.launch.admission import admitted
    from harness.launch.launchers import run_task
    from harness.machine.cores import resolve_cores
    from harness.machine.platform import detect
    from harness.precision.modes import get_precision
    from harness.precision.roofline import lookup

    platform = detect()
    cores = resolve_cores(cores_spec)
    rows = []
    # every mode admitted before any is measured: a refusal after an hour of fp32 would lose it
    modes = [get_precision(name) for name in precisions]
    contexts = [admitted(mode, platform, cores, allow_emulation, "--precisions") for mode in modes]
    backends.build([spec.backend], contexts[0].machine_key)
    for mode, context in zip(modes, contexts, strict=True):
        name = mode.name
        runs: dict[str, list[dict]] = {}
        for round_ in range(spec.rounds):
            # operators are profiled once, in the first round
            settings = {
                **asdict(spec),
                "top": spec.top if round_ == 0 else 0,
                "gemms": spec.gemms and round_ == 0,
            }
            for impl in IMPLEMENTATIONS:
                print(
                    f"{name} {impl}, round {round_ + 1}/{spec.rounds}: {spec.warmup} + {spec.steps} steps",
                    file=sys.stderr,
                    flush=True,
                )
                job_settings = {"impl": impl, **settings}
                measured = run_task(measure_peer, mode, context, job_settings, spec.system_malloc)
                runs.setdefault(impl, []).append(measured)
            if with_train:
                print(f"{name} harness train, round {round_ + 1}/{spec.rounds}", file=sys.stderr, flush=True)
                runs.setdefault("harness train", []).append(_train_row(name, spec, cores, context.emulated))
        peak = lookup(name, context.machine_key, len(cores))
        for impl_rounds in runs.values():
            row = merge(impl_rounds)
            row["emulated"] = context.emulated
            row["malloc"] = "glibc defaults" if spec.system_malloc else "freed memory kept (harness default)"
            row["roofline_gflops"] = peak["gflops"] if peak else None
            row["mfu"] = row["model_tflops_per_s"] * 1e3 / peak["gflops"] if peak else None
            rows.append(row)
    return rows


def format_rows(rows: list[dict]) -> str:
    """The comparison table, the ratios and overheads, then the top operators."""
    first = rows[0]
    lines = [
        f"{first['model']}, batch {first['batch_size']} x seq {first['seq_len']}, {first['threads']} "
        f"threads, {first['steps']} timed steps each, malloc: {first['malloc']}, harness backend: "
        f"{first['backend']}",
        f"{'precision':<10} {'implementation':<14} {'step s':>8} {'p10..p90 s':>15} {'seq/s':>7} "
        f"{'TFLOP/s':>8} {'MFU':>6} {'peak RSS':>9} {'faults/step':>11} {'fp32 GEMMs':>10}",
    ]
    for r in rows:
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
        rss = f"{r['peak_rss_gib']:.1f} GiB" if r.get("peak_rss_gib") is not None else "-"
        faults = f"{r['page_faults_per_step']:.0f}" if r.get("page_faults_per_step") is not None else "-"
        lines.append(
            f"{r['precision']:<10} {r['impl']:<14} {r['step_time_s']:>8.3f} "
            f"{r['step_time_p10']:>7.3f}..{r['step_time_p90']:<7.3f} {r['seq_per_s']:>7.3f} "
            f"{r['model_tflops_per_s']:>8.3f} {mfu:>6} {rss:>9} {faults:>11} {r.get('fp32_gemm') or '-':>10}"
            f"{'  [emulated]' if r.get('emulated') else ''}"
        )
    lines.append("")
    unmeasured = list(dict.fromkeys(r["precision"] for r in rows if r.get("mfu") is None))
    if unmeasured:
        lines.append(
            f"MFU: no roofline of {', '.join(unmeasured)} on this machine and thread count yet; "
            f"python -m harness roofline --precisions {','.join(unmeasured)} measures it"
        )
    for precision in dict.fromkeys(r["precision"] for r in rows):
        mine = {r["impl"]: r for r in rows if r["precision"] == precision}
        ours, hf = mine["harness"], mine["hugging-face"]
        # A step time ratio upside down is the sequences/s ratio; a round (a process) is the unit.
        pairs = zip(hf["round_medians_s"], ours["round_medians_s"], strict=True)
        per_round = [ratio([h], [o]).value for h, o in pairs]
        speed = ratio(hf["round_medians_s"], ours["round_medians_s"])
        lines.append(
            f"{precision}: harness / Hugging Face = {speed.text()} sequences/s "
            f"(per round: {', '.join(f'{r:.2f}x' for r in per_round)})"
        )
        if "harness train" in mine:
            t = mine["harness train"]
            overhead = ratio(t["round_medians_s"], ours["round_medians_s"]).value - 1
            pairs = zip(t["round_medians_s"], ours["round_medians_s"], strict=True)
            per_round = [ratio([a], [b]).value - 1 for a, b in pairs]
            lines.append(
                f"{precision}: harness overhead, harness train step {t['step_time_s']:.3f} s "
                f"vs bare step {ours['step_time_s']:.3f} s: {overhead:+.1%} "
                f"(per round: {', '.join(f'{r:+.1%}' for r in per_round)})"
            )
            # measured inside the same steps, so free of the drift between processes
            lines.append(
                f"{precision}: within the harness train steps: harness work "
                f"{t['harness_time_fraction']:.2%}, data wait {t['data_wait_fraction']:.2%} "
                "of step time"
            )
    for r in rows:
        if r["top_operators"]:
            lines += ["", f"top operators, {r['precision']} {r['impl']} (one step, self CPU time):"]
            lines += [
                f"  {o['self_ms']:>9.1f} ms {o['share']:>6.1%} {o['calls']:>6}x  {o['op']}"
                for o in r["top_operators"]
            ]
    for r in rows:
        if r.get("gemms"):
            label = f"{r['precision']} {r['impl']}"
            lines += ["", *gemm_time.summary(label, r["gemms"], r.get("roofline_gflops"), 12)]
    return "\n".join(lines)
