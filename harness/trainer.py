"""`harness train`: one phase of BERT pre-training in one process, measured step by step."""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
import socket
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import torch

from harness import backends, checkpoint, contention
from harness.census import Census, ceiling_problem, census_problem
from harness.datasets.mlcommons import PhaseData, checked, eval_batches, resolve_phase_data, training_loader
from harness.distributed import Ranks
from harness.errors import HarnessError
from harness.faults import Fault
from harness.isa_probe import ceilings, recorded
from harness.launch import MALLOC_ENV_VARS, worker_context
from harness.metrics import MetricsProcessor
from harness.mlperf_log import MLPerfLog
from harness.models import (
    BertConfig,
    BertForPreTraining,
    Lamb,
    PretrainingBatch,
    load_config,
    parameter_groups,
    poly_warmup_lr,
)
from harness.precision import PrecisionMode
from harness.results.files import write_result
from harness.results.records import Status, StepRecord
from harness.roofline import lookup as roofline_lookup
from harness.train_config import TrainConfig
from harness.versions import library_versions

BETAS, EPS = (0.9, 0.999), 1e-6
ISA_ENV_VARS = (
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_DEFAULT_FPMATH_MODE",
    "OMP_NUM_THREADS",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "KMP_AFFINITY",
)
TRAJECTORY_FIELDS = (
    "model",
    "steps",
    "batch_size",
    "learning_rate",
    "warmup_steps",
    "weight_decay",
    "seed",
    "data_workers",
    "dataset",
    "phase_fraction",
    "checkpoint",
    "eval_examples",
    "shuffle_buffer",
    "world_size",
)
"""Settings that decide the data order and the updates: a resumed run must keep them."""


def to_batch(batch: dict[str, torch.Tensor]) -> PretrainingBatch:
    return PretrainingBatch(
        input_ids=batch["input_ids"],
        input_mask=batch["input_mask"],
        segment_ids=batch["segment_ids"],
        masked_lm_positions=batch["masked_lm_positions"],
        masked_lm_ids=batch["masked_lm_ids"],
        masked_lm_weights=batch["masked_lm_weights"],
        next_sentence_labels=batch["next_sentence_labels"],
    )


@torch.no_grad()
def evaluate(
    model: BertForPreTraining, data: PhaseData, mode: PrecisionMode, batch_size: int, max_examples: int
) -> dict:
    """MLM accuracy over the masked tokens, loss and NSP accuracy of the evaluation set."""
    model.eval()
    loss_sum = correct = count = nsp_correct = examples = 0.0
    for raw in eval_batches(data, batch_size, max_examples, model.config.vocab_size):
        with mode.autocast_context():
            out = model(to_batch(raw))
        n = len(raw["next_sentence_labels"])
        right, weight, nsp_right = out.accuracy_counts(raw["next_sentence_labels"])
        loss_sum += out.loss.item() * n
        correct += right
        count += weight
        nsp_correct += nsp_right
        examples += n
    model.train()
    return {
        "eval_mlm_accuracy": correct / max(count, 1),
        "eval_loss": loss_sum / max(examples, 1),
        "eval_nsp_accuracy": nsp_correct / max(examples, 1),
        "eval_examples": int(examples),
    }


class _StopFlag:
    """SIGINT / SIGTERM finish the current step, save a checkpoint and end as `interrupted`."""

    def __init__(self) -> None:
        self.raised = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.raised = True


def _jsonable(cfg: TrainConfig) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}


def _trajectory(cfg: TrainConfig, world_size: int) -> dict:
    settings = {**_jsonable(cfg), "world_size": world_size}
    return {k: settings[k] for k in TRAJECTORY_FIELDS}


def _prepare_output(cfg: TrainConfig) -> None:
    if cfg.resume:
        checkpoint.recover(cfg.output / "model_save")
        if not (cfg.output / "model_save" / checkpoint.STATE).is_file():
            raise HarnessError(f"--resume: {cfg.output}/model_save holds no checkpoint to resume from")
        return
    if cfg.output.exists() and any(cfg.output.iterdir()):
        raise HarnessError(f"--output {cfg.output}: holds a previous run; use an empty directory or --resume")
    cfg.output.mkdir(parents=True, exist_ok=True)


def _model_and_data(cfg: TrainConfig) -> tuple[BertConfig, PhaseData]:
    """The architecture (phase 2: the checkpoint's) and the phase's data, checked to fit it."""
    if cfg.phase == 2:
        checkpoint.require_phase1_result(cfg.checkpoint)
        model_cfg = checkpoint.load_config(cfg.checkpoint)
        if cfg.model is not None and load_config(cfg.model) != model_cfg:
            raise HarnessError(
                f"--model {cfg.model}: differs from the architecture in "
                f"{cfg.checkpoint}/config.json; phase 2 continues the phase-1 model"
            )
    else:
        model_cfg = load_config(cfg.model or "bert-large")
    data = resolve_phase_data(cfg.dataset, cfg.phase, cfg.phase_fraction, cfg.eval_examples)
    longest = max(data.shape.seq_len, data.eval_shape.seq_len)
    if longest > model_cfg.max_position_embeddings:
        raise HarnessError(
            f"--dataset {cfg.dataset}: sequences of {longest} tokens, longer than the "
            f"model's max_position_embeddings {model_cfg.max_position_embeddings}"
        )
    return model_cfg, data


def _resume(cfg: TrainConfig, world_size: int, model: BertForPreTraining, optimizer: Lamb) -> int:
    """Load the checkpoint in cfg.output into model and optimizer; returns its step. Refuses a
    checkpoint of another phase or precision, or one trained with settings that decide the data
    order and the updates other than these."""
    save_dir = cfg.output / "model_save"
    state = checkpoint.load_state(save_dir)
    if (state.phase, state.precision) != (cfg.phase, cfg.precision):
        raise HarnessError(
            f"--resume: {save_dir} is phase {state.phase} {state.precision}, "
            f"not phase {cfg.phase} {cfg.precision}"
        )
    now = _trajectory(cfg, world_size)
    changed = [k for k in TRAJECTORY_FIELDS if state.config.get(k) != now[k]]
    if changed:
        k = changed[0]
        raise HarnessError(
            f"--resume: --{k.replace('_', '-')} is {now[k]} but the run in "
            f"{cfg.output} used {state.config.get(k)}; resume with the same settings"
        )
    checkpoint.load_weights(save_dir, model)
    optimizer.load_state_dict(state.optimizer)
    torch.set_rng_state(state.rng)
    return state.step


def train(cfg: TrainConfig, mode: PrecisionMode) -> int:
    """Run one phase in this (worker) process; returns the exit code (0 ok, 3 diverged,
    4 invalid: the ISA ceiling or the kernel census contradicts the mode, and training stops,
    130 interrupted)."""
    stop = _StopFlag()  # first: a signal during the (long) set-up must not lose the run either
    context = worker_context(mode)
    ranks = Ranks.join(cfg.dist_backend)
    if ranks.is_main:  # rank 0 owns the output folder; the others write nothing
        _prepare_output(cfg)
    ranks.barrier()  # a recovered checkpoint is in place before any rank reads it
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    wall_start = time.perf_counter()
    fault = Fault.from_env(cfg.precision, cfg.phase)
    model_cfg, data = _model_and_data(cfg)

    mode.apply_math_mode()
    onednn_isa, mkl_header = ceilings()
    isa = {
        "isa_cap": mode.isa_cap,
        "isa_verified": onednn_isa,
        "mkl_isa": mkl_header,
        "emulated": context["emulated"],
        "gemm_isa_expected": context["gemm_isa"],
    }
    problem = ceiling_problem(mode, onednn_isa)
    print(
        f"{mode.name}: ISA cap {mode.isa_cap}, oneDNN reports {onednn_isa!r}, MKL {mkl_header!r}"
        + (f"; GEMMs must run on {context['gemm_isa']}" if context["gemm_isa"] else "")
        + (f"; EMULATED (missing {', '.join(context['missing_features'])})" if context["emulated"] else ""),
        file=sys.stderr,
        flush=True,
    )
    if problem:
        # Measuring a run that does not compute what its mode promises would only waste hours.
        print(f"INVALID RUN: {problem}; not training", file=sys.stderr, flush=True)
        if not ranks.is_main:
            return Status.INVALID.exit_code
        write_result(
            cfg.output,
            {
                "status": "invalid",
                "error": problem,
                "phase": cfg.phase,
                "precision": cfg.precision,
                **isa,
                "valid": False,
                "invalid_reason": problem,
                "precision_mode": asdict(mode),
                "isa_env": {k: os.environ.get(k) for k in ISA_ENV_VARS},
                "cpu_model": context["cpu_model"],
                "started_at": started_at,
                "versions": library_versions(),
                "config": _jsonable(cfg),
            },
        )
        return Status.INVALID.exit_code

    torch.manual_seed(cfg.seed)
    model = BertForPreTraining(model_cfg)
    if cfg.phase == 2:
        checkpoint.load_weights(cfg.checkpoint, model)
    if ranks.distributed:  # the same initial weights everywhere, a dropout stream per rank
        torch.manual_seed(cfg.seed + 1000 * ranks.rank)
    optimizer = Lamb(
        parameter_groups(model, cfg.weight_decay),
        lr=cfg.learning_rate,
        betas=BETAS,
        eps=EPS,
        weight_decay=cfg.weight_decay,
    )
    save_dir = cfg.output / "model_save"
    start_step = _resume(cfg, ranks.world_size, model, optimizer) if cfg.resume else 0
    model.train()
    model, optimizer, backend = backends.prepare(cfg.backend, model, optimizer, mode.autocast)
    trained = ranks.wrap(model)  # what the step calls: DDP averages the gradients over ranks
    if cfg.compile:
        # dynamic: the MLM head's row count changes with every batch's masked tokens
        trained = torch.compile(trained, dynamic=True)
    global_batch = cfg.batch_size * ranks.world_size

    metrics = MetricsProcessor(cfg.output if ranks.is_main else None, cfg.steps, cfg.log_every, start_step)
    mllog = MLPerfLog(cfg.output / "mllog.txt" if ranks.is_main else None, append=cfg.resume)
    mllog.run_start(
        global_batch_size=global_batch,
        lr=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        total_steps=cfg.steps,
        weight_decay=cfg.weight_decay,
        betas=BETAS,
        eps=EPS,
        seq_len=data.shape.seq_len,
        max_predictions=data.shape.max_predictions,
        eval_examples=cfg.eval_examples,
        seed=cfg.seed,
    )
    if ranks.is_main:
        layout = (
            f" ({ranks.world_size} ranks x {cfg.batch_size}, {ranks.backend})" if ranks.distributed else ""
        )
        print(
            f"phase {cfg.phase} {cfg.precision}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
            f"parameters, batch {global_batch}{layout} x seq {data.shape.seq_len}, {len(data.train)} "
            f"training slice(s), eval from {data.eval_source}",
            file=sys.stderr,
            flush=True,
        )

    def save(step: int, complete: bool) -> None:
        if not ranks.is_main:
            return
        checkpoint.save(
            save_dir,
            model,
            model_cfg,
            checkpoint.TrainingState(
                step=step,
                phase=cfg.phase,
                precision=cfg.precision,
                optimizer=optimizer.state_dict(),
                rng=torch.get_rng_state(),
                complete=complete,
                config=_trajectory(cfg, ranks.world_size),
            ),
        )

    def run_eval(step: int) -> None:
        if not ranks.is_main:  # the others wait for it at their next collective
            return
        results = evaluate(model, data, mode, cfg.batch_size, cfg.eval_examples)
        metrics.evaluation(step, results)
        mllog.eval_accuracy(results["eval_mlm_accuracy"], step * global_batch, step)

    status, error, step = "ok", None, start_step
    # The census step runs with the libraries' verbose on, so it must be one the statistics leave out.
    census_step, census = min(start_step + max(cfg.timing_warmup, 1), cfg.steps), None
    cores_at_start = None
    batches = iter(
        training_loader(
            data,
            cfg.batch_size,
            cfg.seed,
            cfg.data_workers,
            model_cfg.vocab_size,
            ranks.rank,
            ranks.world_size,
            cfg.shuffle_buffer,
        )
    )
    try:
        for _ in range(start_step):  # replay the data order up to the checkpoint
            checked(next(batches))
            if stop.raised:
                raise KeyboardInterrupt
        for step in range(start_step + 1, cfg.steps + 1):
            if step == census_step + 1:  # the timed steps begin: what do the run's cores do?
                cores_at_start = contention.Snapshot.take(context["cores"], time.perf_counter())
            t0, cpu0 = time.perf_counter(), time.process_time()
            raw = checked(next(batches))
            t1 = time.perf_counter()
            lr = poly_warmup_lr(step, cfg.learning_rate, cfg.warmup_steps, cfg.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = to_batch(raw)
            if ranks.distributed:
                (weight_sum,) = ranks.sum([float(raw["masked_lm_weights"].sum())])
                batch.mlm_weight_sum = torch.tensor(weight_sum / ranks.world_size)
            census_now = step == census_step
            t_forward = time.perf_counter()
            with recorded() if census_now else contextlib.nullcontext() as forward_backward:
                with mode.autocast_context():
                    out = trained(batch)
                out.loss.backward()
            compute = time.perf_counter() - t_forward
            loss, mlm_loss, nsp_loss, masked, stopping = ranks.sum(
                [
                    out.loss.item(),
                    out.mlm_loss.item(),
                    out.nsp_loss.item(),
                    out.masked_tokens,
                    float(stop.raised),
                ]
            )
            # Every rank decides alike: on the mean loss, and to stop when any rank was signalled.
            loss, mlm_loss, nsp_loss = (v / ranks.world_size for v in (loss, mlm_loss, nsp_loss))
            stop.raised = stopping > 0
            if fault:
                loss = fault.poison_loss(step, loss)
            if not math.isfinite(loss):
                status = "diverged"
                print(f"step {step}: loss is {loss}; stopping as diverged", file=sys.stderr, flush=True)
                break
            t_update = time.perf_counter()
            with recorded() if census_now else contextlib.nullcontext() as update:
                grad_norm = optimizer.step_if_finite()
            if grad_norm is None:
                status = "diverged"
                print(
                    f"step {step}: gradient norm is not finite; stopping as diverged",
                    file=sys.stderr,
                    flush=True,
                )
                break
            optimizer.zero_grad(set_to_none=True)
            compute += time.perf_counter() - t_update
            if fault:
                fault.slow_down(step, time.perf_counter() - t0)
            t2, cpu2 = time.perf_counter(), time.process_time()
            metrics.step(
                StepRecord(
                    step=step,
                    loss=loss,
                    mlm_loss=mlm_loss,
                    nsp_loss=nsp_loss,
                    lr=lr,
                    grad_norm=grad_norm,
                    step_time_s=t2 - t0,
                    data_time_s=t1 - t0,
                    # the ranks move in step (the gradient all-reduce): global batch over step time
                    # is the sum of their throughputs
                    seq_per_s=global_batch / (t2 - t0),
                    model_flops=model.training_flops(global_batch, data.shape.seq_len, int(masked)),
                    compute_time_s=compute,
                    cpu_share=(cpu2 - cpu0) / ((t2 - t0) * torch.get_num_threads()),
                )
            )
            if census_now:
                text = forward_backward.text + update.text + (fault.census_lines(step) if fault else "")
                census = Census.from_verbose(text, mkl_header, onednn_isa)
                problem = census_problem(mode, context["gemm_isa"], census)
                # every rank stops alike, or the others would wait for it at their next collective
                if ranks.sum([float(problem is not None)])[0] > 0:
                    problem = problem or "another rank's kernel census contradicts the mode"
                    status, error = "invalid", problem
                    print(f"INVALID RUN: {problem}; stopping", file=sys.stderr, flush=True)
                    break
                shares = ", ".join(f"{k} {v:.1%}" for k, v in census.gemm_isa_share().items())
                print(
                    f"step {step}: kernel census: GEMM time by ISA "
                    f"{shares or 'none in oneDNN or MKL (PyTorch computed them itself)'}",
                    file=sys.stderr,
                    flush=True,
                )
            if cfg.eval_every and step % cfg.eval_every == 0 and step != cfg.steps:
                run_eval(step)
            if stop.raised:
                status = "interrupted"
                save(step, complete=False)
                break
            if cfg.save_every and step % cfg.save_every == 0 and step != cfg.steps:
                save(step, complete=False)
        if status == "ok":
            run_eval(cfg.steps)
            save(cfg.steps, complete=True)
    except BaseException as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        # Steps just after a resume are as cold as the first ones: leave them out too.
        summary = metrics.summary(
            cfg.timing_warmup, global_batch, resumed_at=start_step, also_cold=(census_step,)
        )
        peak = roofline_lookup(mode.name, context["machine_key"], torch.get_num_threads())
        if peak and "model_tflops_per_s" in summary:
            # MFU: model FLOP/s over the large-matmul peak of this mode on this machine, one
            # peak per rank (each measured at this rank's thread count).
            summary["roofline_gflops"] = peak["gflops"] * ranks.world_size
            summary["mfu"] = summary["model_tflops_per_s"] * 1e3 / summary["roofline_gflops"]
        metrics.close()
        mllog.run_stop(status == "ok", summary.get("steps_completed", 0) * global_batch)
        census_fields = {**census.summary(), "census_step": census_step} if census else {}
        cores_fields = (
            contention.judge(
                cores_at_start,
                contention.Snapshot.take(context["cores"], time.perf_counter()),
                len(context["cores"]),
                cfg.contention_threshold,
            )
            if cores_at_start is not None
            else {}
        )
        mllog.close()
        if ranks.is_main:
            _write_result(
                cfg,
                mode,
                context,
                ranks,
                {
                    "status": status,
                    "error": error,
                    "model_config": asdict(model_cfg),
                    "seq_len": data.shape.seq_len,
                    "max_predictions": data.shape.max_predictions,
                    "train_files": [s.path for s in data.train],
                    "eval_source": data.eval_source,
                    **summary,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    **isa,
                    **census_fields,
                    **cores_fields,
                    "valid": status != "invalid",
                    "invalid_reason": error if status == "invalid" else None,
                    **backend,
                    "started_at": started_at,
                    "wall_time_s": time.perf_counter() - wall_start,
                    # ru_maxrss is KiB on Linux: rank 0's peak resident memory, model and data included
                    "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                },
            )
        ranks.close()
    return Status(status).exit_code


def _write_result(cfg: TrainConfig, mode: PrecisionMode, context: dict, ranks: Ranks, fields: dict) -> None:
    """The run's result: its own figures (fields), then what every result records."""
    write_result(
        cfg.output,
        {
            "status": fields.pop("status"),
            "error": fields.pop("error"),
            "phase": cfg.phase,
            "precision": cfg.precision,
            "steps": cfg.steps,
            **fields,
            "precision_mode": asdict(mode),
            "isa_env": {k: os.environ.get(k) for k in ISA_ENV_VARS},
            "malloc_env": {k: os.environ[k] for k in MALLOC_ENV_VARS if k in os.environ},
            "cores": context["cores"],
            "threads": torch.get_num_threads(),
            # with several ranks: threads and cores are rank 0's, batch_size the global batch
            "world_size": ranks.world_size,
            "dist_backend": ranks.backend,
            "batch_size_per_rank": cfg.batch_size,
            "node_cores": context.get("node_cores", context["cores"]),
            "cpu_model": context["cpu_model"],
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "versions": library_versions(),
            "config": _jsonable(cfg),
        },
    )
