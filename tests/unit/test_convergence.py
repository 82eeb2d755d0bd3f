"""Convergence against fp32's seeds: the equivalence test, time to target, and the report section,
on curves made here (the figures of a real convergence run are in docs/results.md#zen-4-convergence)."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.plan.plan import Plan, RunSpec
from harness.plan.presets import get_preset
from harness.reports.convergence import section
from harness.results.convergence import Criteria, Curve, judge, judge_precisions, load_curves, times_to_target
from harness.results.files import write_metrics, write_plan
from harness.results.records import PlannedModes
from harness.results.tables import steps_table


def test_equivalent_worse_and_inconclusive_are_told_apart():
    fp32 = np.array([0.300, 0.310, 0.305, 0.295])
    close = judge(fp32, fp32 + 0.001, margin=0.02, higher_is_better=True, metric="acc", step=10)
    assert close.verdict == "equivalent" and close.low < 0.001 < close.high
    far = judge(fp32, fp32 - 0.1, margin=0.02, higher_is_better=True, metric="acc", step=10)
    assert far.verdict == "worse"
    assert judge(fp32, fp32 + 0.1, 0.02, True, "acc", 10).verdict == "better"
    # for a loss, higher is the bad side
    assert judge(fp32, fp32 + 0.1, 0.02, False, "loss", 10).verdict == "worse"
    # a gap near the margin, measured on three seeds: more seeds would decide it
    unsure = judge(fp32[:3], fp32[:3] - 0.012, margin=0.02, higher_is_better=True, metric="acc", step=10)
    assert unsure.verdict == "inconclusive" and unsure.more_seeds is not None and unsure.more_seeds > 0
    assert unsure.text() == f"inconclusive: {unsure.more_seeds} more seeds needed"
    # one seed a side estimates no spread: never a verdict
    assert judge(fp32[:1], fp32[:1], 0.02, True, "acc", 10).verdict == "inconclusive"


def _curve(precision: str, seed: int, accuracies: list[float], step_s: float = 1.0, phase: int = 1) -> Curve:
    steps = [10 * (i + 1) for i in range(len(accuracies))]
    frame = pd.DataFrame(
        {
            "step": steps,
            "eval_mlm_accuracy": accuracies,
            "eval_loss": [5.0 - 2 * a for a in accuracies],
            "train_time_s": [s * step_s for s in steps],
        }
    )
    return Curve(f"p{phase}-{precision}-r{seed}", phase, precision, seed, frame)


FP32 = [[0.10, 0.20, 0.300], [0.11, 0.21, 0.305], [0.09, 0.19, 0.295]]


def test_verdicts_follow_the_last_evaluation_and_a_pure_bf16_that_stalls_is_worse():
    curves = [_curve("fp32", i, a) for i, a in enumerate(FP32)]
    curves += [_curve("bf16", i, [x + 0.001 for x in a]) for i, a in enumerate(FP32)]
    curves += [_curve("bf16-pure", i, [0.05, 0.06, 0.07 + 0.002 * i]) for i in range(3)]
    by_precision = {v.precision: v for v in judge_precisions(curves)}
    assert by_precision["bf16"].verdict == "equivalent"
    assert by_precision["bf16-pure"].verdict == "worse"
    assert {j.step for j in by_precision["bf16"].judgements} == {10, 20, 30}
    assert {j.metric for j in by_precision["bf16"].final} == {"eval_mlm_accuracy", "eval_loss"}


def test_time_to_target_defaults_to_fp32s_lowest_final_and_compares_time_and_steps():
    curves = [_curve("fp32", i, a, step_s=3.0) for i, a in enumerate(FP32)]
    # bf16: the same accuracies a step earlier, each step a third of fp32's time
    curves += [_curve("bf16", i, [*a[1:], a[-1]], step_s=1.0) for i, a in enumerate(FP32)]
    curves += [_curve("bf16-pure", i, [0.05, 0.06, 0.07]) for i in range(3)]
    rows = {r.precision: r for r in times_to_target(curves)}
    assert rows["fp32"].target == 0.295 and rows["fp32"].reached == 3 and rows["fp32"].steps == 30
    assert rows["bf16"].steps == 20 and rows["bf16"].time_ratio == pytest.approx(20 / 90)
    assert rows["bf16"].step_ratio == pytest.approx(2 / 3)
    assert (
        rows["bf16"].text() == "bf16 reaches fp32's final accuracy (0.2950) in 0.22x the time (steps 0.67x)"
    )
    assert rows["bf16-pure"].reached == 0 and "does not reach" in rows["bf16-pure"].text()
    given = {r.precision: r for r in times_to_target(curves, target=0.2)}
    assert given["fp32"].steps == 20 and given["fp32"].reached == 3


def test_time_to_target_on_the_loss_is_reached_downwards_from_fp32s_highest_final():
    curves = [_curve("fp32", i, a) for i, a in enumerate(FP32)]
    # the same accuracies, but a stalled loss: at an accuracy plateau only the loss tells
    stalled = [_curve("bf16-pure", i, a) for i, a in enumerate(FP32)]
    for c in stalled:
        c.evals["eval_loss"] += 1.0
    rows = {r.precision: r for r in times_to_target(curves + stalled, metric="eval_loss")}
    assert rows["fp32"].target == pytest.approx(5.0 - 2 * 0.295) and rows["fp32"].steps == 30
    assert rows["bf16-pure"].reached == 0
    assert rows["bf16-pure"].text() == "bf16-pure does not reach loss 4.4100 within its budget"
    accuracy = {r.precision: r for r in times_to_target(curves + stalled)}
    # the same times as fp32's seeds: no ratio is claimed from inside their spread
    assert accuracy["bf16-pure"].reached == 3 and accuracy["bf16-pure"].step_ratio is None
    assert accuracy["bf16-pure"].text() == (
        "bf16-pure: time to accuracy 0.2950 not judged: its 30.0 s lies inside fp32's seeds' 30.0..30.0 s"
    )


def test_time_to_target_is_not_judged_on_too_few_fp32_seeds_or_inside_their_spread():
    one = [_curve("fp32", 0, FP32[0]), _curve("bf16", 0, [0.1, 0.2, 0.2999]), _curve("bf16", 1, FP32[0])]
    for row in times_to_target(one) + times_to_target(one, metric="eval_loss"):
        if row.precision == "bf16":
            assert row.not_judged and row.time_ratio is None
            assert "not judged: fp32 ran 1 seed; --seeds 3 or more give the seed spread" in row.text()
    # three fp32 seeds end 0.295..0.305: a bf16 that ends 0.0001 short of 0.295 is inside that spread
    curves = [_curve("fp32", i, a) for i, a in enumerate(FP32)]
    short = [_curve("bf16", i, [0.1, 0.2, 0.2949]) for i in range(3)]
    (bf16,) = [r for r in times_to_target(curves + short) if r.precision == "bf16"]
    assert bf16.reached == 0 and "does not reach" not in bf16.text()
    assert bf16.not_judged == "its best (0.2949) misses it by 0.0001, inside fp32's seed spread (0.0100)"


def test_criteria_refuse_what_cannot_judge():
    with pytest.raises(HarnessError, match="--equivalence-margin must be > 0"):
        Criteria(equivalence_margin=0).validate()
    with pytest.raises(HarnessError, match="--target-accuracy must be in"):
        Criteria(target_accuracy=1.5).validate()


def test_the_report_section_shades_fp32s_band_and_names_the_verdicts(tmp_path):
    runs, specs = [], []
    for precision, shift in (("fp32", 0.0), ("bf16-pure", -0.2)):
        for seed, accuracies in enumerate(FP32):
            run_id = f"p1-{precision}-r{seed}"
            records = []
            for i, a in enumerate(accuracies):
                step = 10 * (i + 1)
                records += [
                    {
                        "step": s,
                        "loss": 5.0,
                        "mlm_loss": 4.0,
                        "nsp_loss": 1.0,
                        "lr": 1e-3,
                        "grad_norm": 1.0,
                        "step_time_s": 0.5,
                        "data_time_s": 0.0,
                        "seq_per_s": 8.0,
                        "model_flops": 1,
                    }
                    for s in range(step - 9, step + 1)
                ]
                records.append(
                    {
                        "step": step,
                        "eval_mlm_accuracy": max(a + shift, 0.01),
                        "eval_loss": 5 - 2 * (a + shift),
                        "eval_nsp_accuracy": 0.5,
                        "eval_examples": 16,
                    }
                )
            (tmp_path / "runs" / run_id).mkdir(parents=True)
            write_metrics(tmp_path / "runs" / run_id, records)
            runs.append(
                {
                    "run_id": run_id,
                    "phase": 1,
                    "precision": precision,
                    "backend": "stock",
                    "repeat": seed,
                    "status": "ok",
                }
            )
            specs.append(RunSpec(run_id, 1, precision, seed, "bert-tiny", 30, 8, 1e-3, None, None))
    write_plan(tmp_path, Plan(tmp_path, replace(get_preset("convergence"), timing_warmup=0), specs))
    steps = steps_table(tmp_path)
    html = section(pd.DataFrame(runs), steps, {"fp32": "#111", "bf16-pure": "#c00"}, Criteria(), None)
    assert "<polygon" in html  # the band
    assert 'id="equivalence"' in html and ">worse<" in html
    assert "bf16-pure does not reach accuracy 0.2950 within its budget" in html
    assert "bf16-pure does not reach loss 4.4100 within its budget" in html
    assert "fp32 reaches accuracy 0.2950 in 15.0 s (30 steps)" in html
    one_seed = section(pd.DataFrame(runs[:1] + runs[3:4]), steps, {}, Criteria(), None)
    assert "Not judged: fp32 ran 1 seed here; --seeds 3 or more" in one_seed
    assert 'id="equivalence"' not in one_seed and "does not reach" not in one_seed
    # a run set of a preset that measures speed: the curves, and no verdict of any kind
    speed = section(pd.DataFrame(runs), steps, {}, Criteria(), "one evaluation a run")
    assert "<polygon" in speed and "Convergence not judged: one evaluation a run." in speed
    assert 'id="equivalence"' not in speed and 'id="time-to-target"' not in speed


def test_a_backends_runs_are_curves_of_their_own_mode():
    runs = pd.DataFrame(
        {
            "run_id": ["p1-bf16-r0", "p1-bf16-fused-r0"],
            "precision": ["bf16", "bf16"],
            "backend": ["stock", "fused"],
            "status": ["ok", "ok"],
        }
    )
    steps = pd.DataFrame(
        {
            "run_id": ["p1-bf16-r0", "p1-bf16-fused-r0"],
            "phase": [1, 1],
            "precision": ["bf16", "bf16"],
            "repeat": [0, 0],
            "step": [10, 10],
            "step_time_s": [1.0, 0.5],
            "eval_mlm_accuracy": [0.3, 0.3],
            "eval_loss": [4.0, 4.0],
        }
    )
    # one seed each, not two seeds of one bf16 whose band would pool two implementations
    assert sorted(c.precision for c in load_curves(runs, steps, PlannedModes.of(runs).band())) == [
        "bf16",
        "bf16+fused",
    ]
    # a set on one backend (compare's default): its fp32 is the band, labelled fp32
    fused = runs.assign(precision=["fp32", "bf16"], backend="fused")
    steps = steps.assign(precision=["fp32", "bf16"])
    assert sorted(c.precision for c in load_curves(fused, steps, PlannedModes.of(fused).band())) == [
        "bf16+fused",
        "fp32",
    ]
