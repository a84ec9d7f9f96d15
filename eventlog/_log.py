"""A log directory: where its segments live and how they are read and sealed.

Layout (all names below the log directory)::

    segments/<writer>-<n>.jsonl    live segments, appended by one writer each
    sealed/<writer>-<n>.parquet    sealed segments, never changed again
    staging/                       imports being written, invisible to readers
    locks/                         advisory locks (one replay at a time)

A segment is known by its name ``<writer>-<n>``. When both a live and a
sealed file of the same name exist (a seal was interrupted between publishing
the Parquet file and removing the JSONL file), the sealed one is the segment
and the live one is ignored; so each event is readable exactly once at every
instant of a seal.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from eventlog._errors import DamagedLogError, LogBusyError, LogNotFoundError
from eventlog._event import ARROW_SCHEMA, decode_line
from eventlog._files import (
    create_locked,
    fsync_dir,
    is_held_by_someone,
    publish,
    remove_unheld,
    try_flock,
)

logger = logging.getLogger("eventlog")

SEGMENTS = "segments"
SEALED = "sealed"
STAGING = "staging"
LOCKS = "locks"
MARKER = "dlq-log.json"

_MARKER_TEXT = b'{"format": "dlq-event-log", "version": 1}\n'
_REQUIRED = ("event_id", "ts", "type", "writer", "seq", "hash")


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment of the log as a reader should read it right now."""

    name: str
    path: Path
    sealed: bool


class EventLog:
    """An event log stored in one directory.

    Opening a log does not read it; every read lists the directory afresh, so
    one ``EventLog`` sees what other processes append.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = False) -> EventLog:
        """Open the log at ``path``, creating an empty one if ``create``.

        Raises:
            LogNotFoundError: there is no log there and ``create`` is false.
        """
        log = cls(path)
        if not (log.path / MARKER).exists():
            if not create:
                raise LogNotFoundError(
                    f"no dead-letter queue at {log.path}: add items with "
                    "`dlq add` or `dlq import`, or point --log (or DLQ_LOG) at one"
                )
            log._create()
        return log

    def _create(self) -> None:
        for sub in (SEGMENTS, SEALED, STAGING, LOCKS):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        tmp = self.path / STAGING / f".{MARKER}.{os.getpid()}"
        tmp.write_bytes(_MARKER_TEXT)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        publish(tmp, self.path / MARKER)
        fsync_dir(self.path.parent if self.path.parent != self.path else self.path)

    # -- where things are ------------------------------------------------

    def segment_path(self, name: str, *, sealed: bool) -> Path:
        """Where the live or sealed file of segment ``name`` is stored."""
        if sealed:
            return self.path / SEALED / f"{name}.parquet"
        return self.path / SEGMENTS / f"{name}.jsonl"

    def staging_path(self, name: str) -> Path:
        """A private file for writing aside before publishing."""
        return self.path / STAGING / name

    def segments(self) -> list[Segment]:
        """The segments to read, sealed in preference to live, in name order."""
        # Live first: a seal publishes the Parquet file before it removes the
        # JSONL one, so a segment sealed between the two listings is still in
        # one of them (listing sealed first could miss it in both).
        live = _names(self.path / SEGMENTS, ".jsonl")
        sealed = _names(self.path / SEALED, ".parquet")
        found = [
            Segment(name, self.segment_path(name, sealed=True), True) for name in sealed
        ]
        found += [
            Segment(name, self.segment_path(name, sealed=False), False)
            for name in live - sealed
        ]
        return sorted(found, key=lambda s: s.name)

    # -- reading ---------------------------------------------------------

    def read_segment(
        self, segment: Segment, columns: list[str] | None = None
    ) -> pa.Table:
        """Read one segment as an Arrow table with the event schema.

        Raises:
            DamagedLogError: the file is not a valid segment.
            FileNotFoundError: the segment was sealed or removed meanwhile.
        """
        if segment.sealed:
            try:
                return pq.read_table(segment.path, columns=columns, schema=ARROW_SCHEMA)
            except FileNotFoundError:
                raise
            except (pa.ArrowException, OSError) as exc:
                raise DamagedLogError(str(segment.path), None, str(exc)) from exc
        table = read_live_segment(segment.path)
        return table.select(columns) if columns is not None else table

    def iter_tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Every segment's events, one Arrow table per segment, in name order.

        A segment sealed while this runs is read from its sealed file.
        """
        for segment in self.segments():
            try:
                yield self.read_segment(segment, columns)
            except FileNotFoundError:
                if segment.sealed:
                    raise
                sealed = Segment(
                    segment.name, self.segment_path(segment.name, sealed=True), True
                )
                yield self.read_segment(sealed, columns)

    def failure_ids(self) -> set[str]:
        """Every ``failure_id`` recorded in the log."""
        seen: set[str] = set()
        for table in self.iter_tables(["failure_id"]):
            column = table.column("failure_id").drop_null()
            seen.update(column.to_pylist())
        return seen

    # -- sealing ---------------------------------------------------------

    def seal(self, name: str) -> bool:
        """Seal live segment ``name`` into Parquet; False if nothing to seal.

        The steps, each safe to be interrupted: write the Parquet file aside
        and fsync it; rename it into ``sealed/`` (from here readers use it);
        remove the JSONL file. A crash before the rename leaves the live
        segment as it was; a crash after it leaves a JSONL file that readers
        ignore and the next seal removes.
        """
        live = self.segment_path(name, sealed=False)
        final = self.segment_path(name, sealed=True)
        if final.exists():
            _remove(live)
            return False
        try:
            table = read_live_segment(live)
        except FileNotFoundError:
            return False  # not live, or another process sealed it meanwhile
        # Locked while it exists, so that another process's seal_abandoned
        # does not take it for a leftover; named uniquely, since two threads
        # may seal the same segment at once.
        tmp = self.staging_path(f".{name}.parquet.{secrets.token_hex(6)}")
        fd = create_locked(tmp)
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.fsync(fd)
            publish(tmp, final)
        finally:
            _remove(tmp)
            os.close(fd)
        _remove(live)
        logger.debug("sealed segment %s (%d events)", name, table.num_rows)
        return True

    def seal_abandoned(self) -> int:
        """Seal every live segment whose writer is gone; return how many.

        A writer holds a lock on its live segment for as long as it runs, so
        a segment that nobody holds belongs to a writer that closed or died.
        """
        count = 0
        for segment in self.segments():
            if segment.sealed:
                _remove(self.segment_path(segment.name, sealed=False))
                continue
            if is_held_by_someone(segment.path):
                continue
            if self.seal(segment.name):
                count += 1
        self._clean_leftovers()
        return count

    def _clean_leftovers(self) -> None:
        """Remove what interrupted imports, seals and segment creations left."""
        for path in (self.path / STAGING).iterdir():
            remove_unheld(path)
        for path in (self.path / SEGMENTS).glob(".*.jsonl"):
            remove_unheld(path)

    # -- locks -----------------------------------------------------------

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold the log-wide lock ``name`` for the duration of the block.

        Raises:
            LogBusyError: another process holds it.
        """
        path = self.path / LOCKS / f"{name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not try_flock(fd):
                raise self._busy(name, fd)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            os.close(fd)

    def check_free(self, name: str) -> None:
        """Refuse at once if another process holds the log-wide lock ``name``.

        Unlike :meth:`exclusive`, it creates and writes no file, so a command
        can refuse before its checks, and take the lock only to write.

        Raises:
            LogBusyError: another process holds it.
        """
        path = self.path / LOCKS / f"{name}.lock"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return  # never taken
        try:
            if not try_flock(fd):
                raise self._busy(name, fd)
        finally:
            os.close(fd)  # which also lets go of the lock if it was taken

    def _busy(self, name: str, fd: int) -> LogBusyError:
        return LogBusyError(
            f"another `{name}` is already running on {self.path}{_read_holder(fd)}; "
            "wait for it to finish"
        )


def read_live_segment(path: Path) -> pa.Table:
    """Read a JSONL segment's complete lines as an Arrow table.

    Bytes after the last newline are a torn write (a crash or a write still
    under way) and are not events. Any other line that is not a valid event
    is an error naming the file and the line.

    Raises:
        DamagedLogError: a complete line is not a valid event.
    """
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if not complete:
        return ARROW_SCHEMA.empty_table()
    try:
        table = _parse_lines(complete)
        if (
            all(table.column(c).null_count == 0 for c in _REQUIRED)
            and not pc.any(pc.equal(table.column("event_id"), "")).as_py()
        ):
            return table.select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA)
    except pa.ArrowInvalid:
        pass
    _raise_first_damage(path, complete)
    raise DamagedLogError(str(path), None, "not a valid segment")


def _parse_lines(data: bytes) -> pa.Table:
    """Parse complete JSONL lines into a table; raises ``pa.ArrowInvalid``."""
    return pa_json.read_json(
        io.BytesIO(data),
        read_options=pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1),
        parse_options=pa_json.ParseOptions(
            explicit_schema=ARROW_SCHEMA,
            unexpected_field_behavior="error",
            newlines_in_values=False,
        ),
    )


def _raise_first_damage(path: Path, complete: bytes) -> None:
    """Find the first line that is not a valid event and raise naming it."""
    for number, line in enumerate(complete.splitlines(), start=1):
        try:
            event = decode_line(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DamagedLogError(str(path), number, str(exc)) from None
        if not (event.event_id and event.ts and event.writer and event.hash):
            raise DamagedLogError(str(path), number, "event lacks its id or hash")
        # What the event decoder lets through but Arrow refuses: an unknown
        # field, an integer out of its column's range, a malformed time.
        try:
            _parse_lines(line + b"\n")
        except pa.ArrowInvalid as exc:
            raise DamagedLogError(str(path), number, str(exc)) from None


def _names(directory: Path, suffix: str) -> set[str]:
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return set()
    return {
        entry[: -len(suffix)]
        for entry in entries
        if entry.endswith(suffix) and not entry.startswith(".")
    }


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (process {pid})" if pid else ""
