"""The fused backend's C++ kernels, compiled for this machine on first use and cached.

The sources (csrc/) are built with torch.utils.cpp_extension and ninja, `-O3 -march=native` and
OpenMP, so one source is vectorised for whatever the host has (AVX2, AVX-512, AMX hosts' AVX-512).
$HARNESS_KERNEL_MARCH builds them for another -march instead (x86-64-v3: the code an AVX2-only
host would run), so that a host with more can run and time what a smaller one would.
The build lands in $HARNESS_HOME/kernels/<key>, the key a digest of the machine's fingerprint, the
sources, torch's version and the compiler's: another CPU, a changed kernel or another torch builds
afresh, and every later process of the same key loads the build in milliseconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

from harness.errors import HarnessError
from harness.files import harness_home

CSRC = Path(__file__).parent / "csrc"
SOURCES = sorted(CSRC.glob("*.cpp"))
HEADERS = sorted(CSRC.glob("*.h"))
MARCH_ENV = "HARNESS_KERNEL_MARCH"
"""Names the -march the kernels are built for, in place of the host's (native)."""


def flags() -> list[str]:
    """The compiler's flags: -march from $HARNESS_KERNEL_MARCH, else native."""
    march = os.environ.get(MARCH_ENV) or "native"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.+-]*", march):
        raise HarnessError(f"{MARCH_ENV}={march!r}: expected a -march name, such as x86-64-v3 or native")
    # -fno-trapping-math: the loops' selects (exp's clamps, dropout's mask) compute both sides;
    # where a float operation may trap, GCC will not, and without AVX-512's masked operations it
    # then leaves the loop scalar: an AVX2 build's GELU took 18 ms a call, 3.3 ms with the flag.
    # No result changes: only floating-point exception flags, which nothing reads.
    # -mprefer-vector-width=512: GCC's tuning for Intel's AVX-512 cores keeps loops to 256-bit
    # vectors; on the AMX Xeon the 512-bit build ran GELU 22-25% and softmax's forward 13% faster
    # (docs/fused-amx.md). Hosts without AVX-512 are unaffected. Reductions then add in another
    # order: the same bits on any thread count, not across builds.
    return [
        "-O3",
        f"-march={march}",
        "-mprefer-vector-width=512",
        "-fopenmp",
        "-fno-math-errno",
        "-fno-trapping-math",
    ]


def compiler() -> str:
    """The C++ compiler cpp_extension will call ($CXX, else c++), or a one-line refusal."""
    name = os.environ.get("CXX", "c++")
    path = shutil.which(name)
    if path is None:
        raise HarnessError(
            f"--backend fused: no C++ compiler ({name}) on PATH; install g++ (apt-get install g++) "
            "or set CXX, or run --backend stock"
        )
    return path


def _ninja_on_path() -> None:
    """cpp_extension runs `ninja` from PATH: the ninja wheel's binary, which a venv's python
    run without activating the venv would not find."""
    try:
        import ninja
    except ImportError:
        raise HarnessError(
            "--backend fused: the ninja package is missing (pip install ninja, or pip install -e .)"
        ) from None
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def build_key(machine_key: str) -> str:
    """What the build depends on, as a short digest: the machine, torch, the compiler, the flags
    and the sources."""
    import torch

    version = subprocess.run([compiler(), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    digest = hashlib.sha256()
    for part in (machine_key, torch.__version__, version, *flags()):
        digest.update(part.encode() + b"\0")
    for source in (*SOURCES, *HEADERS):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:16]


def build(machine_key: str) -> None:
    """Build the kernels for this machine into the cache, or find them there, for workers to load:
    in a child process (python -m harness.kernels), this one never loading them. Within one process
    cpp_extension versions a second folder's build of the same module name and compiles it again
    there under another name (harness_kernels_v1), silently, that the workers then do not find: a
    parent that moved $HARNESS_HOME, as the test suite's do, paid two builds for one."""
    # a linked module in the keyed folder is the build (the key covers sources, flags, compiler):
    # no child, whose torch import would add seconds to every compare's start
    if any(_folder(machine_key).glob("harness_kernels.*so")):
        return
    done = subprocess.run(
        [sys.executable, "-m", "harness.kernels", machine_key], stdout=subprocess.PIPE, text=True
    )
    if done.returncode != 0:
        # the child's one-line refusal; anything else it printed went to stderr already
        raise HarnessError(
            done.stdout.strip() or f"--backend fused: building the kernels failed (exit {done.returncode})"
        )


def load(machine_key: str) -> ModuleType:
    """The compiled kernels for this machine: built (20 s on 2 cores) unless cached."""
    _ninja_on_path()
    return compiled(_folder(machine_key))


def _folder(machine_key: str) -> Path:
    """Where this machine's build of the current sources lives."""
    return harness_home() / "kernels" / build_key(machine_key)


@cache
def compiled(where: Path) -> ModuleType:
    """The build in `where`, made there first if it is not; once per process and folder (a process
    that changes $HARNESS_HOME, as the tests do, gets the build of the new one)."""
    from torch.utils import cpp_extension

    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(
            f"--backend fused: cannot write the kernel cache {where} ({exc.strerror})"
        ) from None
    fresh = not any(where.glob("*.so"))
    if fresh:
        print(f"building the fused kernels for this CPU in {where} (once)", file=sys.stderr, flush=True)
    log = io.StringIO()
    try:
        # cpp_extension prints ninja's output; kept, and shown only when the build fails
        with contextlib.redirect_stdout(log):
            return cpp_extension.load(
                name="harness_kernels",
                sources=[str(s) for s in SOURCES],
                extra_cflags=flags(),
                extra_ldflags=["-fopenmp"],
                build_directory=str(where),
                verbose=False,
            )
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        raise HarnessError(
            f"--backend fused: building the kernels in {where} failed ({exc}); {log.getvalue()[-2000:]}"
        ) from None
