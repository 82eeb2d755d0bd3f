"""`harness compare`: every (phase, precision) in its own process, one at a time, then the tables.

Runs share the machine's cores, so they run one after another; each is a worker started with
its mode's environment (harness.launch), as `harness train` starts one. A run that is
refused, crashes, hangs past the time-out or diverges is recorded with its status and the tail
of its log, and the plan goes on.
Phase 2 of a precision starts from that precision's phase-1 model_save. A model_save nothing
will read any more (phase 2's; phase 1's once its phase-2 runs are done) is deleted unless
--keep-checkpoints: on BERT-Large each is 4 GB of weights and LAMB state.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from harness.errors import HarnessError
from harness.files import DISK_FULL_EXIT, check_folder, folder_lock
from harness.launch.launchers import LaunchOptions
from harness.launch.runner import Log
from harness.machine.platform import as_dict, detect
from harness.plan.plan import Outcome, Plan, RunSpec
from harness.plan.presets import Preset
from harness.precision.modes import get_precision, same_computation_pairs
from harness.results.files import PLAN_FILE, plan_exists, read_plan, read_result, write_machine, write_plan
from harness.results.records import Status
from harness.train import backends
from harness.train.metrics import clock
from harness.train.start import start_training

DONE = (Status.OK, Status.INVALID, Status.DIVERGED)
"""Outcomes that --resume keeps; any other run is run again."""


class Comparison:
    """One compare output directory: runs/<run_id>/ per run, logs/<run_id>.log, plan.json."""

    def __init__(
        self,
        output: Path,
        dataset: Path,
        preset: Preset,
        plan: list[RunSpec],
        resume: bool,
        options: LaunchOptions,
        train_settings: dict[str, object],
        keep_checkpoints: bool = False,
    ) -> None:
        """`options` and `train_settings` (TrainConfig fields) reach every run of the plan alike."""
        self.output, self.dataset, self.preset, self.plan = output, dataset, preset, plan
        self.options, self.train_settings, self.keep_checkpoints = options, train_settings, keep_checkpoints
        self.outcomes: dict[str, Outcome] = {}
        check_output(output, resume)
        if resume:
            saved = read_plan(output)
            _require_same_plan(output, saved.runs, plan)
            self.outcomes = {o.run_id: o for o in saved.outcomes}
        platform = detect()
        self.machine_key = platform.key()
        self.same_computation = same_computation_pairs(
            list(dict.fromkeys(s.precision for s in plan)), platform
        )
        self._save_plan()  # first: what else the folder gets, its plan.json marks as the harness's
        (output / "runs").mkdir(exist_ok=True)
        (output / "logs").mkdir(exist_ok=True)
        # The flag list is long; its digest (the fingerprint's) is enough to tell two CPUs apart.
        machine = {k: v for k, v in as_dict(platform).items() if k != "flags"}
        write_machine(output, machine)

    def run_dir(self, run_id: str) -> Path:
        return self.output / "runs" / run_id

    def _save_plan(self) -> None:
        outcomes = list(self.outcomes.values())
        write_plan(self.output, Plan(self.dataset, self.preset, self.plan, outcomes, self.same_computation))

    def run(self) -> int:
        """Run what is not done yet; returns 0, or 130 when interrupted."""
        started = time.perf_counter()
        done_steps = 0
        backends.build({s.backend for s in self.plan}, self.machine_key)
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
            if spec.checkpoint_of and (parent is None or parent.status != Status.OK):
                why = f"phase-1 run {spec.checkpoint_of} did not succeed"
                outcome = Outcome(spec.run_id, Status.SKIPPED, None, 0.0, why)
            else:
                outcome = self._run_one(i, spec)
            self.outcomes[spec.run_id] = outcome
            self._save_plan()
            if not self.keep_checkpoints:
                self.drop_unread_checkpoints()
            if outcome.exit_code == DISK_FULL_EXIT:
                where = (
                    outcome.log_tail.splitlines()[-1].removeprefix("harness: ") if outcome.log_tail else ""
                )
                raise HarnessError(
                    f"{spec.run_id}: {where or 'no space left on the device'}; the comparison stops "
                    "here: free some space and `--resume` with the same flags",
                    DISK_FULL_EXIT,
                )
            if outcome.status is Status.INTERRUPTED:
                print("interrupted; `--resume` with the same flags finishes the plan", file=sys.stderr)
                return Status.INTERRUPTED.exit_code
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

    def _run_one(self, index: int, spec: RunSpec) -> Outcome:
        directory = self.run_dir(spec.run_id)
        with folder_lock(directory, "run"):  # the worker of an earlier attempt may still be stopping
            pass
        shutil.rmtree(directory, ignore_errors=True)  # a partial earlier attempt starts over
        log = Log(self.output / "logs" / f"{spec.run_id}.log", f"[{index}/{len(self.plan)} {spec.run_id}]")
        start = time.perf_counter()
        try:
            cfg = spec.train_config(self.dataset, self.output / "runs", self.preset, **self.train_settings)
            done = start_training(
                cfg, get_precision(spec.precision), self.options, log, self.preset.timeout_s
            )
        except HarnessError as exc:
            # refused before any work: a mode this CPU cannot run, settings that cannot train
            message = f"harness: {exc}"
            log.path.write_text(message + "\n")
            print(f"{log.prefix} {message}", file=sys.stderr, flush=True)
            return Outcome(spec.run_id, Status.REFUSED, exc.exit_code, time.perf_counter() - start, message)
        if done.timed_out:
            status = Status.TIMEOUT
        elif done.interrupted or Status.of_exit(done.code) is Status.INTERRUPTED:
            status = Status.INTERRUPTED
        else:
            result = read_result(directory)
            status = result.status if result is not None else Status.of_exit(done.code)
        return Outcome(spec.run_id, status, done.code, time.perf_counter() - start, done.tail)


def check_output(output: Path, resume: bool) -> None:
    """--output is new, empty, or (with --resume, and only then) a comparison's own folder: a
    folder the harness did not write is never written into, and --resume needs a plan to finish."""
    check_folder(output, "--output")
    if plan_exists(output):
        if not resume:
            raise HarnessError(
                f"--output {output}: holds a previous comparison; use --resume to "
                "finish it or choose another directory"
            )
    elif resume:
        raise HarnessError(f"--resume: {output} holds no {PLAN_FILE}; there is no comparison to finish")
    elif output.is_dir() and any(output.iterdir()):
        raise HarnessError(
            f"--output {output}: is not empty and holds no comparison (no {PLAN_FILE}); "
            "choose a new or empty directory"
        )


def _require_same_plan(output: Path, saved: list[RunSpec], plan: list[RunSpec]) -> None:
    """--resume with other flags would mix runs of different settings in one comparison."""
    if [r.run_id for r in saved] != [s.run_id for s in plan]:
        raise HarnessError(f"--resume: {output}/{PLAN_FILE} plans other runs; repeat the original flags")
    for saved_spec, spec in zip(saved, plan, strict=True):
        old, new = asdict(saved_spec), asdict(spec)
        changed = [k for k in new if old.get(k) != new[k]]
        if changed:
            k = changed[0]
            raise HarnessError(
                f"--resume: run {spec.run_id} has {k.replace('_', '-')} {new[k]}, but {output}/{PLAN_FILE} "
                f"planned {old.get(k)}; repeat the original flags"
            )
