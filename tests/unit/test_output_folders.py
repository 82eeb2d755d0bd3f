"""Output folders: compare and train write only into a new, empty or their own folder, a refusal
leaves nothing behind, and the reports take a run set with failed runs or symlinked folders."""

from pathlib import Path

import pytest
from harness_cli import call

from harness.errors import HarnessError
from harness.plan.executor import check_output

SMOKE = ["compare", "--preset", "smoke", "--precisions", "fp32", "--phases", "1"]


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under folder and its content (None: a folder)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))
    }


def refused(capsys, *args: object) -> str:
    """The one line a refusal prints, exit 2."""
    done = call(capsys, *args)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def test_compare_refuses_a_folder_it_did_not_write_and_touches_nothing(capsys, tmp_path):
    out = tmp_path / "mine"
    (out / "runs" / "p1-fp32-r0").mkdir(parents=True)
    (out / "report.html").write_text("my report")
    (out / "runs.csv").write_text("my,table\n")
    (out / "runs" / "p1-fp32-r0" / "notes.txt").write_text("my notes")
    before = tree(out)
    line = refused(capsys, *SMOKE, "--output", out)
    assert line == (
        f"harness: --output {out}: is not empty and holds no comparison (no plan.json); "
        "choose a new or empty directory\n"
    )
    assert tree(out) == before
    # --output /: the check only reads, so the root can stand in for itself
    with pytest.raises(HarnessError, match=r"^--output /: is not empty and holds no comparison"):
        check_output(Path("/"), resume=False)
    (tmp_path / "file").write_text("x")
    line = refused(capsys, *SMOKE, "--output", tmp_path / "file")
    assert "expected a folder for the comparison" in line


def test_compare_resume_needs_a_plan_and_touches_nothing_without_one(capsys, runsets):
    out = runsets / "report"
    (out / "plan.json").unlink()
    before = tree(out)
    args = ["compare", "--preset", "smoke", "--precisions", "fp32,avx-fp32", "--steps", "8", "--resume"]
    line = refused(capsys, *args, "--output", out)
    assert line == f"harness: --resume: {out} holds no plan.json; there is no comparison to finish\n"
    assert tree(out) == before
    # nor is a folder that does not exist created to be "resumed"
    refused(capsys, *args, "--output", runsets / "new" / "cmp")
    assert not (runsets / "new").exists()
