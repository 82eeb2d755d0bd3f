"""Does a precision converge like fp32? Judged against fp32's own seed-to-seed spread.

Each precision runs with several seeds (`compare --seeds N`). At every evaluation, fp32's seeds
give a band: their mean and standard deviation. A precision is *equivalent* when two one-sided
t-tests (TOST, Welch's, over the seeds) put its mean within a margin of fp32's, for both the eval
MLM accuracy and the eval loss; *worse* when a one-sided test puts it beyond the margin on the bad
side; otherwise *inconclusive*, with the seeds that would decide it at the gap measured. The
margin is `--equivalence-margin` times fp32's standard deviation at that evaluation: a gap smaller
than a few seeds' noise is not one that fp32 itself can tell apart.

Time to target: the wall time (the steps' own time, evaluations left out) and the steps a run
needs to reach an eval accuracy. The target defaults to the lowest final accuracy among fp32's
seeds, so that every fp32 seed reaches it within its budget. Against fewer than three fp32 seeds,
or where a precision's time (or its miss of the target) lies inside fp32's seed spread, it is
"not judged", with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from harness.errors import HarnessError
from harness.results.records import LOSS_TOLERANCE, Status, mode_label

ALPHA = 0.05
"""Each one-sided test's level (TOST at 0.05 is a 90% confidence interval inside the margin)."""
MARGIN_SD = 3.0
"""The default margin in fp32 standard deviations: with 3 seeds a side, the 90% interval of a
difference is about 1.7 of them wide each way, so a smaller margin could never be met."""
METRICS = {"eval_mlm_accuracy": True, "eval_loss": False}
"""The figures judged, and whether higher is better."""
MAX_SEEDS = 50
"""Beyond this many seeds a side, "inconclusive" names no count."""
MIN_SEEDS = 3
"""fp32 seeds below which no difference from fp32 is judged: with fewer, the seed spread a
difference must exceed is not measured (MARGIN_SD is sized for three)."""


@dataclass(frozen=True)
class Criteria:
    """How convergence is judged: flags of `harness compare` and `harness report`."""

    loss_tolerance: float = LOSS_TOLERANCE
    """A precision converges like fp32 when its final loss is within this share of fp32's (the
    single-seed verdict; with several seeds the equivalence test below decides)."""
    equivalence_margin: float = MARGIN_SD
    """The equivalence margin, in fp32's seed-to-seed standard deviations at each evaluation."""
    target_accuracy: float | None = None
    """The eval MLM accuracy that time to target is measured to (default: the lowest final
    accuracy among fp32's seeds); compare also gives it to every run as its MLPerf target."""

    def validate(self) -> None:
        if not 0 < self.loss_tolerance < 1:
            raise HarnessError(f"--loss-tolerance must be in (0, 1), got {self.loss_tolerance}")
        if not self.equivalence_margin > 0:
            raise HarnessError(
                f"--equivalence-margin must be > 0 standard deviations, got {self.equivalence_margin}"
            )
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise HarnessError(f"--target-accuracy must be in (0, 1], got {self.target_accuracy}")


@dataclass(frozen=True)
class Curve:
    """One run's evaluations and the time its steps took to get to each."""

    run_id: str
    phase: int
    precision: str
    """The mode: bf16, or bf16+fused on another backend than stock (records.mode_label); "fp32"
    for the band's fp32 (PlannedModes.band), whichever its backend."""
    seed: int
    evals: pd.DataFrame
    """step, eval_mlm_accuracy, eval_loss, train_time_s (the steps' wall time up to that step)."""


def load_curves(runs: pd.DataFrame, steps: pd.DataFrame, band: tuple[str, str] | None) -> list[Curve]:
    """The curve of every run that ended ok and evaluated at least once, from the run set's
    steps table (an evaluation shares its row with its step's). Each is labelled by its mode
    (bf16, bf16+fused: two implementations' seeds do not pool), the `band`'s fp32
    (PlannedModes.band) as "fp32"."""
    ok = runs.loc[runs["status"] == Status.OK, "run_id"]
    by_run = runs.set_index("run_id")
    curves = []
    for run_id, rows in steps[steps["run_id"].isin(ok)].groupby("run_id", sort=False):
        rows = rows.sort_values("step")
        elapsed = rows["step_time_s"].cumsum()
        evals = rows["eval_mlm_accuracy"].notna()
        if not evals.any():
            continue
        frame = pd.DataFrame(
            {
                "step": rows.loc[evals, "step"].to_numpy(int),
                "eval_mlm_accuracy": rows.loc[evals, "eval_mlm_accuracy"].to_numpy(float),
                "eval_loss": rows.loc[evals, "eval_loss"].to_numpy(float),
                "train_time_s": elapsed[evals].to_numpy(float),
            }
        )
        first = rows.iloc[0]
        pair = (str(by_run.at[run_id, "precision"]), str(by_run.at[run_id, "backend"]))
        mode = "fp32" if pair == band else mode_label(*pair)
        curves.append(Curve(str(run_id), int(first["phase"]), mode, int(first["repeat"]), frame))
    return curves


@dataclass(frozen=True)
class Judgement:
    """One precision against fp32 on one figure at one evaluation."""

    metric: str
    step: int
    difference: float
    """Mean of the precision minus mean of fp32 (for the loss too: negative is a lower loss)."""
    low: float
    high: float
    """The difference's 90% confidence interval (Welch)."""
    margin: float
    verdict: str
    """"equivalent", "worse", "better" or "inconclusive"."""
    more_seeds: int | None = None
    """For "inconclusive": the seeds to add a side that would decide it if the gap and spread stay
    as measured (None: more than MAX_SEEDS, or under two seeds a side to estimate from)."""

    def text(self) -> str:
        if self.verdict != "inconclusive":
            return self.verdict
        if self.more_seeds is None:
            return "inconclusive"
        return f"inconclusive: {self.more_seeds} more seeds needed"


def judge(
    reference: np.ndarray, other: np.ndarray, margin: float, higher_is_better: bool, metric: str, step: int
) -> Judgement:
    """TOST of `other` against `reference` (fp32's seeds) within +-margin."""
    reference, other = np.asarray(reference, float), np.asarray(other, float)
    difference = float(other.mean() - reference.mean())
    bad = -1.0 if higher_is_better else 1.0  # the direction in which the precision is worse
    if len(reference) < 2 or len(other) < 2:
        return Judgement(metric, step, difference, np.nan, np.nan, margin, "inconclusive")
    if reference.std() == 0 and other.std() == 0:  # no spread: the difference is exact
        verdict = "equivalent" if abs(difference) < margin else "worse" if difference * bad > 0 else "better"
        return Judgement(metric, step, difference, difference, difference, margin, verdict)

    def beyond(sign: float) -> float:  # p of "the difference is past sign * margin"
        side = "greater" if sign > 0 else "less"
        return stats.ttest_ind(other - sign * margin, reference, equal_var=False, alternative=side).pvalue

    inside = max(
        stats.ttest_ind(other + margin, reference, equal_var=False, alternative="greater").pvalue,
        stats.ttest_ind(other - margin, reference, equal_var=False, alternative="less").pvalue,
    )
    low, high = stats.ttest_ind(other, reference, equal_var=False).confidence_interval(1 - 2 * ALPHA)
    if inside < ALPHA:
        verdict = "equivalent"
    elif beyond(bad) < ALPHA:
        verdict = "worse"
    elif beyond(-bad) < ALPHA:
        verdict = "better"
    else:
        verdict = "inconclusive"
    more = _more_seeds(reference, other, margin) if verdict == "inconclusive" else None
    return Judgement(metric, step, difference, float(low), float(high), margin, verdict, more)


def _more_seeds(reference: np.ndarray, other: np.ndarray, margin: float) -> int | None:
    """Seeds to add a side before the 90% interval of the difference, at the gap and spread
    measured, clears the margin (inside it, or past it)."""
    spread = float(np.sqrt((reference.var(ddof=1) + other.var(ddof=1)) / 2))
    room = abs(abs(float(other.mean() - reference.mean())) - margin)
    have = min(len(reference), len(other))
    for n in range(have + 1, MAX_SEEDS + 1):
        if stats.t.ppf(1 - ALPHA, 2 * n - 2) * spread * np.sqrt(2 / n) < room:
            return n - have
    return None


@dataclass(frozen=True)
class Verdict:
    """One precision against fp32 in one phase: every evaluation's judgements, and the end's."""

    phase: int
    precision: str
    seeds: int
    judgements: list[Judgement]

    @property
    def final(self) -> list[Judgement]:
        last = max(j.step for j in self.judgements)
        return [j for j in self.judgements if j.step == last]

    @property
    def verdict(self) -> str:
        """At the last evaluation: worse on either figure is worse; equivalent needs both."""
        verdicts = {j.verdict for j in self.final}
        if "worse" in verdicts:
            return "worse"
        if "inconclusive" in verdicts:
            more = [j.more_seeds for j in self.final if j.verdict == "inconclusive"]
            return f"inconclusive: {max(more)} more seeds needed" if None not in more else "inconclusive"
        return "better" if "better" in verdicts else "equivalent"


def _by_step(curves: list[Curve], metric: str) -> pd.DataFrame:
    """A column per seed, a row per evaluation step that every one of the curves has; no rows
    without curves (fp32 crashed in that phase: the other precisions are still drawn)."""
    if not curves:
        return pd.DataFrame(index=pd.Index([], name="step", dtype=int))
    frame = pd.concat({c.seed: c.evals.set_index("step")[metric] for c in curves}, axis=1)
    return frame.dropna()


def band(curves: list[Curve], phase: int, metric: str) -> pd.DataFrame:
    """fp32's spread at each evaluation: step, mean, sd, low, high over its seeds."""
    frame = _by_step([c for c in curves if c.phase == phase and c.precision == "fp32"], metric)
    return pd.DataFrame(
        {
            "mean": frame.mean(axis=1),
            "sd": frame.std(axis=1, ddof=1) if frame.shape[1] > 1 else 0.0,
            "low": frame.min(axis=1),
            "high": frame.max(axis=1),
        }
    ).rename_axis("step")


def judge_precisions(curves: list[Curve], margin_sd: float = MARGIN_SD) -> list[Verdict]:
    """Every precision but fp32 against fp32, phase by phase, at every shared evaluation."""
    verdicts = []
    for phase in sorted({c.phase for c in curves}):
        ours = [c for c in curves if c.phase == phase]
        reference = [c for c in ours if c.precision == "fp32"]
        if not reference:
            continue
        for precision in sorted({c.precision for c in ours} - {"fp32"}):
            other = [c for c in ours if c.precision == precision]
            judgements = []
            for metric, higher_is_better in METRICS.items():
                a, b = _by_step(reference, metric), _by_step(other, metric)
                for step in a.index.intersection(b.index):
                    ref, oth = a.loc[step].to_numpy(), b.loc[step].to_numpy()
                    margin = margin_sd * (float(np.std(ref, ddof=1)) if len(ref) > 1 else 0.0)
                    judgements.append(judge(ref, oth, margin, higher_is_better, metric, int(step)))
            if judgements:
                verdicts.append(Verdict(phase, precision, len(other), judgements))
    return verdicts


@dataclass(frozen=True)
class TimeToTarget:
    """How long one precision's seeds took to reach an eval accuracy or loss, in one phase."""

    phase: int
    precision: str
    metric: str
    """"eval_mlm_accuracy" (reached at or above the target) or "eval_loss" (at or below it)."""
    target: float
    seeds: int
    reached: int
    """Seeds that reached the target within their budget."""
    steps: float | None
    seconds: float | None
    """Medians over the seeds that reached it: the steps, and the steps' wall time."""
    step_ratio: float | None = None
    time_ratio: float | None = None
    """Against fp32's medians."""
    not_judged: str | None = None
    """Why no claim is made against fp32: too few fp32 seeds, or a difference inside their spread."""

    def text(self) -> str:
        name = _TARGET_NAMES[self.metric]
        if self.not_judged:
            return f"{self.precision}: time to {name} {self.target:.4f} not judged: {self.not_judged}"
        if self.reached == 0:
            return f"{self.precision} does not reach {name} {self.target:.4f} within its budget"
        seeds = "" if self.reached == self.seeds else f" ({self.reached} of {self.seeds} seeds)"
        if self.precision == "fp32" or self.time_ratio is None or self.step_ratio is None:
            took = f"{self.seconds:.1f} s ({self.steps:.0f} steps)"
            return f"{self.precision} reaches {name} {self.target:.4f} in {took}{seeds}"
        return (
            f"{self.precision} reaches fp32's final {name} ({self.target:.4f}) in "
            f"{self.time_ratio:.2f}x the time (steps {self.step_ratio:.2f}x){seeds}"
        )


_TARGET_NAMES = {"eval_mlm_accuracy": "accuracy", "eval_loss": "loss"}


def _reach(curve: Curve, metric: str, target: float) -> tuple[int, float] | None:
    values = curve.evals[metric]
    hit = curve.evals[values >= target if METRICS[metric] else values <= target]
    return None if hit.empty else (int(hit["step"].iloc[0]), float(hit["train_time_s"].iloc[0]))


def _best(curve: Curve, metric: str) -> float:
    values = curve.evals[metric]
    return float(values.max() if METRICS[metric] else values.min())


def _why_not_judged(row: TimeToTarget, fp32: list[Curve], own: list[Curve]) -> str | None:
    """What keeps a precision's time to target from being told apart from fp32's, or None."""
    if len(fp32) < MIN_SEEDS:
        return (
            f"fp32 ran {len(fp32)} seed{'' if len(fp32) == 1 else 's'}; --seeds {MIN_SEEDS} or more "
            "give the seed spread a difference is judged against"
        )
    if not row.reached:
        finals = [float(c.evals[row.metric].iloc[-1]) for c in fp32]
        best = float(np.median([_best(c, row.metric) for c in own]))
        miss, spread = abs(best - row.target), max(finals) - min(finals)
        if miss > spread:
            return None
        return f"its best ({best:.4f}) misses it by {miss:.4f}, inside fp32's seed spread ({spread:.4f})"
    times = [h[1] for h in (_reach(c, row.metric, row.target) for c in fp32) if h is not None]
    if row.seconds is None or not times or not min(times) <= row.seconds <= max(times):
        return None
    return f"its {row.seconds:.1f} s lies inside fp32's seeds' {min(times):.1f}..{max(times):.1f} s"


def _phase_times(ours: list[Curve], metric: str, goal: float) -> list[TimeToTarget]:
    """Each precision's time to `goal` in one phase, fp32 first, judged against fp32's."""
    rows = []
    for precision in sorted({c.precision for c in ours}, key=lambda p: (p != "fp32", p)):
        seeds = [c for c in ours if c.precision == precision]
        hits = [h for h in (_reach(c, metric, goal) for c in seeds) if h is not None]
        steps = float(np.median([h[0] for h in hits])) if hits else None
        seconds = float(np.median([h[1] for h in hits])) if hits else None
        rows.append(
            TimeToTarget(ours[0].phase, precision, metric, goal, len(seeds), len(hits), steps, seconds)
        )
    fp32 = [c for c in ours if c.precision == "fp32"]
    base = next((r for r in rows if r.precision == "fp32" and r.reached), None)
    judged = []
    for r in rows:
        why = (
            None
            if r.precision == "fp32"
            else _why_not_judged(r, fp32, [c for c in ours if c.precision == r.precision])
        )
        if why:
            r = replace(r, not_judged=why)
        elif base is not None and r.reached and r.precision != "fp32":
            r = replace(r, step_ratio=r.steps / base.steps, time_ratio=r.seconds / base.seconds)
        judged.append(r)
    return judged


def times_to_target(
    curves: list[Curve], target: float | None = None, metric: str = "eval_mlm_accuracy"
) -> list[TimeToTarget]:
    """Per phase and precision; the target defaults to fp32's worst final value among its seeds
    (the lowest accuracy, the highest loss): what every fp32 seed reached."""
    worst = min if METRICS[metric] else max
    rows = []
    for phase in sorted({c.phase for c in curves}):
        ours = [c for c in curves if c.phase == phase]
        finals = [c.evals[metric].iloc[-1] for c in ours if c.precision == "fp32"]
        goal = target if target is not None else (float(worst(finals)) if finals else None)
        if goal is not None:
            rows += _phase_times(ours, metric, goal)
    return rows
