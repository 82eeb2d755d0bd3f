"""The configuration of one training run, validated in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, get_args

from harness.errors import HarnessError
from harness.files import check_folder
from harness.results.records import METRICS_FILE, RESULT_FILE

Fp32Gemm = Literal["auto", "mkl", "onednn"]
"""Where fp32 GEMMs go (harness.precision.gemm_route): declared here, so that checking a flag
loads no route."""


def check_fp32_gemm(requested: str) -> None:
    """Refuse a --fp32-gemm that is not a Fp32Gemm (train's and bench peer's flag alike)."""
    *first, last = get_args(Fp32Gemm)
    if requested not in (*first, last):
        raise HarnessError(f"--fp32-gemm must be {', '.join(first)} or {last}, got {requested}")


PHASE_DEFAULTS = {
    # Intel's package: phase 1 at max_seq_len 128, phase 2 at 512 from phase 1's model_save.
    # Batch sizes: a BERT-Large step of a few seconds on a small Xeon at either length. Learning
    # rates suit runs of hundreds of steps at these batch sizes, not MLPerf's time-to-accuracy.
    1: {"batch_size": 8, "learning_rate": 1e-3},
    2: {"batch_size": 2, "learning_rate": 5e-4},
}


RUN_FILES = (RESULT_FILE, METRICS_FILE, "model_save")
"""What a run writes into its folder from its first step on: a folder holding one is a run."""


@dataclass
class TrainConfig:
    """Everything `harness train` needs; recorded verbatim in the run's result."""

    phase: int
    """1 (seq 128, first part of the data) or 2 (seq 512, the rest, from a phase-1 checkpoint)."""
    precision: str
    """Precision mode: fp32, avx-fp32, bf16, ... or a mode of $HARNESS_PRECISION_FILE (`harness
    detect` lists them and how each runs here)."""
    dataset: Path
    """DATASET_DIR with seq_128/, seq_512/ and optionally eval/."""
    output: Path
    """Run directory to write: result.json, metrics.jsonl, mllog.txt, model_save/."""
    model: str | None = None
    """A named config or a bert_config.json path (phase 1 default: bert-large); phase 2 takes the
    checkpoint's architecture, and a --model given there must match it. A TensorFlow checkpoint
    holds none: --model gives it, else the bert_config.json beside it or in the folder above."""
    checkpoint: Path | None = None
    """Phase 2 only: the model_save directory a phase-1 run (or `harness convert-checkpoint`)
    wrote, or a TensorFlow checkpoint's prefix, such as MLCommons' tf1_ckpt/model.ckpt-28252."""
    steps: int = 100
    """Optimizer steps to run."""
    batch_size: int | None = None
    """Sequences per step, per rank (default: 8 in phase 1, 2 in phase 2)."""
    learning_rate: float | None = None
    """LAMB peak learning rate (default: 1e-3 in phase 1, 5e-4 in phase 2)."""
    warmup_steps: int | None = None
    """Linear learning-rate warm-up steps (default: 10% of the steps)."""
    weight_decay: float = 0.01
    """LAMB weight decay (not applied to biases and LayerNorm)."""
    eval_every: int = 0
    """Evaluate every K steps (0: only at the end)."""
    eval_examples: int = 256
    """Evaluation examples (from eval/, else held out of the phase's last slice)."""
    phase_fraction: float = 0.9
    """Share of the ordered shard list phase 1 trains on; phase 2 takes the rest."""
    seed: int = 42
    """Seeds weights, dropout and data order."""
    resume: bool = False
    """Continue the run in `output` from its last checkpoint."""
    save_every: int = 0
    """Write model_save every K steps as well as at the end (0: only at the end)."""
    data_workers: int = 1
    """Background DataLoader processes that read and batch the TFRecords (0: in-process)."""
    timing_warmup: int = 5
    """Leading steps left out of the throughput statistics (allocator and JIT warm-up)."""
    log_every: int = 10
    """Print a progress line every K steps."""
    shuffle_buffer: int = 2048
    """Examples each data shard holds for shuffling; 0 or 1 reads them in record order."""
    compile: bool = False
    """Run the model's forward through torch.compile (inductor); the first steps then include the
    compilation, so give a larger --timing-warmup."""
    fp32_gemm: Fp32Gemm = "auto"
    """Where fp32 GEMMs go: mkl (stock PyTorch), onednn, or auto, the faster of the two in this
    machine's stored fp32 roofline (harness.precision.gemm_route; MKL wherever AMX is usable)."""
    backend: str = "stock"
    """stock PyTorch; fused: the same model and GEMMs with the work around them in the harness's
    own kernels, compiled for this CPU on first use (harness.kernels); or ipex:
    intel-extension-for-pytorch's ipex.optimize on model and optimizer."""
    dist_backend: str = "auto"
    """Process-group backend when torchrun starts several ranks: auto (ccl if oneCCL's bindings
    import, else gloo), gloo or ccl."""
    contention_threshold: float = 0.9
    """A run whose timed steps had less than this share of their cores (the rest went to other
    processes or was stolen by the hypervisor) is marked contended (harness.machine.contention)."""
    target_accuracy: float = 0.720
    """Eval MLM accuracy at which the MLPerf log's run_stop says success (else aborted): MLPerf's
    BERT target."""
    submission_org: str = "unknown"
    """The MLPerf log's submission_org: who ran it."""
    submission_platform: str | None = None
    """The MLPerf log's submission_platform (default: the CPU model and the run's core count)."""
    submission_division: str = "open"
    """The MLPerf log's submission_division: open or closed."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (paths as strings): what the job file and result.json hold."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        paths = {f.name for f in fields(cls) if "Path" in str(f.type)}
        return cls(**{k: Path(v) if k in paths and v is not None else v for k, v in data.items()})

    def refuse_previous_run(self) -> None:
        """--output is a folder; a run that is not resumed starts in an empty (or new) one."""
        if not self.output.exists():
            return
        if not self.output.is_dir():
            raise HarnessError(f"--output {self.output}: is a file; expected a directory for the run")
        if self.resume or not any(self.output.iterdir()):
            return
        if any((self.output / name).exists() for name in RUN_FILES):
            raise HarnessError(
                f"--output {self.output}: holds a previous run; use an empty directory or --resume"
            )
        raise HarnessError(
            f"--output {self.output}: is not empty and holds no run of this harness (no "
            f"{', '.join(RUN_FILES)}); use a new or empty directory"
        )

    def validate(self) -> None:
        """Fill the phase defaults and refuse what cannot run, one clear line per problem."""
        if self.phase not in PHASE_DEFAULTS:
            raise HarnessError(f"--phase must be 1 or 2, got {self.phase}")
        defaults = PHASE_DEFAULTS[self.phase]
        if self.batch_size is None:
            self.batch_size = defaults["batch_size"]
        if self.learning_rate is None:
            self.learning_rate = defaults["learning_rate"]
        if self.warmup_steps is None:
            self.warmup_steps = round(0.1 * self.steps)
        positive = {
            "--steps": self.steps,
            "--batch-size": self.batch_size,
            "--eval-examples": self.eval_examples,
            "--log-every": self.log_every,
        }
        for flag, value in positive.items():
            if value < 1:
                raise HarnessError(f"{flag} must be >= 1, got {value}")
        non_negative = {
            "--warmup-steps": self.warmup_steps,
            "--eval-every": self.eval_every,
            "--save-every": self.save_every,
            "--data-workers": self.data_workers,
            "--timing-warmup": self.timing_warmup,
            "--shuffle-buffer": self.shuffle_buffer,
        }
        for flag, value in non_negative.items():
            if value < 0:
                raise HarnessError(f"{flag} must be >= 0, got {value}")
        if self.warmup_steps > self.steps:
            raise HarnessError(f"--warmup-steps {self.warmup_steps} exceeds --steps {self.steps}")
        if not 0 < self.contention_threshold <= 1:
            raise HarnessError(f"--contention-threshold must be in (0, 1], got {self.contention_threshold}")
        if not 0 < self.phase_fraction < 1:
            raise HarnessError(f"--phase-fraction must be in (0, 1), got {self.phase_fraction}")
        if not 0 < self.target_accuracy <= 1:
            raise HarnessError(f"--target-accuracy must be in (0, 1], got {self.target_accuracy}")
        check_fp32_gemm(self.fp32_gemm)
        if self.submission_division not in ("open", "closed"):
            raise HarnessError(
                f"--submission-division must be open or closed, got {self.submission_division}"
            )
        if not self.submission_org.strip() or self.submission_platform == "":
            raise HarnessError("--submission-org and --submission-platform must not be empty")
        if not self.learning_rate > 0:
            raise HarnessError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if not self.weight_decay >= 0:
            raise HarnessError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.seed < 2**32:  # the range numpy's and the DataLoader's seeding take
            raise HarnessError(f"--seed must be in [0, 2**32), got {self.seed}")
        check_folder(self.output, "--output")
        if self.phase == 2 and self.checkpoint is None:
            raise HarnessError(
                "phase 2 needs --checkpoint DIR: the model_save directory of a "
                "phase-1 run (OUTPUT_DIR/model_save)"
            )
        if self.phase == 1 and self.checkpoint is not None:
            raise HarnessError("--checkpoint is for phase 2; phase 1 starts from random weights")
