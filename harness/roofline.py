"""The matmul roofline of each precision mode: the large-GEMM peak MFU is measured against.

Each mode runs in its own worker process (its ISA environment must be in place before oneDNN
initialises), times a large square matmul in the mode's compute dtype, and reports the median
of repeated runs. The parent stores the peaks where training workers find them.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from harness.errors import HarnessError
from harness.files import write_atomic
from harness.precision import PrecisionMode

STORE_ENV = "HARNESS_HOME"


def store_path() -> Path:
    """$HARNESS_HOME/roofline.json, default ~/.cache/harness/roofline.json."""
    home = os.environ.get(STORE_ENV) or str(Path.home() / ".cache" / "harness")
    return Path(home) / "roofline.json"


def fingerprint(cpu_model: str, threads: int) -> str:
    import torch

    return f"{cpu_model} | {threads} threads | torch {torch.__version__}"


def measure(mode: PrecisionMode, size: int, repeats: int) -> dict:
    """GFLOP/s of `size`^3 matmuls in the mode's compute dtype (runs in the worker)."""
    import torch

    mode.apply_math_mode()
    dtype = getattr(torch, mode.autocast) if mode.autocast else torch.float32
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    for _ in range(3):  # JIT kernel generation, page faults, thread start-up
        torch.mm(a, b)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    rates.sort()
    return {"gflops": statistics.median(rates), "gflops_p10": rates[len(rates) // 10],
            "gflops_p90": rates[-1 - len(rates) // 10], "size": size, "repeats": repeats,
            "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads()}


def save(cpu_model: str, peaks: dict[str, dict]) -> Path:
    path = store_path()
    data = json.loads(path.read_text()) if path.is_file() else {}
    for name, peak in peaks.items():
        data.setdefault(fingerprint(cpu_model, peak["threads"]), {})[name] = peak
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=2) + "\n")
    return path


def lookup(mode_name: str, cpu_model: str, threads: int) -> dict | None:
    """The stored peak of a mode on this machine and thread count, if `harness roofline` ran."""
    path = store_path()
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get(fingerprint(cpu_model, threads), {}).get(mode_name)


def run_all(names: list[str], size: int, repeats: int, allow_emulation: bool, cores_spec: str | None) -> int:
    """Parent: one worker per mode, a table, and the store updated."""
    from harness.launch import (
        default_cores,
        parent_context,
        parse_cores,
        run_worker_capture,
        worker_environment,
    )
    from harness.platform import detect
    from harness.precision import get_precision

    platform = detect()
    cores = parse_cores(cores_spec) if cores_spec else default_cores()
    peaks, skipped = {}, []
    for name in names:
        mode = get_precision(name)
        missing = platform.lacks(mode.requires)
        if missing and not allow_emulation:
            skipped.append(f"{name} (needs {', '.join(missing)})")
            continue
        context = parent_context(mode, platform)
        code, out = run_worker_capture(
            ["roofline", "--precisions", name, "--size", str(size), "--repeats", str(repeats), "--worker"],
            worker_environment(mode, cores, context), cores)
        if code != 0:
            raise HarnessError(f"roofline worker for {name} exited with {code}")
        peaks[name] = {**json.loads(out), "emulated": bool(missing)}
        print(f"{name}: {peaks[name]['gflops']:.1f} GFLOP/s", file=sys.stderr, flush=True)
    if not peaks:
        raise HarnessError(f"no mode could run here: {'; '.join(skipped)}")
    path = save(platform.cpu_model, peaks)
    print(f"\nmatmul roofline, {size}x{size}x{size}, median of {repeats}, {len(cores)} threads, "
          f"{platform.cpu_model}")
    print(f"{'mode':<10} {'dtype':<9} {'GFLOP/s':>9} {'p10..p90':>17}  note")
    for name, p in peaks.items():
        note = "emulated: the CPU lacks this mode's features" if p["emulated"] else ""
        spread = f"{p['gflops_p10']:>8.1f}..{p['gflops_p90']:<8.1f}"
        print(f"{name:<10} {p['dtype']:<9} {p['gflops']:>9.1f} {spread}  {note}")
    for line in skipped:
        print(f"skipped: {line}")
    print(f"stored in {path}")
    return 0
