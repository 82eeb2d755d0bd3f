import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.datasets.synth import SynthSpec, synthesize


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A small synthetic data set in the MLCommons layout, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("synth") / "data"
    synthesize(out, SynthSpec(examples=4096, eval_examples=256, shards=10, seed=7))
    return out


E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e/ starts real processes: marked e2e, so `-m "not e2e"` leaves it out."""
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)


RUNSETS = Path(__file__).parent / "fixtures" / "runsets"


@pytest.fixture
def runsets(tmp_path) -> Path:
    """A writable copy of the checked-in run sets (tests/fixtures/runsets/README.md): the gate and
    the reports write beside the run set they read."""
    shutil.copytree(RUNSETS, tmp_path / "runsets")
    return tmp_path / "runsets"


@pytest.fixture
def small_disk(tmp_path):
    """A folder on a file system of its own, `size` MiB: a disk that fills up for real. Mounting
    a tmpfs takes root (or CAP_SYS_ADMIN); the test is skipped without it."""
    mounts: list[Path] = []

    def make(size_mib: int) -> Path:
        point = tmp_path / f"disk-{len(mounts)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(point)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'not root'})")
        mounts.append(point)
        return point

    yield make
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], check=True)


KERNELS_KEY = "tests"
"""The machine key the test suite builds the fused kernels under (a cache of its own)."""


@pytest.fixture(scope="session")
def kernels_home(tmp_path_factory) -> Path:
    """A HARNESS_HOME holding the fused kernels, built once per test session for this machine."""
    from harness import kernels

    home = tmp_path_factory.mktemp("harness-home")
    before = os.environ.get("HARNESS_HOME")
    os.environ["HARNESS_HOME"] = str(home)
    try:
        kernels.load(KERNELS_KEY)
    finally:
        if before is None:
            del os.environ["HARNESS_HOME"]
        else:
            os.environ["HARNESS_HOME"] = before
    return home


@pytest.fixture(scope="session")
def fused_ops(kernels_home):
    """The compiled fused kernels (harness.kernels)."""
    from harness import kernels

    return kernels.load(KERNELS_KEY)
