"""Writing result files so that a reader never sees half of one, and a failed write leaves none.

A write that fails becomes one line naming the path: a full disk exits with DISK_FULL_EXIT (the
run's figures so far are kept, the temporary files removed), any other failure (a read-only file
system, a folder where a file should be) with 2.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from harness.errors import HarnessError

DISK_FULL_EXIT = 5


def write_error(path: Path, exc: OSError, needed: int | None = None) -> HarnessError:
    """The one line for a file that could not be written; `needed`: its size in bytes, if known."""
    if exc.errno == errno.ENOSPC:
        existing = next(p for p in (path, *path.parents) if p.exists())
        free = shutil.disk_usage(existing).free
        need = f", {needed / 2**20:.1f} MiB needed" if needed is not None else ""
        return HarnessError(
            f"{path}: no space left on the device ({free / 2**20:.1f} MiB free{need})", DISK_FULL_EXIT
        )
    return HarnessError(f"{path}: cannot be written ({exc.strerror or exc})")


def write_atomic(path: Path, text: str) -> None:
    """Write `text` under a temporary name beside `path`, then rename it over `path`: a crash
    leaves either the old file or the new one, never a truncated mix."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, exc, len(text.encode())) from None
