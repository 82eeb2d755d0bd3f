import shutil
import subprocess
from collections.abc import Iterator
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


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory) -> Iterator[Path]:
    """The HARNESS_HOME of every test that sets none: one per test session, so that the suite never
    writes the user's cache (~/.cache/harness) and a clean machine's CI measures what this one does.
    Its roofline store and kernel build are shared by the session's tests."""
    home = tmp_path_factory.mktemp("harness-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def machine_key() -> str:
    """This machine's key, as a harness command computes it: a build under it is one a command
    run with the session's home finds instead of building."""
    from harness.machine.platform import detect

    return detect().key()


@pytest.fixture(scope="session")
def kernels_home(session_home, machine_key) -> Path:
    """The session's HARNESS_HOME, holding the fused kernels built for this machine (once per
    session). A test that sets a HARNESS_HOME of its own builds there."""
    from harness import kernels

    kernels.build(machine_key)
    return session_home


@pytest.fixture(scope="session")
def fused_ops(kernels_home, machine_key):
    """The compiled fused kernels (harness.kernels), loaded in this process."""
    from harness import kernels

    return kernels.load(machine_key)
