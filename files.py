"""Files that are never half-written, and folders that one process owns at a time.

Every file the scripts write goes through `atomic_write`: a temporary name beside the target, flushed
and fsynced, then renamed over it (and the folder fsynced), so a crash, a kill or a power cut leaves
either the old file or the new one, never a mix. A write that fails (no space, read-only folder, no
permission) becomes one `WriteError` naming the path, and the temporary file is removed. `hold_lock`
keeps a second process out of a run folder or an output file while the first works on it.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


class WriteError(Exception):
    """A file that could not be written; the message names it and says why."""


class LockedError(Exception):
    """A folder or file another process is working on; the message names it and that process."""


def previous_path(path: Path) -> Path:
    """Where `atomic_write(..., keep_previous=True)` keeps the file it replaces: previous-<name>."""
    return path.with_name(f"previous-{path.name}")


def write_failure(err: BaseException, folder: Path) -> str:
    """Why a write failed, in words. torch.save reports a full disk as a RuntimeError of its own, so a
    folder with (almost) no space left is named as the cause whatever the exception says."""
    try:
        full = shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        full = False
    if isinstance(err, OSError) and err.strerror:
        return err.strerror[0].lower() + err.strerror[1:]
    if full or getattr(err, "errno", None) == errno.ENOSPC:
        return "no space left on device"
    return str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__


def fsync_path(path: Path, directory: bool = False) -> None:
    """Flush a file (or a folder's entries, after a rename in it) from the OS's cache to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, keep_previous: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new content to. When the block ends, the temporary file
    is fsynced and renamed to `path` (with `keep_previous`, the file it replaces is first renamed to
    previous-<name>); when the block or the write fails, the temporary file is removed, and an OSError
    or a writer's RuntimeError becomes a WriteError naming `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # unique per process and thread
    try:
        yield tmp
        fsync_path(tmp)
        if keep_previous and path.exists():
            os.replace(path, previous_path(path))
        os.replace(tmp, path)
        fsync_path(path.parent, directory=True)
    except (OSError, RuntimeError) as err:
        why = write_failure(err, path.parent)  # before the unlink frees the space that tells a full disk
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise WriteError(f"cannot write {path}: {why}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """A text file (JSON, Markdown), written atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def make_folder(folder: str | Path) -> Path:
    """mkdir -p, with a failure as a WriteError naming the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(f"cannot create {folder}: {write_failure(err, folder.parent)}") from None
    return folder


def check_writable(folder: str | Path) -> None:
    """Create and remove a file in `folder` now, so an unwritable folder stops a job before its work, not
    at its first save."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise WriteError(f"cannot write in {folder}: {write_failure(err, Path(folder))}") from None


@contextlib.contextmanager
def hold_lock(lock_file: str | Path, what: str) -> Iterator[None]:
    """An exclusive advisory lock (flock) on `lock_file` for the block; a second process asking for it
    gets a LockedError at once instead of waiting. The file records the holder's pid and is left in
    place afterwards (removing a lock file races with a process that has just opened it)."""
    lock_file = Path(lock_file)
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise WriteError(f"cannot write {lock_file}: {write_failure(err, lock_file.parent)}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise LockedError(f"{what} is in use by another process (pid {holder}); wait for it to finish") from None
        with contextlib.suppress(OSError):  # the holder's pid is for the message above: a full disk may refuse it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
