"""report.html rendered by a real headless Chromium: the DOM it builds holds the charts and
tables, and its screenshot and the side-by-side page's are kept for a person to look at
(test-artifacts/report.png, test-artifacts/side-by-side.png)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import cli

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def comparison(runsets) -> Path:
    out = runsets / "report"
    assert cli.main(["report", str(out)]) == 0
    return out


def test_chromium_renders_the_report(comparison):
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("Debian's chromium package is not installed")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={comparison / 'chromium-profile'}",
    ]
    page = (comparison / "report.html").as_uri()
    dom = subprocess.run([chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the DOM Chromium built holds the charts and tables
    assert dom.stdout.count("<polyline") >= 8 and 'id="throughput-chart"' in dom.stdout
    assert dom.stdout.count("<table") >= 4
    subprocess.run(
        [chromium, *flags, "--window-size=1200,2400", f"--screenshot={shot}", page],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000
    # the side-by-side page of two run sets, one of them with a crashed run
    side = comparison.parent / "side.html"
    assert (
        cli.main(["report", str(comparison.parent / "baseline"), str(comparison), "--output", str(side)]) == 0
    )
    side_shot = ARTIFACTS / "side-by-side.png"
    side_shot.unlink(missing_ok=True)
    subprocess.run(
        [chromium, *flags, "--window-size=1200,1600", f"--screenshot={side_shot}", side.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert side_shot.stat().st_size > 10_000
