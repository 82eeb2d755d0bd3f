"""The report's convergence section: curves over fp32's seed band, verdicts, time to target."""

from __future__ import annotations

import pandas as pd

from harness.reports.charts import Series, line_chart
from harness.reports.htmlkit import esc
from harness.results.convergence import (
    METRICS,
    MIN_SEEDS,
    Criteria,
    Curve,
    band,
    judge_precisions,
    load_curves,
    times_to_target,
)
from harness.results.records import PlannedModes, mode_label

LABELS = {"eval_mlm_accuracy": "eval MLM accuracy", "eval_loss": "eval loss (MLM + NSP, nats)"}
VERDICT_CLASS = {"equivalent": "good", "better": "good", "worse": "bad"}


def _chart(curves: list[Curve], phase: int, metric: str, colors: dict[str, str]) -> str:
    ours = [c for c in curves if c.phase == phase]
    series = []
    fp32 = band(curves, phase, metric)
    if len(fp32):
        series.append(
            Series(
                "fp32 (seed band: min..max)",
                colors.get("fp32", "#333"),
                fp32.index.tolist(),
                fp32["mean"].tolist(),
                low=fp32["low"].tolist(),
                high=fp32["high"].tolist(),
                band=True,
            )
        )
    for precision in sorted({c.precision for c in ours} - {"fp32"}):
        for c in (c for c in ours if c.precision == precision):
            series.append(
                Series(
                    f"{precision} seed {c.seed}",
                    colors.get(precision, "#999"),
                    c.evals["step"].tolist(),
                    c.evals[metric].tolist(),
                    markers=True,
                )
            )
    return line_chart(
        f"conv-{metric}-phase{phase}",
        series,
        "optimizer step",
        LABELS[metric],
        note="shaded: fp32's seeds, from the lowest to the highest; line: their mean"
        if len(fp32)
        else "no fp32 run evaluated in this phase: nothing to judge the others against",
    )


def _verdict_table(verdicts) -> str:
    rows = []
    for v in verdicts:
        cells = []
        for metric in METRICS:
            j = next((j for j in v.final if j.metric == metric), None)
            if j is None:
                cells.append("<td>-</td>")
                continue
            cls = VERDICT_CLASS.get(j.verdict, "muted")
            cells.append(
                f'<td>{j.difference:+.4f} <span class="muted">[{j.low:+.4f}, {j.high:+.4f}] '
                f'margin {j.margin:.4f}</span> <span class="{cls}">{esc(j.text())}</span></td>'
            )
        cls = VERDICT_CLASS.get(v.verdict.split(":")[0], "muted")
        rows.append(
            f'<tr><td class="l">p{v.phase} {esc(v.precision)}</td><td>{v.seeds}</td>{"".join(cells)}'
            f'<td class="{cls}">{esc(v.verdict)}</td></tr>'
        )
    head = "".join(f"<th>{esc(LABELS[m])}: difference [90% CI]</th>" for m in METRICS)
    return (
        f'<table id="equivalence"><tr><th class="l">run</th><th>seeds</th>{head}<th>verdict</th></tr>'
        f"{''.join(rows)}</table>"
    )


def _per_evaluation(verdicts) -> str:
    items = []
    for v in verdicts:
        steps = sorted({j.step for j in v.judgements})
        words = []
        for step in steps:
            here = {j.metric: j.verdict for j in v.judgements if j.step == step}
            words.append(f"{step}: " + "/".join(here.get(m, "-") for m in METRICS))
        items.append(f"<li>p{v.phase} {esc(v.precision)} (accuracy/loss) {esc('; '.join(words))}</li>")
    return f'<ul id="equivalence-steps" class="muted">{"".join(items)}</ul>'


def _judged(curves: list[Curve], criteria: Criteria) -> str:
    """The equivalence verdicts, given MIN_SEEDS fp32 seeds in the first phase."""
    first = min(c.phase for c in curves)
    seeds = sum(1 for c in curves if c.precision == "fp32" and c.phase == first)
    if seeds < MIN_SEEDS:
        return (
            f'<p class="muted">Not judged: fp32 ran {seeds} seed{"" if seeds == 1 else "s"} here; '
            f"--seeds {MIN_SEEDS} or more give its band and a verdict.</p>"
        )
    verdicts = judge_precisions(curves, criteria.equivalence_margin)
    if not verdicts:
        return ""
    return (
        f'<p class="muted">Two one-sided Welch t-tests over the seeds (0.05 each) at every evaluation; '
        f"the margin is {criteria.equivalence_margin:g} times fp32's seed-to-seed standard deviation "
        "there. Equivalent needs both figures inside it at the last evaluation.</p>"
        f"{_verdict_table(verdicts)}{_per_evaluation(verdicts)}"
    )


def _targets(curves: list[Curve], criteria: Criteria) -> str:
    # accuracy and loss: at a plateau of the accuracy (a model that predicts the commonest
    # tokens) the loss still tells the precisions apart
    targets = times_to_target(curves, criteria.target_accuracy) + times_to_target(curves, metric="eval_loss")
    items = "".join(f"<li>p{t.phase}: {esc(t.text())}</li>" for t in targets)
    return (
        f'<h3>Time to target</h3><ul id="time-to-target">{items}</ul>'
        '<p class="muted">Time: the training steps\' own wall time, evaluations left out; medians over '
        "the seeds that reach the target.</p>"
    )


def section(
    runs: pd.DataFrame, steps: pd.DataFrame, colors: dict[str, str], criteria: Criteria, unjudged: str | None
) -> str:
    """Empty when no run evaluated; otherwise the charts, and unless `unjudged` says why the run
    set is not judged at all, the equivalence verdicts and the time to target."""
    base = PlannedModes.of(runs).band()
    curves = load_curves(runs, steps, base)
    if not curves:
        return ""
    phases = sorted({c.phase for c in curves})
    charts = "".join(
        f"<h3>Phase {p}: {esc(LABELS[m])}</h3>{_chart(curves, p, m, colors)}" for p in phases for m in METRICS
    )
    if unjudged:
        judged = f'<div id="judged"><p class="muted">Convergence not judged: {esc(unjudged)}.</p></div>'
    else:
        judged = f'<div id="judged">{_judged(curves, criteria)}</div>{_targets(curves, criteria)}'
    named = "" if base is None or base[1] == "stock" else f" ({esc(mode_label(*base))}, labelled fp32)"
    return f"<h2>Convergence against fp32's seeds{named}</h2>{charts}{judged}"
