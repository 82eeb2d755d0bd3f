"""`harness train`'s worker: one phase of BERT pre-training in this process, measured step by step.

`Trainer.train` reads like the algorithm: build, replay the data order up to a checkpoint, step
until the budget is spent or a step says stop, evaluate, save, write the result. The components
it calls (metrics, checkpoints, kernel census, evaluation, MLPerf log, the result's figures) live
beside it.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass

import torch

from harness.datasets.mlcommons import PhaseData, checked, training_loader
from harness.launch.job import Job, WorkerContext
from harness.machine import contention
from harness.models import BertConfig, BertForPreTraining, Lamb, parameter_groups, poly_warmup_lr
from harness.precision import gemm_route
from harness.precision.modes import PrecisionMode
from harness.results.files import write_result
from harness.results.records import Status, StepRecord
from harness.train import checkpoint, prepare_backend
from harness.train.config import TrainConfig
from harness.train.distributed import Ranks
from harness.train.evaluate import evaluate, to_batch
from harness.train.faults import Fault
from harness.train.figures import run_figures
from harness.train.hooks import FORWARD_BACKWARD, OPTIMIZER, KernelCensus, StepClock, StopFlag
from harness.train.metrics import MetricsProcessor
from harness.train.mllog import MLPerfLog, Submission
from harness.train.result import RunResult
from harness.train.setup import already_complete, model_and_data, output_folder, resume, trajectory

BETAS, EPS = (0.9, 0.999), 1e-6


def run_job(job: Job, context: WorkerContext) -> int:
    """The train task, as harness.train.start hands it to the launcher: the job's one phase."""
    return train(TrainConfig.from_dict(job.settings), job.mode, context)


def train(cfg: TrainConfig, mode: PrecisionMode, context: WorkerContext) -> int:
    """Run one phase in this worker process; returns the status's exit code."""
    stop = StopFlag()  # first: a signal during the (long) set-up must not lose the run either
    ranks = Ranks.join(cfg.dist_backend)
    # rank 0 owns the output folder; the others write nothing
    with output_folder(cfg) if ranks.is_main else contextlib.nullcontext():
        # one collective: every rank learns what rank 0 found, and the recovered checkpoint is in
        # place before any rank reads it
        (complete,) = ranks.sum(
            [float(ranks.is_main and cfg.resume and already_complete(cfg, ranks.world_size))]
        )
        if complete:
            if ranks.is_main:
                print(
                    f"--resume: {cfg.output} is already complete ({cfg.steps} steps); nothing to do",
                    file=sys.stderr,
                )
            ranks.close()
            return Status.OK.exit_code
        return _run(cfg, mode, context, ranks, stop).exit_code


@dataclass(frozen=True)
class Ready:
    """What a run is checked on before its model is built: its data, the ISA ceiling the libraries
    report and the route of its fp32 GEMMs."""

    init_ms: int
    """MLPerf's init_start: the set-up's start."""
    model_cfg: BertConfig
    data: PhaseData
    data_fingerprint: str
    census: KernelCensus
    route: gemm_route.Route


def _run(
    cfg: TrainConfig, mode: PrecisionMode, context: WorkerContext, ranks: Ranks, stop: StopFlag
) -> Status:
    """Bad input raises before anything is written; a ceiling that contradicts the mode writes an
    invalid result (nothing else is built); otherwise the Trainer trains."""
    result = RunResult(cfg, mode, context, ranks)
    init_ms = time.time_ns() // 1_000_000
    model_cfg, data = model_and_data(cfg)
    fingerprint = data.fingerprint()
    mode.apply_math_mode()
    census = KernelCensus(mode, context)
    if problem := census.ceiling_problem():
        # Measuring a run that does not compute what its mode promises would only waste hours.
        print(f"INVALID RUN: {problem}; not training", file=sys.stderr, flush=True)
        if ranks.is_main:
            write_result(cfg.output, result.build(Status.INVALID, problem, census.fields()))
        ranks.close()
        return Status.INVALID
    route = gemm_route.in_worker(cfg.fp32_gemm, mode, context.amx_usable, context.machine_key)
    ready = Ready(init_ms, model_cfg, data, fingerprint, census, route)
    return Trainer(cfg, mode, context, ranks, stop, result, ready).train()


class Trainer:
    """One phase's training, its components built here, in one place, from a Ready run."""

    def __init__(
        self,
        cfg: TrainConfig,
        mode: PrecisionMode,
        context: WorkerContext,
        ranks: Ranks,
        stop: StopFlag,
        result: RunResult,
        ready: Ready,
    ) -> None:
        self.cfg, self.mode, self.context, self.ranks, self.stop = cfg, mode, context, ranks, stop
        self.result = result
        self.model_cfg, self.data, self.data_fingerprint = ready.model_cfg, ready.data, ready.data_fingerprint
        self.census, self.route = ready.census, ready.route
        self.global_batch = cfg.batch_size * ranks.world_size
        self.fault = Fault.from_env(cfg.precision, cfg.phase)
        self.error: str | None = None
        self.cores_at_start: contention.Snapshot | None = None
        self.start_step, model, optimizer = self._initial_state()
        self.model, self.optimizer, self.backend = prepare_backend.prepare(
            cfg.backend, model, optimizer, mode, context.machine_key, context.gemm_isa, ranks.distributed
        )
        self.trained = ranks.wrap(self.model)  # what the step calls: DDP averages the gradients over ranks
        if cfg.compile:  # dynamic: the MLM head's row count changes with every batch's masked tokens
            self.trained = torch.compile(self.trained, dynamic=True)
        self.census.step = min(self.start_step + max(cfg.timing_warmup, 1), cfg.steps)
        self.metrics = MetricsProcessor(
            cfg.output if ranks.is_main else None, cfg.steps, cfg.log_every, self.start_step
        )
        self.mllog = self._start_mllog(ready.init_ms)
        self.batches = iter(
            training_loader(
                self.data,
                cfg.batch_size,
                cfg.seed,
                cfg.data_workers,
                self.model_cfg.vocab_size,
                ranks.rank,
                ranks.world_size,
                cfg.shuffle_buffer,
            )
        )
        self._announce()

    def train(self) -> Status:
        """From the first step on, the result is written whatever happens."""
        status = Status.FAILED
        try:
            status = self.replay() or self.loop()
            if status is Status.OK:  # saved first: a failing evaluation must not cost the training
                self.save(self.cfg.steps, complete=True)
                self.evaluate(self.cfg.steps)
        except BaseException as exc:  # the final evaluation or save too: the run did not end well
            status, self.error = Status.FAILED, f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.finish(status, self.error)
        return status

    def _initial_state(self) -> tuple[int, BertForPreTraining, Lamb]:
        """The step to start after, and the model and optimizer: new, or from the checkpoint."""
        cfg, ranks = self.cfg, self.ranks
        torch.manual_seed(cfg.seed)
        model = BertForPreTraining(self.model_cfg)
        if cfg.phase == 2:
            checkpoint.load_weights(cfg.checkpoint, model)
        if self.mode.weights:  # before the optimizer: its moments take the weights' dtype
            model.to(getattr(torch, self.mode.weights))
        if ranks.distributed:  # the same initial weights everywhere, a dropout stream per rank
            torch.manual_seed(cfg.seed + 1000 * ranks.rank)
        groups = parameter_groups(model, cfg.weight_decay)
        optimizer = Lamb(groups, lr=cfg.learning_rate, betas=BETAS, eps=EPS, weight_decay=cfg.weight_decay)
        start_step = resume(cfg, ranks.world_size, self.data, model, optimizer) if cfg.resume else 0
        model.train()
        return start_step, model, optimizer

    def replay(self) -> Status | None:
        """Read the data up to the checkpoint's step, so that a resumed run sees the same batches."""
        for _ in range(self.start_step):
            checked(next(self.batches))
            if self.stop.raised:
                return Status.INTERRUPTED
        return None

    def loop(self) -> Status:
        cfg = self.cfg
        for step in range(self.start_step + 1, cfg.steps + 1):
            if step == self.census.step + 1:  # the timed steps begin: what do the run's cores do?
                self.cores_at_start = contention.Snapshot.take(self.context.cores)
            if stopped := self.step(step):
                return stopped
            if cfg.eval_every and step % cfg.eval_every == 0 and step != cfg.steps:
                self.evaluate(step)
            if self.stop.raised:
                self.save(step, complete=False)
                return Status.INTERRUPTED
            if cfg.save_every and step % cfg.save_every == 0 and step != cfg.steps:
                self.save(step, complete=False)
        return Status.OK

    def step(self, step: int) -> Status | None:
        """One optimizer step, timed and recorded; a status when the run must stop at it."""
        clock = StepClock()
        raw = checked(next(self.batches))
        clock.data_ready()
        lr = poly_warmup_lr(step, self.cfg.learning_rate, self.cfg.warmup_steps, self.cfg.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.census.recording(step) as verbose:
            with clock.computing(FORWARD_BACKWARD):
                out = self._forward_backward(raw)
            losses, masked, head_rows = self._reduce(out, step)
            if not math.isfinite(losses[0]):
                return self._diverged(step, f"loss is {losses[0]}")
            with clock.computing(OPTIMIZER):
                grad_norm = self.optimizer.step_if_finite()
                self.optimizer.zero_grad(set_to_none=True)
            if grad_norm is None:
                return self._diverged(step, "gradient norm is not finite")
        if self.fault:
            self.fault.slow_down(step, clock.elapsed())
        self._record(step, clock, losses, lr, grad_norm, masked, head_rows)
        if verbose is None:
            return None
        self.error = self.census.judge(
            verbose.text + (self.fault.census_lines(step) if self.fault else ""), self.ranks, clock
        )
        if self.error:
            print(f"INVALID RUN: {self.error}; stopping", file=sys.stderr, flush=True)
            return Status.INVALID
        return None

    def _forward_backward(self, raw: dict):
        batch = to_batch(raw)
        if self.ranks.distributed:
            # the MLM loss is a mean over the masked tokens of every rank, not of each rank's own
            (weight_sum,) = self.ranks.sum([float(raw["masked_lm_weights"].sum())])
            batch.mlm_weight_sum = torch.tensor(weight_sum / self.ranks.world_size)
        with self.mode.autocast_context():
            out = self.trained(batch)
        out.loss.backward()
        return out

    def _reduce(self, out, step: int) -> tuple[tuple[float, float, float], int, int]:
        """The losses averaged over ranks, the masked tokens and the last layer's rows summed;
        every rank then decides alike, and stops when any rank was signalled."""
        values = [
            out.loss.item(),
            out.mlm_loss.item(),
            out.nsp_loss.item(),
            out.masked_tokens,
            out.head_rows,
            float(self.stop.raised),
        ]
        loss, mlm_loss, nsp_loss, masked, head_rows, stopping = self.ranks.sum(values)
        self.stop.raised = stopping > 0
        loss, mlm_loss, nsp_loss = (v / self.ranks.world_size for v in (loss, mlm_loss, nsp_loss))
        if self.fault:
            loss = self.fault.poison_loss(step, loss)
        return (loss, mlm_loss, nsp_loss), int(masked), int(head_rows)

    def _diverged(self, step: int, why: str) -> Status:
        print(f"step {step}: {why}; stopping as diverged", file=sys.stderr, flush=True)
        return Status.DIVERGED

    def _record(
        self,
        step: int,
        clock: StepClock,
        losses: tuple,
        lr: float,
        grad_norm: float,
        masked: int,
        head_rows: int,
    ) -> None:
        wall = clock.stop()
        self.metrics.step(
            StepRecord(
                step=step,
                loss=losses[0],
                mlm_loss=losses[1],
                nsp_loss=losses[2],
                lr=lr,
                grad_norm=grad_norm,
                step_time_s=wall,
                data_time_s=clock.data_s,
                # the ranks move in step (the gradient all-reduce): global batch over step time is
                # the sum of their throughputs
                seq_per_s=self.global_batch / wall,
                model_flops=self.model.training_flops(
                    self.global_batch, self.data.shape.seq_len, head_rows, masked
                ),
                compute_time_s=clock.compute_s,
                cpu_share=clock.cpu_s() / (wall * torch.get_num_threads()),
            )
        )

    def evaluate(self, step: int) -> None:
        if not self.ranks.is_main:  # the others wait for it at their next collective
            return
        results = evaluate(self.model, self.data, self.mode, self.cfg.batch_size, self.cfg.eval_examples)
        self.metrics.evaluation(step, results)
        self.mllog.evaluation(results["eval_mlm_accuracy"], step * self.global_batch, step)

    def save(self, step: int, complete: bool) -> None:
        if not self.ranks.is_main:
            return
        cfg = self.cfg
        state = checkpoint.TrainingState(
            step=step,
            phase=cfg.phase,
            precision=cfg.precision,
            optimizer=self.optimizer.state_dict(),
            rng=torch.get_rng_state(),
            complete=complete,
            config={**trajectory(cfg, self.ranks.world_size), "data_fingerprint": self.data_fingerprint},
        )
        with prepare_backend.full_precision(self.optimizer):
            checkpoint.save(cfg.output / "model_save", self.model, self.model_cfg, state)

    def finish(self, status: Status, error: str | None) -> Status:
        """Close the recorders and write the result (rank 0)."""
        figures = {
            **run_figures(self),
            **self.census.fields(),
            "fp32_gemm": self.route.library,
            "fp32_gemm_reason": self.route.reason,
        }
        self.metrics.close()
        if self.ranks.is_main:  # first: on a full disk the small result may still fit, the log not
            write_result(self.cfg.output, self.result.build(status, error, figures))
        accuracy = figures.get("eval_mlm_accuracy")
        reached = status is Status.OK and accuracy is not None and accuracy >= self.cfg.target_accuracy
        self.mllog.run_stop(reached, figures.get("steps_completed", 0) * self.global_batch)
        self.mllog.close()
        self.ranks.close()
        return status

    def _start_mllog(self, init_ms: int) -> MLPerfLog:
        cfg = self.cfg
        mllog = MLPerfLog(cfg.output / "mllog.txt" if self.ranks.is_main else None, append=cfg.resume)
        platform = cfg.submission_platform or f"{self.context.cpu_model}, {len(self.context.cores)} cores"
        mllog.init(Submission(cfg.submission_org, platform, cfg.submission_division), init_ms)
        mllog.run_start(
            global_batch_size=self.global_batch,
            lr=cfg.learning_rate,
            warmup_steps=cfg.warmup_steps,
            total_steps=cfg.steps,
            weight_decay=cfg.weight_decay,
            betas=BETAS,
            eps=EPS,
            seq_len=self.data.shape.seq_len,
            max_predictions=self.data.shape.max_predictions,
            eval_examples=cfg.eval_examples,
            seed=cfg.seed,
            first_sample=self.start_step * self.global_batch,
        )
        return mllog

    def _announce(self) -> None:
        if not self.ranks.is_main:
            return
        cfg, ranks = self.cfg, self.ranks
        layout = (
            f" ({ranks.world_size} ranks x {cfg.batch_size}, {ranks.backend})" if ranks.distributed else ""
        )
        parameters = sum(p.numel() for p in self.model.parameters())
        print(
            f"phase {cfg.phase} {cfg.precision}: {parameters / 1e6:.1f}M parameters, batch "
            f"{self.global_batch}{layout} x seq {self.data.shape.seq_len}, "
            f"{len(self.data.train)} training slice(s), eval from {self.data.eval_source}",
            file=sys.stderr,
            flush=True,
        )
