"""One source builds for every class: built for an AVX2 host (x86-64-v3: AVX2 and FMA, no
AVX-512), the fused kernels pass their tests on this host too, and hold no AVX-512 instruction.
Here for the hosts CI does not have: the suite runs the native build everywhere else."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.machine.platform import detect

TESTS = Path(__file__).parent
KERNEL_TESTS = ["test_fused_layers.py", "test_fused_attention.py", "test_fused_lamb.py"]


HOST = detect()


@pytest.mark.skipif("avx2" not in HOST.flags, reason="an AVX2 build needs a host with AVX2 to run")
@pytest.mark.skipif(
    not HOST.avx512, reason="no AVX-512 here: the suite's own build is this host's AVX2 build, tested"
)
def test_the_kernels_built_for_avx2_pass_their_tests(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'run'}"]
        + [str(TESTS / name) for name in KERNEL_TESTS],
        env={**os.environ, "HARNESS_KERNEL_MARCH": "x86-64-v3"},
        cwd=TESTS.parent.parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    (build,) = (tmp_path / "run").glob("**/kernels/*/harness_kernels*.so")
    code = subprocess.run(["objdump", "-d", str(build)], capture_output=True, text=True, check=True).stdout
    assert "%ymm" in code, "the build should be vectorised with AVX2's 256-bit registers"
    assert "%zmm" not in code, "an AVX2 build must not use AVX-512's registers"
