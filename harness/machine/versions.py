"""Versions of the libraries a measurement depends on, recorded with every result."""

from __future__ import annotations

import importlib.metadata
import platform
import re
import subprocess
from pathlib import Path

import torch

_PACKAGES = ("harness", "torch", "numpy", "tfrecord", "mlperf-logging", "pandas", "py-cpuinfo")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    # torch exposes no API for its bundled oneDNN and MKL versions; its build summary names them.
    build = torch.__config__.show()
    onednn = re.search(r"MKL-DNN v([\d.]+)", build)
    mkl = re.search(r"Math Kernel Library Version ([\w.]+)", build)
    versions["onednn"] = onednn.group(1) if onednn else None
    versions["mkl"] = mkl.group(1) if mkl else None
    versions["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    versions["harness_commit"] = _harness_commit()
    return versions


def _harness_commit() -> str | None:
    """The commit of a harness checkout (with -dirty for local changes), so that run sets from
    two commits can be told apart; None for an installed copy outside git."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
