"""Writing result files so that a reader never sees half of one, and a failed write leaves none;
one writer per folder.

A write that fails becomes one line naming the path: a full disk exits with DISK_FULL_EXIT (the
run's figures so far are kept, the temporary files removed), any other failure (a read-only file
system, a folder where a file should be) with 2.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from harness.errors import HarnessError

DISK_FULL_EXIT = 5

HOME_ENV = "HARNESS_HOME"


def harness_home() -> Path:
    """$HARNESS_HOME, default ~/.cache/harness: the roofline store, the default data set and the
    fused kernels' builds live under it."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "harness")


def writable_home() -> Path:
    """harness_home(), refused in one line where no write could make it (a file on the way)."""
    home = harness_home()
    check_folder(home, f"${HOME_ENV}" if os.environ.get(HOME_ENV) else "the harness's cache")
    return home


@contextlib.contextmanager
def folder_lock(folder: Path, flag: str, wait: bool = False) -> Iterator[None]:
    """FOLDER held by this process while the block runs: a second process that would write it
    refuses while the first is alive (waits for it, with `wait`, where the block is short). The
    lock is the kernel's flock on the folder itself, so it goes with its process however that ends
    (SIGKILL included) and leaves no file behind. The folders it creates are removed again if the
    block fails before writing in them: a run refused for its settings leaves no empty output
    folder behind."""
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # the deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:  # a read-only file system, a file on the way
        raise HarnessError(f"{flag} {folder}: cannot be written ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HarnessError(f"{flag} {folder}: {_holder(folder)}; wait until it ends") from None
        _HELD.add(fd)
        yield
    except BaseException:
        _remove_empty(created)
        raise
    finally:
        _HELD.discard(fd)
        os.close(fd)  # which drops the lock


_HELD: set[int] = set()


def _remove_empty(folders: list[Path]) -> None:
    """rmdir each folder, the deepest first, up to the first that is not empty."""
    for f in folders:
        try:
            f.rmdir()
        except OSError:
            return


def drop_inherited_locks() -> None:
    """In a process forked from a lock's holder (a DataLoader worker): close its copies of the
    locked descriptors. A flock belongs to the descriptor, which fork shares; without this the
    lock would outlive a holder that crashed for as long as its workers take to notice."""
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


def _holder(folder: Path) -> str:
    """Who holds the folder's lock, from /proc/locks ("1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE ...")."""
    st = os.stat(folder)
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with contextlib.suppress(OSError):
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == key:
                return f"in use by process {fields[4]}"
    return "in use by another process"


NAME_MAX = 255
"""Longest file name, in bytes, that Linux's file systems take."""


def check_folder(folder: Path, what: str) -> None:
    """Refuse, in one line, a folder to write that no write could make: a name longer than
    NAME_MAX, or a file at it or on the way to it. Checked up front, so that nothing is half
    written when the first write fails."""
    for part in folder.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise HarnessError(
                f"{what} {folder}: the name {part[:16]}... is {len(os.fsencode(part))} bytes long; "
                f"file names take at most {NAME_MAX}"
            )
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise HarnessError(f"{what} {folder}: {existing} is a file; expected a directory")


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
        with contextlib.suppress(OSError):  # on a read-only file system there is none to remove
            tmp.unlink(missing_ok=True)
        raise write_error(path, exc, len(text.encode())) from None
