"""bench peer's table: the rows side by side, the speed ratios and overheads, where one step of
each went, the top operators and (--gemms) each step's GEMM time."""

from __future__ import annotations

from harness.bench import gemm_time
from harness.bench.peer import PeerRow
from harness.results.stats import ratio


def format_rows(rows: list[PeerRow]) -> str:
    """The comparison table, the ratios and overheads, the time splits, then the top operators."""
    lines = [*_table(rows), ""]
    unmeasured = list(dict.fromkeys(r.precision for r in rows if r.mfu is None))
    if unmeasured:
        lines.append(
            f"MFU: no roofline of {', '.join(unmeasured)} on this machine and thread count yet; "
            f"python -m harness roofline --precisions {','.join(unmeasured)} measures it"
        )
    for precision in dict.fromkeys(r.precision for r in rows):
        lines += _ratios(precision, {r.impl: r for r in rows if r.precision == precision})
    lines += _splits(rows)
    for r in rows:
        if r.top_operators:
            lines += ["", f"top operators, {r.precision} {r.impl} (one step, self CPU time):"]
            lines += [
                f"  {o['self_ms']:>9.1f} ms {o['share']:>6.1%} {o['calls']:>6}x  {o['op']}"
                for o in r.top_operators
            ]
    for r in rows:
        if r.gemms:
            lines += ["", *gemm_time.summary(f"{r.precision} {r.impl}", r.gemms, r.roofline_gflops, 12)]
    return "\n".join(lines)


def _table(rows: list[PeerRow]) -> list[str]:
    first = rows[0]
    lines = [
        f"{first.model}, batch {first.batch_size} x seq {first.seq_len}, {first.threads} "
        f"threads, {first.steps} timed steps each, malloc: {first.malloc}, harness backend: "
        f"{first.backend}",
        f"{'precision':<10} {'implementation':<14} {'step s':>8} {'p10..p90 s':>15} {'seq/s':>7} "
        f"{'TFLOP/s':>8} {'MFU':>6} {'peak RSS':>9} {'faults/step':>11} {'fp32 GEMMs':>10}",
    ]
    for r in rows:
        mfu = f"{r.mfu:.1%}" if r.mfu is not None else "-"
        rss = f"{r.peak_rss_gib:.1f} GiB" if r.peak_rss_gib is not None else "-"
        faults = f"{r.page_faults_per_step:.0f}" if r.page_faults_per_step is not None else "-"
        lines.append(
            f"{r.precision:<10} {r.impl:<14} {r.step_time_s:>8.3f} "
            f"{r.step_time_p10:>7.3f}..{r.step_time_p90:<7.3f} {r.seq_per_s:>7.3f} "
            f"{r.model_tflops_per_s:>8.3f} {mfu:>6} {rss:>9} {faults:>11} {r.fp32_gemm or '-':>10}"
            f"{'  [emulated]' if r.emulated else ''}"
        )
    return lines


def _splits(rows: list[PeerRow]) -> list[str]:
    """Each row's split step as seconds and shares of it, in the parts and order (TimeSplit.parts)
    that a run's report draws, so bench and report read alike."""
    splits = [(f"{r.precision} {r.impl}", r.time_split) for r in rows if r.time_split is not None]
    if not splits:
        return []
    lines = [
        "",
        "where one step's time went (a step with the libraries' verbose logs on, a little slower "
        "than a timed one; harness: the rest of the step; parts of 0 s left out):",
    ]
    for label, split in splits:
        parts = ", ".join(
            f"{name} {s:.3f} s ({s / split.step_s:.0%})" for name, s in split.parts().items() if s
        )
        lines.append(f"{label}: step {split.step_s:.3f} s = {parts}")
    return lines


def _ratios(precision: str, mine: dict[str, PeerRow]) -> list[str]:
    """Our step against Hugging Face's and, with a harness train row, against the harness's own."""
    ours, hf = mine["harness"], mine["hugging-face"]
    # A step time ratio upside down is the sequences/s ratio; a round (a process) is the unit.
    pairs = zip(hf.round_medians_s, ours.round_medians_s, strict=True)
    per_round = [ratio([h], [o]).value for h, o in pairs]
    speed = ratio(hf.round_medians_s, ours.round_medians_s)
    lines = [
        f"{precision}: harness / Hugging Face = {speed.text()} sequences/s "
        f"(per round: {', '.join(f'{r:.2f}x' for r in per_round)})"
    ]
    if "harness train" in mine:
        t = mine["harness train"]
        overhead = ratio(t.round_medians_s, ours.round_medians_s).value - 1
        pairs = zip(t.round_medians_s, ours.round_medians_s, strict=True)
        per_round = [ratio([a], [b]).value - 1 for a, b in pairs]
        lines.append(
            f"{precision}: harness overhead, harness train step {t.step_time_s:.3f} s "
            f"vs bare step {ours.step_time_s:.3f} s: {overhead:+.1%} "
            f"(per round: {', '.join(f'{r:+.1%}' for r in per_round)})"
        )
        # measured inside the same steps, so free of the drift between processes
        lines.append(
            f"{precision}: within the harness train steps: harness work "
            f"{t.harness_time_fraction:.2%}, data wait {t.data_wait_fraction:.2%} "
            "of step time"
        )
    return lines
