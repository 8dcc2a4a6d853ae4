"""A machine-local cache of objects a server derives from published models at load (compiled
ranker trees, HNSW graphs): made by one process, loaded by the others and by the next start.

The cache holds files the server loads and trusts (machine code, faiss graphs), so it is used
only in a directory this user owns and no other user can write; a file appears under its final
name only when complete (written aside, then renamed), and a lock per key lets one process make
it while the others wait and load it."""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def private_dir(path: Path, what: str) -> Path | None:
    """`path`, created if missing, when only this user can write it; else None (no cache).
    `what` names the cached objects in the warning."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = path.stat()
    except OSError as error:
        log.warning("%s are not cached: %s", what, error)
        return None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        log.warning("%s are not cached: %s is writable by other users", what, path)
        return None
    return path


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (a lock file next to the cached object) for the block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def partial_path(target: Path) -> Path:
    """Where to write `target` before publish(): same directory, a name no reader looks for."""
    return target.with_suffix(f".{os.getpid()}.partial")


def publish(partial: Path, target: Path) -> None:
    """Rename the complete file into place: a reader never sees part of it."""
    os.replace(partial, target)


def touch(target: Path) -> None:
    """Mark a cached file used now (prune() keeps the most recently used)."""
    try:
        os.utime(target)
    except OSError:  # pruned meanwhile by another process: it was read already
        pass


def prune(directory: Path, suffix: str, keep: int) -> list[Path]:
    """Delete all but the `keep` most recently used files ending in `suffix` (each with its lock
    file), so the cache does not grow by one object per published model for ever. A file whose
    lock another process holds (it is making or reading it) is left alone. Returns the deleted."""

    def used(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    files = sorted(directory.glob(f"*{suffix}"), key=used, reverse=True)
    deleted = []
    for path in files[keep:]:
        lock = path.with_suffix(".lock")
        try:
            with open(lock, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)
                lock.unlink(missing_ok=True)
                deleted.append(path)
        except (BlockingIOError, FileNotFoundError):
            continue
    return deleted
