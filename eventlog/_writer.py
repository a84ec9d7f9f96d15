"""Appending events: one writer per process, durable group commits.

A writer owns its segments: nobody else appends to them, so processes never
wait for each other. Each event is stamped (time, id, sequence number, and a
hash chaining it to the writer's previous event) under a short lock, then
written. Appends that arrive while a write and fsync are under way are
gathered and committed together by the next one, so a busy writer pays one
fsync per batch rather than one per event.
"""

from __future__ import annotations

import getpass
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from typing import BinaryIO

from eventlog._errors import WriterFailedError
from eventlog._event import (
    GENESIS_HASH,
    Event,
    canonical_bytes,
    chain_hash,
    encode_line,
    event_values,
    format_ts_us,
    make_event_id,
)
from eventlog._files import create_locked, fsync_dir
from eventlog._log import EventLog

logger = logging.getLogger("eventlog")

# A live segment is sealed and a new one started past this size, which also
# bounds what readers must parse from JSONL. Sealing parses the whole segment
# at once, at about six times its size in memory, so this bounds a long
# replay's peak too (at 32 MiB, sealing alone took some 190 MiB).
SEGMENT_MAX_BYTES = 8 * 1024 * 1024


def _whoami() -> tuple[str, str, int]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return user, socket.gethostname(), os.getpid()


# The integer fields callers fill in, with the bits their Arrow column holds.
_INTEGER_BITS = (("v", 32), ("attempt", 64), ("exit_code", 64), ("signal", 64),
                 ("duration_ms", 64))  # fmt: skip


def _check_integers(event: Event) -> None:
    """Refuse an integer its column cannot hold: one such line makes the whole
    segment unreadable."""
    for name, bits in _INTEGER_BITS:
        value = getattr(event, name)
        if isinstance(value, bool):  # an int to Python and mypy, not to Arrow
            raise ValueError(f"`{name}` is {value}, not an integer")
        if value is not None and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            raise ValueError(
                f"`{name}` is {value}, outside the {bits}-bit range the log stores"
            )


class Stamper:
    """Gives events their id, time, author, sequence number and chained hash.

    Not thread-safe: callers serialise access.
    """

    def __init__(self, writer_id: str | None = None) -> None:
        self.writer_id = writer_id or secrets.token_hex(6)
        self.user, self.host, self.pid = _whoami()
        self.seq = 0
        self.prev_hash = GENESIS_HASH
        self.last_us = 0

    def stamp(self, event: Event) -> tuple[Event, bytes]:
        """Stamp a new ``event`` in place; return it and its stored line."""
        micros = max(time.time_ns() // 1000, self.last_us)
        self.last_us = micros
        self.seq += 1
        event.event_id = make_event_id(micros, self.writer_id, self.seq)
        event.ts = format_ts_us(micros)
        event.user = self.user
        event.host = self.host
        event.pid = self.pid
        event.writer = self.writer_id
        event.seq = self.seq
        event.hash = self.link(canonical_bytes(event_values(event)))
        return event, encode_line(event)

    def link(self, canonical: bytes) -> str:
        """Chain the next event's canonical bytes; return its hash."""
        self.prev_hash = chain_hash(self.prev_hash, canonical)
        return self.prev_hash

    def snapshot(self) -> tuple[int, str, int]:
        return self.seq, self.prev_hash, self.last_us

    def restore(self, state: tuple[int, str, int]) -> None:
        self.seq, self.prev_hash, self.last_us = state


class LogWriter:
    """Appends events to a log; safe to share between threads.

    Use as a context manager, or call :meth:`close`, which seals the live
    segment into Parquet.
    """

    def __init__(self, log: EventLog, *, segment_max_bytes: int = SEGMENT_MAX_BYTES):
        self.log = log
        self._stamper = Stamper()
        self._segment_max_bytes = segment_max_bytes
        self._segment_no = 0
        self._file: BinaryIO | None = None
        self._segment_name = ""
        self._size = 0
        self._cond = threading.Condition()
        self._pending: list[bytes] = []
        self._stamped = 0
        self._durable = 0
        self._durable_state = self._stamper.snapshot()
        self._flushing = False
        self._failed: BaseException | None = None
        self._closed = False

    @property
    def writer_id(self) -> str:
        return self._stamper.writer_id

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def append(self, events: Sequence[Event]) -> list[Event]:
        """Append events in order; return them once they are durable.

        The events are stamped in place (id, time, author, hash), so each must
        be new: appending the same object twice raises ``ValueError``.

        Raises:
            WriterFailedError: the write failed (the events were not kept).
            ValueError: an event was appended before, or holds a value the
                log cannot store (an integer out of its column's range, a
                string that is not valid unicode); none of the events was kept.
        """
        ticket = self.submit(events)
        self.wait_durable(ticket)
        return list(events)

    def submit(self, events: Sequence[Event]) -> int:
        """Stamp events and queue them to be written, without waiting.

        Events are ordered in the log as they are submitted, so a caller that
        must keep an order across threads (an event loop handing the waiting
        to worker threads) submits from one thread, then waits elsewhere.

        Returns:
            A ticket for :meth:`wait_durable`.

        Raises:
            WriterFailedError: the writer failed earlier.
            ValueError: as for :meth:`append`; none of the events was queued.
        """
        with self._cond:
            self._check_usable()
            if any(event.hash for event in events):
                raise ValueError("an event can be appended only once")
            for event in events:
                _check_integers(event)
            state = self._stamper.snapshot()
            stamped, lines = [], []
            try:
                for event in events:
                    done, line = self._stamper.stamp(event)
                    stamped.append(done)
                    lines.append(line)
            except BaseException:
                # An event that cannot be encoded: keep none of this call.
                self._stamper.restore(state)
                for done in stamped:
                    done.hash = ""
                raise
            self._pending += lines
            self._stamped += len(events)
            return self._stamped

    def wait_durable(self, ticket: int) -> None:
        """Return once the events submitted with ``ticket`` are durable.

        Raises:
            WriterFailedError: the write failed (those events were not kept).
        """
        with self._cond:
            while self._durable < ticket:
                self._check_usable()
                if self._flushing:
                    self._cond.wait()
                else:
                    self._lead_flush()

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise WriterFailedError(
                f"could not write to the log at {self.log.path}: {self._failed}"
            ) from self._failed
        if self._closed:
            raise WriterFailedError("this log writer is closed")

    def _lead_flush(self) -> None:
        """Write and fsync everything stamped so far (called holding the lock)."""
        batch, upto, state = self._pending, self._stamped, self._stamper.snapshot()
        self._pending = []
        self._flushing = True
        self._cond.release()
        error: OSError | None = None
        try:
            self._write(b"".join(batch))
        except OSError as exc:
            error = exc
        finally:
            self._cond.acquire()
            self._flushing = False
            self._cond.notify_all()
        if error is not None:
            self._fail(error)
            self._check_usable()
        self._durable = upto
        self._durable_state = state

    def _write(self, data: bytes) -> None:
        if self._file is None:
            self._open_segment()
        assert self._file is not None
        fd = self._file.fileno()
        start = self._size
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError:
            # Remove what part of the batch reached the file, so the segment
            # ends with the last acknowledged event rather than a torn line
            # that later appends would bury in the middle of the file.
            try:
                os.ftruncate(fd, start)
                os.fsync(fd)
            except OSError:
                logger.warning("could not trim a failed write from %s", self._file.name)
            raise
        self._size = start + len(data)
        if self._size >= self._segment_max_bytes:
            self._close_segment(seal=True)

    def _open_segment(self) -> None:
        self._segment_no += 1
        name = f"{self.writer_id}-{self._segment_no:06d}"
        path = self.log.segment_path(name, sealed=False)
        # Lock the file under a hidden name before giving it its own: a live
        # segment that is visible but not locked looks abandoned, and
        # `seal_abandoned` would seal and remove it under this writer. An empty
        # hidden file left by a crash between the two steps is unlocked, and
        # `seal_abandoned` removes it.
        hidden = path.with_name(f".{path.name}")
        fh = os.fdopen(create_locked(hidden), "wb", buffering=0)
        os.rename(hidden, path)
        self._segment_name = name
        fsync_dir(path.parent)
        logger.debug("opened segment %s", name)
        self._file = fh
        self._size = 0
        # Recorded once the file is in place and before any event is in it:
        # a crash in between leaves an empty segment, and a segment holding
        # events is always in the manifest (so its removal can be seen).
        seq, prev_hash, _ = self._durable_state
        self.log.record(
            {
                "record": "segment",
                "name": name,
                "writer": self.writer_id,
                "first": seq + 1,
                "prev": prev_hash,
            }
        )

    def _close_segment(self, *, seal: bool) -> None:
        fh, self._file = self._file, None
        if fh is None:
            return
        name = self._segment_name
        fh.close()
        if seal:
            try:
                self.log.seal(name)
            except Exception:
                # The events are durable in the live segment; `dlq compact`
                # seals it later.
                logger.warning("could not seal segment %s", name, exc_info=True)

    def _fail(self, error: BaseException) -> None:
        self._failed = error
        self._pending = []
        self._stamper.restore(self._durable_state)
        self._stamped = self._durable
        self._close_segment(seal=False)

    def close(self) -> None:
        """Seal the live segment; further appends raise."""
        with self._cond:
            while self._flushing:
                self._cond.wait()
            if self._closed:
                return
            self._closed = True
            self._close_segment(seal=self._failed is None)
