"""The manifest: an append-only record of every segment and import published.

The hash chain shows an event edited, inserted, reordered or removed from
between others, but not a writer's newest events removed from its end: the
last event of a chain has nothing after it to break. So each publication is
also written here, as one JSON line appended with ``O_APPEND`` and fsynced:

- ``segment``: a writer opened segment ``name``; its first event will have
  seq ``first`` and chain from ``prev``. Written after the segment's file is
  in place and before any event is written to it, so a segment holding
  events is always recorded.
- ``sealed``: segment ``name`` was sealed holding ``count`` events, seqs
  ``first`` to ``last``, the last with hash ``hash``, into a Parquet file
  whose bytes have the SHA-256 ``sha256``. Written before the file is
  published (once it is complete and fsynced aside), so a sealed file is
  always recorded, and readers can refuse one whose bytes changed since.
  Records written before digests existed have no ``sha256``.
- ``import``: an import wrote file ``name``, described the same way. Written
  before it is published.
- ``merged``: a merge wrote file ``name`` holding ``inputs`` (``[name,
  rows]`` pairs), with its ``sha256``. Written before it is published.
- ``withdrawn``: an import recorded but never published (its process died
  between the two) was cleared away.

The first line, ``{"record": "manifest", ...}``, says whether the manifest
was created with the log (``complete``: every file is recorded) or added to
a log written before manifests existed.

Writers append without a lock: each record is one small ``write`` to a file
opened with ``O_APPEND``, which the kernel never interleaves with another.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from eventlog._files import create_locked, fsync_dir

MANIFEST = "manifest.jsonl"

_encoder = msgspec.json.Encoder()


def header(*, complete: bool) -> bytes:
    """The manifest's first line."""
    return _encoder.encode({"record": "manifest", "version": 1, "complete": complete})


def ensure_manifest(log_dir: Path, staging: Path, *, complete: bool) -> Path:
    """Create the manifest with its header unless it exists; return its path.

    The header is written aside and linked into place, which fails rather
    than replaces when another process got there first, so the manifest is
    never seen without its header and never replaced once written to.
    """
    path = log_dir / MANIFEST
    if path.exists():
        return path
    tmp = staging / f".{MANIFEST}.{os.getpid()}.{os.urandom(4).hex()}"
    # Locked, so that a clean-up of staging/ leaves it alone.
    fd = create_locked(tmp)
    try:
        os.write(fd, header(complete=complete) + b"\n")
        os.fsync(fd)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.close(fd)
    fsync_dir(log_dir)
    return path


# Limitation: a write cut short in the middle of a record (a crash of the
# machine, or a full disk, between two appends of different processes) leaves
# a damaged line that `dlq verify` reports, with the record it held lost,
# because other processes append after it and it cannot be trimmed; a record
# per writer in a file of its own would lift it.
def append_record(log_dir: Path, staging: Path, record: dict[str, Any]) -> None:
    """Append one record to the manifest, durably.

    Raises:
        OSError: the disk refused the write.
    """
    path = ensure_manifest(log_dir, staging, complete=False)
    line = _encoder.encode(record) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"could not write a whole record to {path}")
        os.fsync(fd)
    finally:
        os.close(fd)


class ManifestLine(msgspec.Struct):
    """One line of the manifest as read back: its number, record or problem."""

    number: int
    record: dict[str, Any] | None
    problem: str | None


def read_manifest(path: Path) -> Iterator[ManifestLine]:
    """The manifest's lines, one at a time, without loading the whole file.

    A last line without its newline is a record a crash cut short; it is
    returned with the problem ``"torn"``.
    """
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.endswith(b"\n"):
                yield ManifestLine(number, None, "torn")
                return
            try:
                record = msgspec.json.decode(line)
            except msgspec.DecodeError as exc:
                yield ManifestLine(number, None, f"not valid JSON ({exc})")
                continue
            if not isinstance(record, dict) or "record" not in record:
                yield ManifestLine(number, None, "not a manifest record")
                continue
            yield ManifestLine(number, record, None)
