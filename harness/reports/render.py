"""`harness report`: re-render one run set, put several side by side, or index a folder of them."""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError
from harness.files import write_atomic
from harness.reports.history import find_runsets, render_history
from harness.reports.html import write_report
from harness.reports.side_by_side import render_side_by_side
from harness.results.convergence import Criteria
from harness.results.files import plan_exists
from harness.results.runsets import is_runset, load_runset, name_sets
from harness.results.tables import read_runs, summary_lines, write_tables


def render_run_set(directory: Path, criteria: Criteria) -> int:
    if not plan_exists(directory):
        raise HarnessError(f"{directory}: no plan.json; not a `harness compare` output directory")
    runs_csv, steps_csv = write_tables(directory)
    report = write_report(directory, criteria)
    print("\n".join(summary_lines(read_runs(runs_csv))))  # the table just written, not computed again
    print(f"\nwrote {runs_csv}, {steps_csv} and {report}")
    return 0


def render(dirs: list[Path], output: Path | None, criteria: Criteria) -> int:
    """One run set re-rendered, several side by side, or a folder of them indexed."""
    for d in dirs:
        if not d.exists():
            raise HarnessError(f"{d}: no such folder or runs.csv")
    if len(dirs) == 1 and plan_exists(dirs[0]):
        return render_run_set(dirs[0], criteria)
    if len(dirs) == 1 and dirs[0].is_dir() and not is_runset(dirs[0]):
        found = find_runsets(dirs[0])
        if not found:
            raise HarnessError(f"{dirs[0]}: holds no run sets (folders with plan.json or runs.csv)")
        for folder in found:  # every set gets its own page for the index to link to
            if plan_exists(folder):
                render_run_set(folder, criteria)
        sets = name_sets(sorted((load_runset(f) for f in found), key=lambda s: s.started_at))
        page, path = render_history(dirs[0], sets), output or dirs[0] / "index.html"
    else:
        if len(dirs) == 1:
            raise HarnessError(
                f"{dirs[0]}: a saved run set has nothing to re-render; give two or more "
                "to compare them side by side"
            )
        page = render_side_by_side(name_sets([load_runset(d) for d in dirs]))
        path = output or Path("side-by-side.html")
    write_atomic(path, page)
    print(f"wrote {path}")
    return 0
