"""Small file-system helpers: durable renames and advisory locks."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (created, renamed, removed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
