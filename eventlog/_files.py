"""Small file-system helpers: durable renames and advisory locks."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (created, renamed, removed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex, read in chunks.

    Raises:
        OSError: the file cannot be read (FileNotFoundError if it is gone).
    """
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def publish(tmp: Path, final: Path) -> None:
    """Atomically give a fully written, fsynced file its visible name."""
    os.replace(tmp, final)
    fsync_dir(final.parent)


def try_flock(fd: int) -> bool:
    """Take an exclusive advisory lock on an open file without waiting."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def create_locked(path: Path) -> int:
    """Create ``path`` and lock it before a cleaner can take it for abandoned.

    A cleaner (:func:`remove_unheld`) removes a file only while it holds the
    file's lock, so a file still linked once we hold the lock stays ours.
    Returns the open descriptor, which holds the lock until it is closed.

    Raises:
        FileExistsError: ``path`` exists already.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a cleaner holds it only for a moment
        if os.fstat(fd).st_nlink > 0:
            return fd
        os.close(fd)  # a cleaner removed it before we locked it: again


def remove_unheld(path: Path) -> None:
    """Remove ``path`` unless a live process holds its lock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        if not try_flock(fd):
            return
        # Remove it only if the name still leads to the file we locked.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.unlink(path)
    finally:
        os.close(fd)


def is_held_by_someone(path: Path) -> bool:
    """Whether a live process holds the advisory lock on ``path``.

    The lock dies with its process, so a file whose writer crashed is not held.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        if try_flock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True
    finally:
        os.close(fd)
