"""Writing result files so that a reader never sees half of one."""

from __future__ import annotations

from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write `text` under a temporary name beside `path`, then rename it over `path`: a crash
    leaves either the old file or the new one, never a truncated mix."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
