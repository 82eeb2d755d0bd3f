"""What `harness compare` runs: its settings, and the plan of runs they make."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.files import check_folder
from harness.plan.presets import Preset, get_preset
from harness.precision.modes import load_modes
from harness.results.records import Status
from harness.train.backends import mode_problem
from harness.train.config import TrainConfig

AUTO_BACKEND = "auto"
"""--backends' default: fused, and stock for a mode fused cannot run."""


@dataclass(frozen=True)
class CompareConfig:
    """A comparison's settings; every field is a `harness compare` flag."""

    precisions: str = "fp32,avx-fp32,bf16"
    """Comma-separated precision modes."""
    phases: str = "1,2"
    """1, 2 or 1,2 (phase 2 starts from phase 1's model_save)."""
    backends: str = AUTO_BACKEND
    """stock, fused, ipex, or several (stock,fused): compared like precisions. auto: fused (our
    kernels around the same oneDNN/MKL GEMMs, docs/fused.md), and stock for a mode fused cannot
    run (bf16-pure: fused keeps fp32 master weights)."""
    preset: str = "default"
    """The workload: default (BERT-Large), smoke (bert-tiny, seconds a run), convergence."""
    model: str | None = None
    """Override the preset's model."""
    dataset: Path | None = None
    """DATASET_DIR (default: synthetic data, made once and cached)."""
    steps: int | None = None
    """Override the preset's steps (each phase)."""
    warmup_steps: int | None = None
    """Learning-rate warm-up steps per run (default: 10% of its steps)."""
    seeds: int = 1
    """Run the whole plan N times, interleaved, with seeds 42, 43, ...: fp32's seeds are the band
    the other precisions' convergence is judged against, and each is one more independent
    process of every mode for the speed statistics."""
    output: Path = Path("runs/compare")
    """The comparison's folder: runs/, logs/, plan.json, runs.csv, steps.csv, report.html."""
    resume: bool = False
    """Finish an interrupted comparison in --output (with the same flags)."""
    timeout: float | None = None
    """Seconds after which a run is stopped as `timeout` (default: the preset's)."""
    keep_checkpoints: bool = False
    """Keep every run's model_save (default: delete those no run of the plan reads)."""
    roofline_size: int = 4096
    """The matrix size of the matmul peak compare measures first for a mode this machine has none
    stored for (as `harness roofline --size`): every report's MFU divides by it."""

    def workload(self) -> Preset:
        """The preset, with --timeout applied. Refuses, naming the flag, what would otherwise
        give a plan of runs that all fail."""
        preset = get_preset(self.preset)
        if self.timeout is not None:
            if self.timeout <= 0:
                raise HarnessError(f"--timeout must be > 0 seconds, got {self.timeout}")
            preset = replace(preset, timeout_s=self.timeout)
        if self.steps is not None and self.steps < 1:
            raise HarnessError(f"--steps must be >= 1, got {self.steps}")
        if self.steps is not None and self.steps <= preset.timing_warmup:
            # Every step would be cold: the tables, report and gate would compare warm-up.
            raise HarnessError(
                f"--steps {self.steps} leaves no timed step: preset {self.preset} leaves each run's "
                f"first {preset.timing_warmup} steps out of the statistics; give --steps above it"
            )
        if self.roofline_size < 64:
            raise HarnessError(f"--roofline-size must be >= 64, got {self.roofline_size}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise HarnessError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        check_folder(self.output, "--output")
        if self.dataset is not None and not self.dataset.is_dir():
            raise HarnessError(f"--dataset {self.dataset}: no such directory")
        known = load_modes()
        unknown = [p for p in self.precisions.split(",") if p and p not in known]
        if unknown:
            raise HarnessError(f"--precisions {unknown[0]}: unknown mode (known: {', '.join(known)})")
        return preset


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
    """stock PyTorch, fused or ipex; compared like a precision."""

    def train_config(self, dataset: Path, runs: Path, preset: Preset, **settings: object) -> TrainConfig:
        """The run's TrainConfig: the plan's choices, the preset's measuring settings, and the
        compare flags that reach every run (`settings`)."""
        return TrainConfig(
            phase=self.phase,
            precision=self.precision,
            dataset=dataset,
            output=runs / self.run_id,
            model=self.model if self.phase == 1 else None,
            checkpoint=runs / self.checkpoint_of / "model_save" if self.checkpoint_of else None,
            steps=self.steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            warmup_steps=self.warmup_steps,
            timing_warmup=preset.timing_warmup,
            eval_examples=preset.eval_examples,
            seed=42 + self.repeat,
            log_every=max(1, self.steps // 10),
            eval_every=max(1, self.steps // preset.evaluations) if preset.evaluations > 1 else 0,
            backend=self.backend,
            **settings,  # type: ignore[arg-type]
        )


@dataclass
class Outcome:
    run_id: str
    status: Status
    """The worker's own status from its result, else refused (bad input or a mode the machine
    lacks), crashed (no result), timeout, interrupted or skipped (its phase-1 run did not
    succeed)."""
    exit_code: int | None
    wall_time_s: float
    log_tail: str

    def __post_init__(self) -> None:
        self.status = Status(self.status)  # plan.json holds its value


@dataclass(frozen=True)
class Plan:
    """A comparison's plan.json: its data, preset and runs, and how each run has ended so far."""

    dataset: Path
    preset: Preset
    runs: list[RunSpec]
    outcomes: list[Outcome] = field(default_factory=list)
    same_computation: list[tuple[str, str]] = field(default_factory=list)
    """The pairs of its modes that run the same kernels on its machine."""

    def outcome(self, run_id: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.run_id == run_id), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": str(self.dataset),
            "preset": asdict(self.preset),
            "same_computation": [list(pair) for pair in self.same_computation],
            "runs": [asdict(s) for s in self.runs],
            "outcomes": [asdict(o) for o in self.outcomes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """The plan `to_dict` wrote; raises TypeError or ValueError for one it did not."""
        return cls(
            Path(data["dataset"]),
            _typed(Preset, data["preset"]),
            [_typed(RunSpec, s) for s in data["runs"]],
            [_typed(Outcome, o) for o in data["outcomes"]],
            [(a, b) for a, b in data.get("same_computation", [])],
        )


def _typed(cls: type, data: dict[str, Any]) -> Any:
    """A dataclass from its JSON fields: lists back to tuples; a field a later version added is
    left out, one an earlier version lacked takes its default."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


def _run_id(phase: int, precision: str, backend: str, repeat: int) -> str:
    return f"p{phase}-{precision}{'' if backend == 'stock' else '-' + backend}-r{repeat}"


def make_plan(cfg: CompareConfig, preset: Preset) -> list[RunSpec]:
    """Runs in execution order: phase by phase, the precisions interleaved within each, so that
    a machine that drifts (thermals, a neighbour) does not favour one precision."""
    precisions = [p for p in cfg.precisions.split(",") if p]
    backends = [b for b in cfg.backends.split(",") if b]
    try:
        phases = sorted(int(p) for p in cfg.phases.split(","))
    except ValueError:
        raise HarnessError(f"--phases {cfg.phases}: expected 1, 2 or 1,2") from None
    if not precisions or len(set(precisions)) != len(precisions):
        raise HarnessError(f"--precisions {cfg.precisions}: expected distinct mode names")
    if not set(phases) <= {1, 2} or not phases or len(set(phases)) != len(phases):
        raise HarnessError(f"--phases {cfg.phases}: expected 1, 2 or 1,2")
    if 2 in phases and 1 not in phases:
        raise HarnessError("--phases 2 needs phase 1 in the same plan: phase 2 starts from its model_save")
    if cfg.seeds < 1:
        raise HarnessError(f"--seeds must be >= 1, got {cfg.seeds}")
    if not backends or len(set(backends)) != len(backends):
        raise HarnessError(f"--backends {cfg.backends}: expected distinct backend names")
    pairs = [(b, p) for b in backends for p in precisions]
    if backends == [AUTO_BACKEND]:
        modes = load_modes()
        pairs = [
            ("stock" if p in modes and mode_problem("fused", modes[p]) else "fused", p) for p in precisions
        ]
    return [
        RunSpec(
            run_id=_run_id(phase, precision, backend, repeat),
            phase=phase,
            precision=precision,
            repeat=repeat,
            model=cfg.model or preset.model,
            steps=cfg.steps or preset.steps[phase - 1],
            batch_size=preset.batch_size[phase - 1],
            learning_rate=preset.learning_rate[phase - 1],
            warmup_steps=cfg.warmup_steps,
            checkpoint_of=_run_id(1, precision, backend, repeat) if phase == 2 else None,
            backend=backend,
        )
        for repeat in range(cfg.seeds)
        for phase in phases
        for backend, precision in pairs
    ]
