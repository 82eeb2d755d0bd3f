"""Hostile input to the precision machinery (issue 35): a TOML file of modes that would redefine,
mistype or misspell what a mode is; each refused in one line naming the file, the mode and the key."""

import pytest

from harness import cli
from harness.errors import HarnessError
from harness.precision.modes import get_precision, load_modes


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
