"""bench peer's rows and table on hand-made rounds: each row's time split, merged from the first
round, through the workers' JSON and --json, and printed under the table."""

import json
from dataclasses import asdict

from peer_rounds import a_round

from harness.bench.peer import PeerRound, merge
from harness.bench.peer_table import format_rows
from harness.results.time_split import TimeSplit

OURS = TimeSplit.of_step(
    ({"onednn:avx512_core_bf16": 3.9}, 0.4), step_s=5.7, data_s=0.0, forward_backward_s=5.1, optimizer_s=0.5
)
THEIRS = TimeSplit.of_step(
    ({"onednn:avx512_core_bf16": 4.2, "mkl:avx512": 0.1}, 0.6),
    step_s=7.0,
    data_s=0.0,
    forward_backward_s=6.0,
    optimizer_s=0.8,
)


def test_a_row_carries_its_first_rounds_split_through_json_and_prints_it_by_part():
    # a worker writes its round as JSON; the parent reads it back a TimeSplit
    written = json.loads(json.dumps(asdict(a_round("harness", [5.5], OURS))))
    assert PeerRound.from_dict(written) == a_round("harness", [5.5], OURS)
    # later rounds record no verbose step: the row takes the first round's split
    ours = merge([a_round("harness", [5.5], OURS), a_round("harness", [5.6], None)], False, "kept", None)
    hf = merge(
        [a_round("hugging-face", [6.8], THEIRS), a_round("hugging-face", [6.9], None)], False, "kept", None
    )
    assert (ours.time_split, hf.time_split) == (OURS, THEIRS)
    assert json.loads(json.dumps(asdict(ours)))["time_split"]["optimizer_s"] == 0.5  # --json
    lines = format_rows([ours, hf]).splitlines()
    heading = next(i for i, line in enumerate(lines) if line.startswith("where one step's time went"))
    assert lines[heading - 2].startswith("bf16: harness / Hugging Face = ")  # under the ratios
    assert (
        "bf16 harness: step 5.700 s = GEMM onednn:avx512_core_bf16 3.900 s (68%), attention's "
        "batched GEMMs 0.400 s (7%), rest of forward and backward 0.800 s (14%), optimizer 0.500 s "
        "(9%), harness 0.100 s (2%)"
    ) in lines
    theirs = next(line for line in lines if line.startswith("bf16 hugging-face: step 7.000 s = "))
    # every part in TimeSplit.parts()'s order, the data wait a bare step does not have left out
    assert [part.rsplit(" ", 3)[0] for part in theirs.split(" = ", 1)[1].split(", ")] == [
        "GEMM onednn:avx512_core_bf16",
        "GEMM mkl:avx512",
        "attention's batched GEMMs",
        "rest of forward and backward",
        "optimizer",
        "harness",
    ]
    assert "data wait" not in theirs


def test_rows_without_a_split_print_no_split_section():
    rows = [merge([a_round(impl, [6.0], None)], False, "kept", None) for impl in ("harness", "hugging-face")]
    assert "where one step's time went" not in format_rows(rows)
