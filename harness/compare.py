"""`harness compare`: every (phase, precision) in its own process, one at a time, then the tables.

Runs share the machine's cores, so they run one after another; each is a `harness train` child
(which itself starts a worker with the mode's environment). A run that crashes, hangs past the
time-out or diverges is recorded with its status and the tail of its log, and the plan goes on.
Phase 2 of a precision starts from that precision's phase-1 model_save. A model_save nothing
will read any more (phase 2's; phase 1's once its phase-2 runs are done) is deleted unless
--keep-checkpoints: on BERT-Large each is 4 GB of weights and LAMB state.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.metrics import clock
from harness.platform import as_dict, detect
from harness.precision import same_computation_pairs
from harness.presets import Preset
from harness.results.files import PLAN_FILE, plan_exists, read_plan, read_result, write_plan

DONE = ("ok", "invalid", "diverged")
"""Outcomes that --resume keeps; any other run is run again."""


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    phase: int
    precision: str
    repeat: int
    model: str
    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int | None
    checkpoint_of: str | None
    """run_id of the phase-1 run whose model_save this phase-2 run starts from."""
    backend: str = "stock"
    """stock PyTorch or ipex; compared like a precision."""


def make_plan(
    precisions: list[str],
    phases: list[int],
    repeats: int,
    preset: Preset,
    steps: int | None,
    warmup_steps: int | None,
    model: str | None,
    backends: tuple[str, ...] = ("stock",),
) -> list[RunSpec]:
    """Runs in execution order: phase by phase, the precisions interleaved within each, so that
    a machine that drifts (thermals, a neighbour) does not favour one precision."""
    if not precisions or len(set(precisions)) != len(precisions):
        raise HarnessError(f"--precisions {','.join(precisions)}: expected distinct mode names")
    if not set(phases) <= {1, 2} or not phases:
        raise HarnessError(f"--phases {','.join(map(str, phases))}: expected 1, 2 or 1,2")
    if 2 in phases and 1 not in phases:
        raise HarnessError("--phases 2 needs phase 1 in the same plan: phase 2 starts from its model_save")
    if repeats < 1:
        raise HarnessError(f"--repeats must be >= 1, got {repeats}")
    if not backends or len(set(backends)) != len(backends):
        raise HarnessError(f"--backends {','.join(backends)}: expected distinct backend names")

    def run_id(phase: int, precision: str, backend: str, repeat: int) -> str:
        return f"p{phase}-{precision}{'' if backend == 'stock' else '-' + backend}-r{repeat}"

    plan = []
    for repeat in range(repeats):
        for phase in sorted(phases):
            for backend in backends:
                for precision in precisions:
                    plan.append(
                        RunSpec(
                            run_id=run_id(phase, precision, backend, repeat),
                            phase=phase,
                            precision=precision,
                            repeat=repeat,
                            model=model or preset.model,
                            steps=steps or preset.steps[phase - 1],
                            batch_size=preset.batch_size[phase - 1],
                            learning_rate=preset.learning_rate[phase - 1],
                            warmup_steps=warmup_steps,
                            checkpoint_of=run_id(1, precision, backend, repeat) if phase == 2 else None,
                            backend=backend,
                        )
                    )
    return plan


@dataclass
class Outcome:
    run_id: str
    status: str
    """ok, diverged, invalid, failed (the worker reported an error), refused (bad input or a mode
    the machine lacks), crashed (no result), timeout, interrupted, skipped (its phase-1 run did
    not succeed)."""
    exit_code: int | None
    wall_time_s: float
    log_tail: str


class Comparison:
    """One compare output directory: runs/<run_id>/ per run, logs/<run_id>.log, plan.json."""

    def __init__(
        self,
        output: Path,
        dataset: Path,
        preset: Preset,
        plan: list[RunSpec],
        resume: bool,
        extra_args: list[str],
        keep_checkpoints: bool = False,
    ) -> None:
        self.output, self.dataset, self.preset, self.plan = output, dataset, preset, plan
        self.extra_args, self.keep_checkpoints = extra_args, keep_checkpoints
        self.outcomes: dict[str, Outcome] = {}
        if plan_exists(output) and not resume:
            raise HarnessError(
                f"--output {output}: holds a previous comparison; use --resume to "
                "finish it or choose another directory"
            )
        if resume and plan_exists(output):
            saved = read_plan(output)
            if [r["run_id"] for r in saved["runs"]] != [s.run_id for s in plan]:
                raise HarnessError(
                    f"--resume: {output}/{PLAN_FILE} plans other runs; repeat the original flags"
                )
            self.outcomes = {o["run_id"]: Outcome(**o) for o in saved["outcomes"]}
        (output / "runs").mkdir(parents=True, exist_ok=True)
        (output / "logs").mkdir(exist_ok=True)
        platform = detect()
        self.same_computation = same_computation_pairs(
            list(dict.fromkeys(s.precision for s in plan)), platform
        )
        # The flag list is long; its digest (the fingerprint's) is enough to tell two CPUs apart.
        machine = {k: v for k, v in as_dict(platform).items() if k != "flags"}
        (output / "machine.json").write_text(json.dumps(machine, indent=2) + "\n")

    def run_dir(self, run_id: str) -> Path:
        return self.output / "runs" / run_id

    def _save_plan(self) -> None:
        data = {
            "dataset": str(self.dataset),
            "preset": asdict(self.preset),
            "same_computation": self.same_computation,
            "runs": [asdict(s) for s in self.plan],
            "outcomes": [asdict(o) for o in self.outcomes.values()],
        }
        write_plan(self.output, data)

    def run(self) -> int:
        """Run what is not done yet; returns 0, or 130 when interrupted."""
        started = time.perf_counter()
        done_steps = 0
        self._save_plan()
        for a, b in self.same_computation:
            print(
                f"note: {a} and {b} run the same kernels on this CPU (their caps differ only in what it "
                "lacks): expect the same losses, and read their speed difference as noise",
                file=sys.stderr,
                flush=True,
            )
        for i, spec in enumerate(self.plan, start=1):
            previous = self.outcomes.get(spec.run_id)
            if previous and previous.status in DONE:
                print(
                    f"[{i}/{len(self.plan)}] {spec.run_id}: {previous.status} (done before)", file=sys.stderr
                )
                continue
            parent = self.outcomes.get(spec.checkpoint_of) if spec.checkpoint_of else None
            # an invalid run stops at its census step and saves no model
            if spec.checkpoint_of and (parent is None or parent.status != "ok"):
                outcome = Outcome(
                    spec.run_id, "skipped", None, 0.0, f"phase-1 run {spec.checkpoint_of} did not succeed"
                )
            else:
                outcome = self._run_one(i, spec)
            self.outcomes[spec.run_id] = outcome
            self._save_plan()
            if not self.keep_checkpoints:
                self.drop_unread_checkpoints()
            if outcome.status == "interrupted":
                print("interrupted; `--resume` with the same flags finishes the plan", file=sys.stderr)
                return 130
            done_steps += spec.steps * spec.batch_size * (4 if spec.phase == 2 else 1)
            remaining = sum(s.steps * s.batch_size * (4 if s.phase == 2 else 1) for s in self.plan[i:])
            elapsed = time.perf_counter() - started
            eta = elapsed / done_steps * remaining if done_steps else 0.0
            print(
                f"[{i}/{len(self.plan)}] {spec.run_id}: {outcome.status} in {outcome.wall_time_s:.0f} s; "
                f"plan elapsed {clock(elapsed)}, ETA {clock(eta)}",
                file=sys.stderr,
                flush=True,
            )
        return 0

    def drop_unread_checkpoints(self) -> None:
        """Delete the model_save of every done run that no run still to do (or to do again on
        --resume) starts from."""
        unfinished = [
            s
            for s in self.plan
            if s.run_id not in self.outcomes or self.outcomes[s.run_id].status not in DONE
        ]
        needed = {s.checkpoint_of for s in unfinished} | {s.run_id for s in unfinished}
        for spec in self.plan:
            save = self.run_dir(spec.run_id) / "model_save"
            if spec.run_id in needed or not save.exists():
                continue
            # --instances: model_save links to instance 0's
            target = save.resolve()
            size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
            shutil.rmtree(target)
            save.unlink(missing_ok=True)
            print(
                f"{spec.run_id}: deleted its model_save ({size / 2**30:.1f} GiB), which no run of the plan "
                "reads; --keep-checkpoints keeps them",
                file=sys.stderr,
                flush=True,
            )

    def _command(self, spec: RunSpec) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "harness",
            "train",
            "--phase",
            str(spec.phase),
            "--precision",
            spec.precision,
            "--dataset",
            str(self.dataset),
            "--output",
            str(self.run_dir(spec.run_id)),
            "--steps",
            str(spec.steps),
            "--batch-size",
            str(spec.batch_size),
            "--learning-rate",
            str(spec.learning_rate),
            "--timing-warmup",
            str(self.preset.timing_warmup),
            "--eval-examples",
            str(self.preset.eval_examples),
            "--seed",
            str(42 + spec.repeat),
            "--log-every",
            str(max(1, spec.steps // 10)),
            "--backend",
            spec.backend,
        ]
        if spec.phase == 1:
            cmd += ["--model", spec.model]
        else:
            cmd += ["--checkpoint", str(self.run_dir(spec.checkpoint_of) / "model_save")]
        if spec.warmup_steps is not None:
            cmd += ["--warmup-steps", str(spec.warmup_steps)]
        return cmd + self.extra_args

    def _run_one(self, index: int, spec: RunSpec) -> Outcome:
        directory = self.run_dir(spec.run_id)
        shutil.rmtree(directory, ignore_errors=True)  # a partial earlier attempt starts over
        log_path = self.output / "logs" / f"{spec.run_id}.log"
        prefix = f"[{index}/{len(self.plan)} {spec.run_id}]"
        tail: collections.deque[str] = collections.deque(maxlen=20)
        start = time.perf_counter()
        # Its own process group: on a time-out the run's worker (a grandchild) must go too, or it
        # would keep the log pipe open and the comparison would wait for it for ever.
        child = subprocess.Popen(
            self._command(spec),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        timed_out = threading.Event()

        def stop_at_timeout() -> None:
            timed_out.set()
            child.send_signal(signal.SIGTERM)  # the worker checkpoints and exits ...
            try:
                child.wait(min(30.0, self.preset.timeout_s))
            except subprocess.TimeoutExpired:  # ... unless it is hung for real
                os.killpg(child.pid, signal.SIGKILL)

        timer = threading.Timer(self.preset.timeout_s, stop_at_timeout)
        timer.start()
        interrupted = False
        try:
            with log_path.open("w") as log:
                for line in child.stdout:  # type: ignore[union-attr]
                    log.write(line)
                    log.flush()
                    tail.append(line.rstrip())
                    print(f"{prefix} {line.rstrip()}", file=sys.stderr, flush=True)
            code = child.wait()
        except KeyboardInterrupt:
            # The run sits in its own session, away from the terminal's Ctrl-C: pass it on.
            interrupted = True
            child.send_signal(signal.SIGINT)
            code = child.wait()
        finally:
            timer.cancel()
        status = _status(directory, code, timed_out.is_set(), interrupted)
        return Outcome(spec.run_id, status, code, time.perf_counter() - start, "\n".join(tail))


def _status(directory: Path, code: int, timed_out: bool, interrupted: bool) -> str:
    if timed_out:
        return "timeout"
    if interrupted or code == 130:
        return "interrupted"
    result = read_result(directory)
    if result is not None:
        return result["status"]
    # exit 2 without a result: `harness train` refused before any work (its log says why)
    return "refused" if code == 2 else "crashed"
