"""The matmul roofline of each precision mode: the large-GEMM peak MFU is measured against.

A mode's GEMMs may run in more than one library: stock PyTorch sends fp32 `torch.mm` to MKL, while
oneDNN's own fp32 GEMM can be faster (as on AMD CPUs with AVX-512). So each mode's worker times a
large square matmul through every path it may take, `torch.mm` and a direct oneDNN linear, in the
mode's compute dtype, names the library and kernel from the call's own verbose output, and keeps
the best: the hardware's peak, not one library's. Each mode runs in its own worker process (its
ISA environment must be in place before oneDNN initialises). Peaks are stored under the machine's
fingerprint, where training workers find them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError
from harness.files import HOME_ENV, harness_home, writable_home, write_atomic, write_error
from harness.precision.modes import PrecisionMode
from harness.results.stats import Spread

STORE_FILE = "roofline.json"


def store_path() -> Path:
    """$HARNESS_HOME/roofline.json."""
    return harness_home() / STORE_FILE


def writable_store() -> Path:
    """store_path(), refused in one line where no write could make it (a file on the way)."""
    return writable_home() / STORE_FILE


def store_key(machine_key: str, threads: int) -> str:
    import torch

    return f"{machine_key} | {threads} threads | torch {torch.__version__}"


def _paths(mode: PrecisionMode, size: int) -> dict[str, Callable[[], object]]:
    """The ways a GEMM of this mode may run, each a ready-to-call `size`^3 matmul."""
    import torch

    dtype = getattr(torch, mode.gemm_dtype)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    paths: dict[str, Callable[[], object]] = {"torch.mm": lambda: torch.mm(a, b)}
    if torch.backends.mkldnn.is_available():
        x, w = a.to_mkldnn(), b.to_mkldnn()
        paths["oneDNN linear"] = lambda: torch._C._nn.mkldnn_linear(x, w, None)
    return paths


def _library(call: Callable[[], object]) -> tuple[str, str]:
    """(library, kernel) that computed one call, from its verbose output."""
    from harness.precision.census import Census
    from harness.precision.probe import recorded

    with recorded() as recording:
        call()
    gemms = [e for e in Census.from_verbose(recording.text, None).entries if e.gemm]
    if not gemms:
        return "pytorch", "PyTorch's own kernel"
    return gemms[0].library, f"{gemms[0].kernel} ({gemms[0].isa})"


def measure(mode: PrecisionMode, size: int, repeats: int) -> dict:
    """GFLOP/s of `size`^3 matmuls in the mode's compute dtype through every path (in the worker);
    the best path's figures at the top level."""
    import torch

    mode.apply_math_mode()
    results = []
    for name, call in _paths(mode, size).items():
        try:
            library, kernel = _library(call)
        except RuntimeError as exc:  # e.g. oneDNN has no bf16 kernel for this CPU
            results.append({"path": name, "unavailable": str(exc).splitlines()[0]})
            continue
        for _ in range(3):  # JIT kernel generation, page faults, thread start-up
            call()
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
        spread = Spread.of(rates)
        results.append(
            {
                "path": name,
                "library": library,
                "kernel": kernel,
                "gflops": spread.median,
                "gflops_p10": spread.p10,
                "gflops_p90": spread.p90,
            }
        )
    timed = [r for r in results if "gflops" in r]
    if not timed:
        raise HarnessError(f"roofline {mode.name}: no path could run ({results})")
    best = max(timed, key=lambda r: r["gflops"])
    return {
        **best,
        "paths": results,
        "size": size,
        "repeats": repeats,
        "dtype": mode.gemm_dtype,
        "threads": torch.get_num_threads(),
    }


def _read(path: Path) -> dict[str, dict[str, dict]]:
    """The store's peaks by store key and mode ({} where there is none); HarnessError naming the
    file where it is not a store this harness wrote (truncated by a crash, edited, another file)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not text
        raise HarnessError(f"{path}: not a roofline store ({exc})") from None
    if not (
        isinstance(data, dict)
        and all(isinstance(peaks, dict) for peaks in data.values())
        and all(
            isinstance(peak, dict) and isinstance(peak.get("gflops"), int | float)
            for peaks in data.values()
            for peak in peaks.values()
        )
    ):
        raise HarnessError(f"{path}: not a roofline store (expected an object of peaks by machine and mode)")
    return data


def save(machine_key: str, peaks: dict[str, dict]) -> Path:
    """Add the peaks to the store. One that cannot be read is moved aside, not overwritten: the
    figures just measured are kept either way."""
    path = writable_store()
    try:
        data = _read(path)
    except HarnessError as exc:
        aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            path.replace(aside)
        except OSError as err:
            raise write_error(path, err) from None
        print(f"warning: {exc}; moved to {aside.name}, a new store started", file=sys.stderr, flush=True)
        data = {}
    for name, peak in peaks.items():
        data.setdefault(store_key(machine_key, peak["threads"]), {})[name] = peak
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # $HARNESS_HOME a file, or on a read-only file system
        raise HarnessError(f"{HOME_ENV} {path.parent}: cannot hold {path.name} ({exc.strerror})") from None
    write_atomic(path, json.dumps(data, indent=2) + "\n")
    return path


_WARNED: set[Path] = set()


def lookup(mode_name: str, machine_key: str, threads: int) -> dict | None:
    """The stored peak of a mode on this machine and thread count, if `harness roofline` ran. An
    unreadable store counts as none stored (said once per process): a run needs no roofline."""
    path = writable_store()
    try:
        data = _read(path)
    except HarnessError as exc:
        if path not in _WARNED:
            _WARNED.add(path)
            print(f"warning: {exc}; no roofline used (harness roofline replaces it)", file=sys.stderr)
        return None
    return data.get(store_key(machine_key, threads), {}).get(mode_name)
