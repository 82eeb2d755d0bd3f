"""Hostile input to the precision machinery (issue 35): a TOML file of modes that would redefine,
mistype or misspell what a mode is, each refused in one line naming the file, the mode and the key;
caches under $HARNESS_HOME that cannot be read."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.datasets.synth import GENERATOR_VERSION, cached_default
from harness.errors import HarnessError
from harness.launch.job import WorkerContext
from harness.precision import roofline
from harness.precision.modes import get_precision, load_modes
from harness.results.records import Status
from harness.train.config import TrainConfig
from harness.train.distributed import Ranks
from harness.train.result import RunResult


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        # every speed-up is measured against the built-in fp32
        (
            '[modes.fp32]\ndescription = "d"\nisa_cap = "SSE41"\n',
            r"\[modes.fp32\] redefines the built-in mode fp32",
        ),
        ('[modes.x]\ndescription = "d"\nisa_cap = 5\n', r"\[modes.x\] isa_cap = 5, expected a string"),
        (
            '[modes.x]\ndescription = "d"\nisa_cap = "AVX2\\nFOO=1"\n',
            r"mode x: isa_cap 'AVX2\\nFOO=1', expected one of oneDNN's SSE41, AVX, AVX2, ",
        ),
        (
            '[modes.x]\ndescription = "d"\nisa_cap = "NOT_AN_ISA"\n',
            r"mode x: isa_cap 'NOT_AN_ISA', expected one of",
        ),
        (
            '[modes.x]\ndescription = "d"\nmkl_instructions = "AVX3"\n',
            r"mode x: mkl_instructions 'AVX3', expected",
        ),
        (
            '[modes.x]\ndescription = "d"\nmkl_instructions = ["AVX2"]\n',
            r"mkl_instructions = \['AVX2'\], expected a",
        ),
        (
            '[modes.x]\ndescription = "d"\nrequires = "amx"\n',
            r"\[modes.x\] requires = 'amx', expected a list of strings",
        ),
        (
            '[modes.x]\ndescription = "d"\nrequires = [1]\n',
            r"\[modes.x\] requires = \[1\], expected a list of strings",
        ),
        (
            '[modes.x]\ndescription = "d"\nemulable = "no"\n',
            r"\[modes.x\] emulable = 'no', expected true or false",
        ),
        ("[modes.x]\ndescription = 3\n", r"\[modes.x\] description = 3, expected a string"),
        (
            '[modes.x]\ndescription = "d"\nautocast = true\n',
            r"\[modes.x\] autocast = True, expected a string",
        ),
        ("modes = 5\n", r"expected only \[modes.NAME\] tables"),
        ('[mode.x]\ndescription = "d"\n', r"expected only \[modes.NAME\] tables"),
        ('[modes]\nx = "AVX2"\n', r"modes.x: expected a \[modes.x\] table"),
    ],
)
def test_a_mode_file_is_refused_in_one_line_naming_file_mode_and_key(tmp_path, toml, message):
    path = tmp_path / "modes.toml"
    path.write_text(toml)
    with pytest.raises(HarnessError, match=message) as refused:
        load_modes(path)
    assert str(refused.value).startswith(f"{path}: ") and "\n" not in str(refused.value)
    assert refused.value.exit_code == 2


def test_detect_refuses_a_mode_file_with_an_unknown_isa(tmp_path, monkeypatch, capsys):
    """It called such a mode native, which then failed only in the worker, as exit 4."""
    path = tmp_path / "modes.toml"
    path.write_text('[modes.x]\ndescription = "d"\nisa_cap = "NOT_AN_ISA"\n')
    monkeypatch.setenv("HARNESS_PRECISION_FILE", str(path))
    assert cli.main(["detect"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"harness: {path}: mode x: isa_cap 'NOT_AN_ISA'")


def test_a_valid_mode_file_still_loads(tmp_path, monkeypatch):
    path = tmp_path / "modes.toml"
    path.write_text(
        '[modes.avx2-fp32]\ndescription = "fp32 on AVX2"\nisa_cap = "AVX2"\nmkl_instructions = "AVX2"\n'
        'requires = ["avx512"]\nemulable = false\n'
    )
    monkeypatch.setenv("HARNESS_PRECISION_FILE", str(path))
    mode = get_precision("avx2-fp32")
    assert (mode.isa_cap, mode.requires, mode.emulable) == ("AVX2", ("avx512",), False)
    assert get_precision("fp32").isa_cap == "AVX512_CORE_AMX"


# The roofline store ($HARNESS_HOME/roofline.json): one that cannot be read is no roofline to a
# run, and is moved aside, never overwritten, by the `harness roofline` that replaces it.

PEAK = {
    "path": "torch.mm",
    "library": "mkl",
    "kernel": "k",
    "gflops": 100.0,
    "gflops_p10": 99.0,
    "gflops_p90": 101.0,
    "paths": [
        {
            "path": "torch.mm",
            "library": "mkl",
            "kernel": "k",
            "gflops": 100.0,
            "gflops_p10": 99.0,
            "gflops_p90": 101.0,
        }
    ],
    "stream_gbytes_per_s": 20.0,
    "stream_p10": 19.0,
    "stream_p90": 21.0,
    "stream_mib": 128,
    "size": 64,
    "repeats": 1,
    "dtype": "float32",
    "threads": 1,
}
UNREADABLE = {
    "truncated": '{\n  "machine | 4 threads | torch 2.13": {\n    "fp32": {"gfl',
    "a list": "[1, 2]\n",
}


@pytest.mark.parametrize("content", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_a_run_treats_an_unreadable_roofline_store_as_none_stored_and_says_so_once(
    tmp_path, monkeypatch, capsys, content
):
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path))
    (tmp_path / "roofline.json").write_text(content)
    assert roofline.lookup("fp32", "machine", 4) is None
    assert roofline.lookup("bf16", "machine", 4) is None  # gemm_route and the trainer both look
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {tmp_path / 'roofline.json'}: not a roofline store")
    assert (tmp_path / "roofline.json").read_text() == content


@pytest.mark.parametrize("content", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_harness_roofline_moves_an_unreadable_store_aside_and_keeps_its_figures(
    tmp_path, monkeypatch, capsys, content
):
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path))
    monkeypatch.setattr("harness.launch.launchers.run_task", lambda *args: dict(PEAK))
    (tmp_path / "roofline.json").write_text(content)
    assert cli.main(["roofline", "--precisions", "fp32", "--size", "64", "--repeats", "1"]) == 0
    out, err = capsys.readouterr()
    assert f"stored in {tmp_path / 'roofline.json'}" in out
    (aside,) = tmp_path.glob("roofline.json.unreadable-*")
    assert aside.read_text() == content  # not ours to delete
    assert "not a roofline store" in err and f"moved to {aside.name}, a new store started" in err
    (peaks,) = json.loads((tmp_path / "roofline.json").read_text()).values()
    assert peaks["fp32"]["gflops"] == 100.0


def test_harness_roofline_refuses_a_store_that_cannot_be_written_before_measuring(
    tmp_path, monkeypatch, capsys
):
    """Minutes of measuring would be lost at the save: the store's folder is checked first."""
    home = tmp_path / "home"
    home.write_text("a file where the folder should be")
    monkeypatch.setenv("HARNESS_HOME", str(home))
    measured = []
    monkeypatch.setattr("harness.launch.launchers.run_task", lambda *args: measured.append(args))
    assert cli.main(["roofline", "--precisions", "fp32", "--size", "64", "--repeats", "1"]) == 2
    assert not measured
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"harness: $HARNESS_HOME {home}: {home} is a file; expected a directory"


def test_an_unreadable_synth_json_in_the_data_cache_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_HOME", str(tmp_path))
    cached = tmp_path / "data" / f"synth-v{GENERATOR_VERSION}-64"
    cached.mkdir(parents=True)
    (cached / "synth.json").write_text('{"generator": "harness synth')
    with pytest.raises(
        HarnessError, match=rf"{cached / 'synth.json'}: unreadable \(.*\); remove {cached} to"
    ):
        cached_default(64)
    assert (cached / "synth.json").read_text() == '{"generator": "harness synth'


# LD_PRELOAD: ld.so ignores a library it cannot load (a warning on stderr only), so the result
# records what the worker has mapped, not what the variable names.


def test_a_preload_that_did_not_load_is_recorded_as_not_loaded(tmp_path):
    libc = next(
        line.split()[5] for line in Path("/proc/self/maps").read_text().splitlines() if "/libc.so" in line
    )
    (tmp_path / "libmine.so").symlink_to(libc)  # mapped under its real path
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from harness.launch.environment import preloaded; print(json.dumps(preloaded()))",
        ],
        env={**os.environ, "LD_PRELOAD": f"/nonexistent/libjemalloc.so:{tmp_path / 'libmine.so'}"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "ignored" in done.stderr  # ld.so's own word, on stderr only
    missing, present = json.loads(done.stdout)
    assert missing["library"] == "/nonexistent/libjemalloc.so" and missing["loaded"] is False
    assert missing["mapped"] is None and "not mapped in the worker" in missing["note"]
    assert present == {"library": str(tmp_path / "libmine.so"), "loaded": True, "mapped": libc, "note": None}


def test_a_run_result_records_the_preload_it_has_mapped(tmp_path, monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/nonexistent/libjemalloc.so")
    cfg = TrainConfig(phase=1, precision="fp32", dataset=tmp_path, output=tmp_path / "run")
    context = WorkerContext(False, (), None, False, "cpu", "k", (0,))
    record = RunResult(cfg, get_precision("fp32"), context, Ranks()).build(Status.FAILED, "x", {})
    assert record.malloc_env["LD_PRELOAD"] == "/nonexistent/libjemalloc.so"  # what was asked for
    assert [(p["library"], p["loaded"]) for p in record.preload] == [("/nonexistent/libjemalloc.so", False)]
