"""The gate's checks: validity, throughput against the baseline, speed-up floors, convergence.

Each check yields a `Check` with the figures it judged, so that the printed table, the Markdown
and the JSON all say the same thing. Runs of the two sets are matched by configuration (phase,
precision, model, batch size, seq len). Throughput is judged on one figure per run, its median
sequences/s (harness.results.stats says why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.gate.config import GateConfig
from harness.results.records import PlannedModes, Status, mode_label
from harness.results.runsets import (
    KEY,
    RunSet,
    key_label,
    key_ratio,
    key_stats,
    run_rates,
    timed_samples,
)
from harness.results.stats import (
    MIN_RUNS,
    Spread,
    between_run_cv,
    detectable_change,
    ratio,
    slower_p_value,
    smallest_p_value,
)


@dataclass
class Check:
    kind: str
    run: str
    passed: bool
    message: str
    figures: dict = field(default_factory=dict)


def validity(current: RunSet) -> list[Check]:
    """Every current run must have finished ok with an ISA that matches its mode."""
    checks = []
    for _, r in current.runs.iterrows():
        ok = r["status"] == Status.OK and r["valid"] is not False
        error = r["error"] if isinstance(r["error"], str) else ""
        checks.append(
            Check(
                "validity",
                str(r["run_id"]),
                ok,
                Status.OK.value if ok else f"status {r['status']}{': ' + error if error else ''}",
                {
                    "status": str(r["status"]),
                    "isa_verified": r["isa_verified"] if isinstance(r["isa_verified"], str) else None,
                },
            )
        )
    return checks


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def throughput(baseline: RunSet, current: RunSet, cfg: GateConfig) -> list[Check]:
    """A configuration fails when its median drops by more than its threshold and, where its runs
    can show it, the drop is significant; either alone is noise or a tolerated change."""
    checks = []
    base_stats, cur_stats = key_stats(baseline), key_stats(current)
    cur_index = {tuple(r[k] for k in KEY): r for _, r in cur_stats.iterrows()}
    for _, b in base_stats.iterrows():
        label = key_label(b)
        if b["runs_ok"] == 0:
            checks.append(
                Check("throughput", label, True, f"not compared: no baseline run ok ({b['statuses']})")
            )
            continue
        c = cur_index.get(tuple(b[k] for k in KEY))
        if c is None:
            checks.append(Check("throughput", label, False, "not in the current run set"))
            continue
        if c["runs_ok"] == 0:
            checks.append(Check("throughput", label, False, f"no current run finished ok ({c['statuses']})"))
            continue
        # A contended run's throughput is no evidence; the quiet runs beside it still are.
        shared = [side for side, row in (("baseline", b), ("current", c)) if not row["quiet_run_ids"]]
        if shared:
            checks.append(
                Check(
                    "throughput",
                    label,
                    True,
                    f"not judged: the {' and '.join(shared)} run set's runs shared their cores (contended)",
                    {"contended": True},
                )
            )
            continue
        checks.append(_judge(label, baseline, b, current, c, cfg))
    base_keys = {tuple(r[k] for k in KEY) for _, r in base_stats.iterrows()}
    for key, c in cur_index.items():
        if key not in base_keys:
            checks.append(
                Check(
                    "throughput",
                    key_label(c),
                    cfg.allow_missing,
                    "not in the baseline run set: its throughput is not judged"
                    + (" (--allow-missing)" if cfg.allow_missing else "; --allow-missing lets it pass"),
                )
            )
    return checks


def _judge(label: str, baseline: RunSet, b, current: RunSet, c, cfg: GateConfig) -> Check:
    """One configuration's throughput: the ratio of the runs' medians, tested where it can be."""
    base_ids, cur_ids = b["quiet_run_ids"].split(), c["quiet_run_ids"].split()
    base, cur = run_rates(baseline.runs, base_ids), run_rates(current.runs, cur_ids)
    if len(base) == 0 or len(cur) == 0:
        side = "baseline" if len(base) == 0 else "current"
        return Check("throughput", label, False, f"the {side} run set's ok runs recorded no throughput")
    r = ratio(cur, base)
    change, limit = r.value - 1, cfg.threshold(str(b["precision"]), str(b["backend"]))
    left_out = [*_contended(b, base_ids), *_contended(c, cur_ids)]
    figures = {
        "baseline_seq_per_s": Spread.of(base).median,
        "current_seq_per_s": Spread.of(cur).median,
        "contended_runs_left_out": left_out,
        "ratio": r.value,
        "change": change,
        "change_ci": [r.low - 1, r.high - 1],
        "runs": [len(base), len(cur)],
        "max_regression": limit,
    }
    head = (
        f"{figures['baseline_seq_per_s']:.4g} -> {figures['current_seq_per_s']:.4g} seq/s ({_pct(change)}"
        + (f", contended runs left out: {' '.join(left_out)}" if left_out else "")
    )
    floor = smallest_p_value(len(cur), len(base))
    if min(len(base), len(cur)) >= MIN_RUNS and floor < cfg.alpha:
        p = slower_p_value(cur, base)
        figures["p_value"] = p
        regressed = -change > limit and p < cfg.alpha
        faster = change > limit and r.low > 1
        verdict = "REGRESSION" if regressed else ("faster" if faster else "within noise or threshold")
        return Check(
            "throughput",
            label,
            not regressed,
            f"{head}, 95% CI {_pct(r.low - 1)}..{_pct(r.high - 1)}, p={p:.2g}, runs "
            f"{len(base)}/{len(cur)}); limit -{limit:.0%} at p<{cfg.alpha}: {verdict}",
            figures,
        )
    # Too few runs for a p-value below alpha: the threshold alone judges, and the check says how
    # large a change these runs could have told from noise.
    cv, source = _spread(base, cur, ((baseline, base_ids), (current, cur_ids)))
    detectable = detectable_change(cv, len(cur), len(base), cfg.alpha)
    figures["detectable_change"] = detectable
    regressed = -change > limit
    reason = (
        f"no p-value under {MIN_RUNS} runs a side"
        if min(len(base), len(cur)) < MIN_RUNS
        else f"{len(base)}/{len(cur)} runs cannot give p<{cfg.alpha} (smallest {floor:.2g})"
    )
    return Check(
        "throughput",
        label,
        not regressed,
        f"{head}, runs {len(base)}/{len(cur)}; {reason}: smallest detectable change "
        f"{detectable:.1%} (spread {source}, cv {cv:.1%}); limit -{limit:.0%}: "
        + ("REGRESSION" if regressed else "within threshold"),
        figures,
    )


def _contended(stats: pd.Series, quiet_ids: list[str]) -> list[str]:
    """The ok runs of a configuration left out of its throughput: they shared their cores."""
    return sorted(set(stats["ok_run_ids"].split()) - set(quiet_ids))


def _spread(
    base: np.ndarray, cur: np.ndarray, sides: tuple[tuple[RunSet, list[str]], ...]
) -> tuple[float, str]:
    """The coefficient of variation a detectable change is computed from (the runs' rates `base`
    and `cur`, else the steps of each side's runs), and where it comes from."""
    cv = between_run_cv(base, cur)
    if not math.isnan(cv):
        return cv, "between runs"
    # one run a side: only the spread of the steps inside them is known
    cv = max(Spread.of(timed_samples(s.steps, ids)).cv for s, ids in sides)
    return cv, "of the steps within the runs, a lower bound"


def speedups(current: RunSet, cfg: GateConfig) -> list[Check]:
    """Inside the current set: MODE must reach FACTOR times the other mode's median, per phase."""
    checks = []
    stats = key_stats(current)
    for floor in cfg.min_speedup:
        name = f"{floor.numerator}/{floor.denominator}"
        found = False
        for phase, group in stats.groupby("phase"):
            modes = [mode_label(p, b) for p, b in zip(group["precision"], group["backend"], strict=True)]
            top = group[[m == floor.numerator for m in modes]]
            bottom = group[[m == floor.denominator for m in modes]]
            if top.empty or bottom.empty:
                continue
            found = True
            r = key_ratio(current, top.iloc[0], current, bottom.iloc[0])
            if math.isnan(r.value):
                checks.append(
                    Check("speed-up", f"p{phase} {name}", False, "not measured: a run did not finish ok")
                )
                continue
            a, b = top.iloc[0]["throughput_seq_per_s"], bottom.iloc[0]["throughput_seq_per_s"]
            checks.append(
                Check(
                    "speed-up",
                    f"p{phase} {name}",
                    r.value >= floor.floor,
                    f"{a:.4g} / {b:.4g} seq/s = {r.text()}; floor {floor.floor:.2f}x",
                    {"speedup": r.value, "speedup_ci": [r.low, r.high], "floor": floor.floor},
                )
            )
        if not found:
            checks.append(
                Check(
                    "speed-up",
                    name,
                    False,
                    f"the current run set has no {floor.numerator} and "
                    f"{floor.denominator} runs of the same phase",
                )
            )
    return checks


def convergence(baseline: RunSet, current: RunSet, cfg: GateConfig) -> list[Check]:
    """Final loss and eval accuracy against the baseline, and final loss against the reference fp32
    of the current set (PlannedModes.reference: fp32 on the mode's own backend, else stock's)."""
    checks = []
    cur_stats = key_stats(current)
    planned = PlannedModes.of(cur_stats)
    base_index = {tuple(r[k] for k in KEY): r for _, r in key_stats(baseline).iterrows()}
    for _, c in cur_stats.iterrows():
        label = key_label(c)
        if c["runs_ok"] == 0:
            continue  # validity already failed it
        b = base_index.get(tuple(c[k] for k in KEY))
        if b is not None and b["runs_ok"]:
            limit = b["final_loss"] * (1 + cfg.loss_tolerance)
            checks.append(
                Check(
                    "loss vs baseline",
                    label,
                    bool(c["final_loss"] <= limit),
                    f"{b['final_loss']:.4f} -> {c['final_loss']:.4f}; limit {limit:.4f}",
                    {"baseline": b["final_loss"], "current": c["final_loss"], "limit": limit},
                )
            )
            if not pd.isna(b["eval_mlm_accuracy"]) and not pd.isna(c["eval_mlm_accuracy"]):
                floor = b["eval_mlm_accuracy"] - cfg.accuracy_tolerance
                checks.append(
                    Check(
                        "accuracy vs baseline",
                        label,
                        bool(c["eval_mlm_accuracy"] >= floor),
                        f"{b['eval_mlm_accuracy']:.4f} -> {c['eval_mlm_accuracy']:.4f}; floor {floor:.4f}",
                        {
                            "baseline": b["eval_mlm_accuracy"],
                            "current": c["eval_mlm_accuracy"],
                            "floor": floor,
                        },
                    )
                )
        checks += _loss_vs_fp32(c, label, cur_stats, planned, cfg)
    return checks


def _loss_vs_fp32(
    c: pd.Series, label: str, cur_stats: pd.DataFrame, planned: PlannedModes, cfg: GateConfig
) -> list[Check]:
    """A mode's final loss (`c`, its checks' `label`) against its reference fp32 run in the current
    set, if it has one."""
    ref_precision, ref_backend = planned.reference(c["precision"], c["backend"])
    fp32 = cur_stats[
        (cur_stats.precision == ref_precision)
        & (cur_stats.backend == ref_backend)
        & (cur_stats.phase == c["phase"])
        & (cur_stats.model == c["model"])
        & (cur_stats.runs_ok > 0)
    ]
    if (c["precision"], c["backend"]) != (ref_precision, ref_backend) and len(fp32):
        ref = fp32.iloc[0]["final_loss"]
        limit = ref * (1 + cfg.loss_tolerance)
        reference = mode_label(ref_precision, ref_backend)
        return [
            Check(
                "loss vs fp32",
                label,
                bool(c["final_loss"] <= limit),
                f"{reference} {ref:.4f}, {mode_label(c['precision'], c['backend'])} "
                f"{c['final_loss']:.4f}; limit {limit:.4f}",
                {"fp32": ref, "reference": reference, "current": c["final_loss"], "limit": limit},
            )
        ]
    return []
