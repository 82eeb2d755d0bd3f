"""Step budgets for `harness compare`: what each preset trains, and for how long."""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError


@dataclass(frozen=True)
class Preset:
    """A comparison's workload; every field can be overridden by the compare flag of that name."""

    model: str
    """Named model config or bert_config.json path."""
    steps: tuple[int, int]
    """Optimizer steps in phase 1 and in phase 2."""
    batch_size: tuple[int, int]
    """Sequences per step in phase 1 (seq 128) and phase 2 (seq 512)."""
    learning_rate: tuple[float, float]
    """LAMB peak learning rate per phase."""
    timing_warmup: int
    """Leading steps of each run left out of the throughput statistics."""
    eval_examples: int
    """Evaluation examples per run."""
    synth_examples: int
    """Size of the synthetic data set made when --dataset is not given (seq 128 examples)."""
    timeout_s: float
    """A run still going after this long is stopped and recorded as `timeout`."""
    description: str
    evaluations: int = 1
    """Evaluations per run, evenly spaced, the last at its end: the points of the convergence
    curves that precisions are judged on."""

    def unjudged(self) -> str | None:
        """Why a run set of this preset is not judged for convergence, or None. A preset that
        evaluates each run once (default, smoke) measures speed: a few steps and one evaluation
        say nothing of how a precision converges."""
        if self.evaluations > 1:
            return None
        return (
            f"the preset ({self.description}) evaluates each run once, at its end; "
            "--preset convergence --seeds 3 judges convergence"
        )


PRESETS: dict[str, Preset] = {
    # BERT-Large as the package measured it. Budgets sized so 3 precisions x 2 phases finish in
    # about 30 minutes on a 2-core Xeon (a phase-1 fp32 step takes ~15 s there).
    "default": Preset(
        "bert-large",
        (10, 5),
        (8, 2),
        (1e-3, 5e-4),
        2,
        8,
        1024,
        1800.0,
        "BERT-Large, a few measured steps per run",
    ),
    # CI: every code path, tiny model, seconds per run.
    "smoke": Preset(
        "bert-tiny",
        (20, 10),
        (8, 4),
        (1e-2, 5e-3),
        3,
        16,
        1024,
        300.0,
        "bert-tiny, 20 + 10 steps: does everything run",
    ),
    # Sized for --seeds 3 of three precisions in 30 minutes on 2 cores with native bf16: ten
    # evaluations a run give the curves that fp32's seed band and the equivalence test are read on.
    "convergence": Preset(
        "bert-tiny",
        (300, 50),
        (32, 8),
        # LAMB moves each weight by about lr times its size a step: at 4e-3, below the half-ulp of
        # bf16 (2^-9 to 2^-8 of the value) for most of the schedule, so bf16-pure's updates round
        # away and its loss stalls, while fp32's seeds end within a few hundredths of each other.
        (4e-3, 2e-3),
        5,
        256,
        8192,
        1800.0,
        "bert-tiny, 300 + 50 steps, 10 evaluations a run: do the precisions converge like fp32",
        evaluations=10,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise HarnessError(f"--preset {name}: unknown (known: {', '.join(PRESETS)})") from None
