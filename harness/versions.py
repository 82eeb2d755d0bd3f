"""Versions of the libraries a measurement depends on, recorded with every result."""

from __future__ import annotations

import importlib.metadata
import platform
import re

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
    return versions
