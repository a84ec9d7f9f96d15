"""Bulk import: all of an input's items enter the log, or none do.

The input is streamed: records are validated, stamped and written in batches
to a Parquet file aside (in ``staging/``). Only when the whole input was valid
and the file is durable is it renamed into ``sealed/``, which publishes every
event at once. A crash or an invalid line leaves the log as it was.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from eventlog._errors import InvalidItemError, InvalidRecordError
from eventlog._event import (
    ARROW_SCHEMA,
    SCHEMA_VERSION,
    Event,
    format_ts_us,
)
from eventlog._files import create_locked, file_digest, publish
from eventlog._log import DIGEST, EventLog
from eventlog._writer import LogWriter, Stamper

logger = logging.getLogger("eventlog")

# A record larger than this is refused rather than held in memory.
MAX_RECORD_BYTES = 4 * 1024 * 1024

# Items are stamped and turned into Arrow columns this many at a time: small
# enough for the lists to stay in the CPU's caches (a third faster than
# 50,000), and gathered into row groups of about ROW_GROUP rows.
_BATCH = 8192
ROW_GROUP = 6 * _BATCH


class EnqueueRecord(msgspec.Struct, forbid_unknown_fields=True):
    """One failed item as `dlq add` and `dlq import` accept it."""

    item_id: str
    job_id: str | None = None
    # Kept as the JSON text it was given in: validated, never re-encoded.
    payload: msgspec.Raw = msgspec.Raw(b"")
    error: str | None = None
    error_type: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    command: str | None = None
    correlation_id: str | None = None
    failure_id: str | None = None
    output: str | None = None


_record_decoder = msgspec.json.Decoder(EnqueueRecord)

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _CheckedRecord(msgspec.Struct, forbid_unknown_fields=True):
    """:class:`EnqueueRecord` with the limits msgspec can check while it
    decodes, in C: an import checks a million records without a Python call
    each. A record it refuses is decoded again as an :class:`EnqueueRecord`
    to tell what is wrong in the usual words."""

    item_id: _Id
    job_id: _Id | None = None
    payload: msgspec.Raw = msgspec.Raw(b"")
    error: str | None = None
    error_type: str | None = None
    exit_code: _Int64 | None = None
    signal: _Int64 | None = None
    command: str | None = None
    correlation_id: _Id | None = None
    failure_id: _Id | None = None
    output: str | None = None


_checked_decoder = msgspec.json.Decoder(_CheckedRecord)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did."""

    imported: int
    duplicates: int


def check_record(record: EnqueueRecord) -> str | None:
    """Return what is wrong with a record, or None if it is valid."""
    # The fields every record has are checked without a loop: this runs once
    # per imported line.
    if _bad_id(record.item_id):
        return _id_problem("item_id", record.item_id)
    if record.job_id is not None and _bad_id(record.job_id):
        return _id_problem("job_id", record.job_id)
    for field in ("correlation_id", "failure_id"):
        value = getattr(record, field)
        if value is not None and _bad_id(value):
            return _id_problem(field, value)
    for field in ("exit_code", "signal"):
        number = getattr(record, field)
        if number is not None and not _INT64_MIN <= number <= _INT64_MAX:
            return f"`{field}` is {number}, outside the 64-bit range the log stores"
    return None


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _bad_id(value: str) -> bool:
    return not value or len(value) > 1024 or "\x00" in value or value.isspace()


def _id_problem(field: str, value: str) -> str:
    if len(value) > 1024:
        return f"`{field}` is longer than 1024 characters"
    if "\x00" in value:
        return f"`{field}` must not contain a NUL character"
    return f"`{field}` must not be empty"


def enqueue_event(record: EnqueueRecord) -> Event:
    """The ``item_enqueued`` event that records a failed item."""
    job_id, correlation_id, payload = _defaults(record)
    return Event(
        type="item_enqueued",
        item_id=record.item_id,
        job_id=job_id,
        correlation_id=correlation_id,
        payload=payload,
        command=record.command,
        exit_code=record.exit_code,
        signal=record.signal,
        error_type=record.error_type,
        error=record.error,
        output=record.output,
        failure_id=record.failure_id,
    )


def _defaults(record: EnqueueRecord) -> tuple[str, str, str | None]:
    """The job, correlation id and payload text an enqueue records."""
    payload = bytes(record.payload)
    return (
        record.job_id if record.job_id is not None else "default",
        record.correlation_id or record.item_id,
        payload.decode("utf-8") if payload else None,
    )


def new_record(
    item_id: str, *, payload: str | None = None, **fields: Any
) -> EnqueueRecord:
    """Build a record from separate values, as `dlq add` gets them.

    Args:
        item_id: the item's id.
        payload: the item's data as JSON text, or None.
        **fields: any other field of :class:`EnqueueRecord`.

    Raises:
        InvalidItemError: a value is not valid (names which and why).
    """
    if payload is not None:
        try:
            msgspec.json.decode(payload)
        except RecursionError as exc:
            raise InvalidItemError(f"the payload: {_describe(exc)}") from None
        except msgspec.DecodeError as exc:
            raise InvalidItemError(f"the payload is not valid JSON ({exc})") from None
        fields["payload"] = msgspec.Raw(payload.encode("utf-8"))
    record = EnqueueRecord(item_id=item_id, **fields)
    problem = check_record(record)
    if problem:
        raise InvalidItemError(problem)
    return record


def enqueue_items(log: EventLog, records: Sequence[EnqueueRecord]) -> list[Event]:
    """Append one ``item_enqueued`` event per record, durably, in one commit."""
    with LogWriter(log) as writer:
        return writer.append([enqueue_event(record) for record in records])


# msgspec decodes nested JSON by recursion, and a record nested deeper than
# Python's recursion limit (about a thousand levels) raises RecursionError.
# Limitation: a record nested deeper than about 950 levels is refused as too
# deep, because the depth the decoder reaches is Python's recursion limit
# less the stack already in use; a decoder with its own stack would lift it.
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)


def _describe(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "the JSON is nested too deeply for dlq to read"
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        return text.replace("`$.", "`").replace("Object missing", "missing")
    return f"not valid JSON ({text})"


def _too_long(source: str, number: int, size: int) -> InvalidRecordError:
    return InvalidRecordError(
        source,
        number,
        # Reading stops soon after the limit, so the size is a lower bound.
        f"the record is at least {size} bytes, more than the "
        f"{MAX_RECORD_BYTES} a record may have",
    )


def iter_chunks(stream: BinaryIO, source: str) -> Iterator[list[bytes]]:
    """The input's lines without their newlines, a chunk's worth at a time.

    Blank lines are included, because they count in line numbers.

    Raises:
        InvalidRecordError: a line is longer than :data:`MAX_RECORD_BYTES`,
            raised once the lines before it were yielded (so that an invalid
            line before it is reported first). Such a line is never held
            whole: reading stops a chunk past the limit.
    """
    number = 0
    rest = b""
    while chunk := stream.read(_CHUNK):
        # Splitting a chunk in C is several times faster than a readline per
        # line, which the import rate depends on.
        data = rest + chunk
        lines = data.split(b"\n")
        rest = lines.pop()
        if len(data) > MAX_RECORD_BYTES:
            for index, line in enumerate(lines):
                if len(line) > MAX_RECORD_BYTES:
                    yield lines[:index]
                    raise _too_long(source, number + index + 1, len(line))
        yield lines
        number += len(lines)
        if len(rest) > MAX_RECORD_BYTES:
            raise _too_long(source, number + 1, len(rest))
    if rest:
        yield [rest]


# Reading this much at a time gives chunks of about 4,000 lines: enough to
# make the work per chunk negligible, and few enough for a chunk's rows to
# stay in the CPU's caches while they are stamped and turned into columns.
_CHUNK = 1024 * 1024


def import_records(log: EventLog, stream: BinaryIO, *, source: str) -> ImportResult:
    """Import JSON Lines items from ``stream``, all or nothing.

    A record whose ``failure_id`` is already in the log (or earlier in the
    same input) is skipped and counted as a duplicate.

    Raises:
        InvalidRecordError: a line is invalid; nothing was imported.
        OSError: the disk refused the write; nothing was imported.
    """
    with staged_segment(log, source) as staged:
        stamping = _Stamping(staged.stamper, source, log.failure_ids())
        for lines in iter_chunks(stream, source):
            table = stamping.stamp(lines)
            if table is not None:
                staged.add(table)
    if stamping.duplicates:
        logger.debug(
            "import from %s: skipped %d duplicates", source, stamping.duplicates
        )
    return ImportResult(imported=stamping.imported, duplicates=stamping.duplicates)


class StagedSegment:
    """A sealed segment being written aside, in ``staging/``, by one import.

    Its events are stamped by :attr:`stamper`, a writer of its own, and
    added as Arrow tables; :func:`staged_segment` publishes them all at once.
    """

    def __init__(self, stamper: Stamper, out: _BackgroundParquet) -> None:
        self.stamper = stamper
        self.rows = 0
        self._out = out
        self._gathered: list[pa.Table] = []
        self._gathered_rows = 0

    def add(self, table: pa.Table) -> None:
        """Add stamped events (with :data:`ARROW_SCHEMA`) after those added before."""
        self._gathered.append(table)
        self._gathered_rows += table.num_rows
        self.rows += table.num_rows
        if self._gathered_rows >= ROW_GROUP:
            self.flush()

    def record(self, name: str, digest: str) -> dict[str, object]:
        """The manifest record of the file these events were written to, whose
        bytes have the SHA-256 ``digest``."""
        stamper = self.stamper
        return {
            "record": "import",
            "name": name,
            "writer": stamper.writer_id,
            "count": self.rows,
            "first": stamper.seq - self.rows + 1,
            "last": stamper.seq,
            "hash": stamper.prev_hash,
            DIGEST: digest,
        }

    def flush(self) -> None:
        """Hand the gathered events to the writer as one row group."""
        if self._gathered:
            self._out.write(pa.concat_tables(self._gathered))
            self._gathered, self._gathered_rows = [], 0


@contextlib.contextmanager
def staged_segment(log: EventLog, source: str) -> Iterator[StagedSegment]:
    """Write a new sealed segment aside, then publish it whole.

    The events added in the block are written to a Parquet file in
    ``staging/``. When the block ends normally and at least one event was
    added, the file is made durable and renamed into ``sealed/``, which
    publishes every event at once; when it raises, or added nothing, the
    file is removed and the log is as it was. ``source`` names the input in
    the debug log.
    """
    stamper = Stamper()
    name = f"{stamper.writer_id}-000001"
    tmp = log.staging_path(f"{name}.parquet")
    fd = create_locked(tmp)  # the lock marks the file as in use for `compact`
    try:
        with _gc_paused(), _BackgroundParquet(tmp) as out:
            staged = StagedSegment(stamper, out)
            yield staged
            staged.flush()
        os.fsync(fd)
        if staged.rows:
            # Recorded before it is published, so that every imported file is
            # in the manifest; `dlq compact` withdraws the record of a file a
            # crash left unpublished.
            log.record(staged.record(name, file_digest(tmp)))
            publish(tmp, log.segment_path(name, sealed=True))
            logger.debug(
                "published import %s from %s: %d events", name, source, staged.rows
            )
        else:
            logger.debug("import from %s: nothing new to publish", source)
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# Limitation: an import stamps about 300,000 to 400,000 items a second on an
# idle machine, and under 300,000 on a busy one, because every event is
# decoded, encoded and hashed into its writer's chain by Python code on one
# core, a few microseconds each; hashing chunks in worker processes, each
# chunk chained to the one before, would use the other cores.
class _Stamping:
    """Turns an input's lines into stamped enqueue events, a chunk at a time.

    Each event gets its own id, sequence number and chained hash, exactly as
    :class:`LogWriter` would stamp it (the hash covers the same canonical
    values); the events of one chunk share the moment its stamping began.
    Records are checked in input order, so the first invalid line is the one
    reported.
    """

    def __init__(self, stamper: Stamper, source: str, known: set[str]) -> None:
        self.imported = 0
        self.duplicates = 0
        self._stamper = stamper
        self._source = source
        self._known = known  # failure ids in the log or earlier in the input
        self._lines = 0  # how many lines were read before the next chunk

    def stamp(self, lines: list[bytes]) -> pa.Table | None:
        """Check and stamp the next chunk's lines; return their events, if any.

        Raises:
            InvalidRecordError: naming the first invalid line and why.
        """
        stamper = self._stamper
        micros = max(time.time_ns() // 1000, stamper.last_us)
        stamper.last_us = micros
        writer, first = stamper.writer_id, self._lines + 1
        self._lines += len(lines)
        prefix = f"{micros:013x}-{writer}-"
        next_id = iter(_event_ids(prefix, stamper.seq + 1, len(lines))).__next__

        # This loop runs once per imported item, so it is written flat, with
        # every name it uses bound locally and the usual record checked without
        # a call: that is twice as fast as calling helpers, and the import rate
        # depends on it.
        source, known = self._source, self._known
        decode, encode = _checked_decoder.decode, _encoder.encode
        sha256 = hashlib.sha256
        ts, user, host, pid = (
            format_ts_us(micros), stamper.user, stamper.host, stamper.pid
        )  # fmt: skip
        seq, prev = stamper.seq, stamper.prev_hash
        rows: list[tuple[Any, ...]] = []
        hashes: list[str] = []
        add_row, add_hash, add_known = rows.append, hashes.append, known.add
        for number, line in enumerate(lines, first):
            try:
                record = decode(line)
            except _DECODE_ERRORS as exc:
                if not line or line.isspace():
                    continue
                raise _invalid_line(line, source, number, exc) from None
            item_id, job_id = record.item_id, record.job_id
            correlation_id, failure_id = record.correlation_id, record.failure_id
            # What the decoder cannot check: ids made of blanks or holding NUL.
            if (
                "\x00" in item_id or item_id.isspace()
                or (job_id is not None and ("\x00" in job_id or job_id.isspace()))
                or (correlation_id is not None and _bad_id(correlation_id))
                or (failure_id is not None and _bad_id(failure_id))
            ):  # fmt: skip
                raise _invalid_line(line, source, number)
            if failure_id is not None:
                if failure_id in known:
                    self.duplicates += 1
                    continue
                add_known(failure_id)
            try:
                payload = str(record.payload, "utf-8") or None
            except UnicodeDecodeError:
                problem = "`payload` is not valid UTF-8 text"
                raise InvalidRecordError(source, number, problem) from None
            seq += 1
            values = (
                SCHEMA_VERSION, next_id(), ts, "item_enqueued", item_id,
                "default" if job_id is None else job_id, correlation_id or item_id,
                None, None, payload, record.command, record.exit_code, record.signal,
                None,
                record.error_type, record.error, record.output, failure_id, None,
                None, user, host, pid, writer, seq,
            )  # fmt: skip
            prev = sha256(prev.encode() + encode(values)).hexdigest()
            add_row(values)
            add_hash(prev)

        stamper.seq, stamper.prev_hash = seq, prev
        self.imported += len(rows)
        return _enqueue_table(rows, hashes, micros) if rows else None


def _invalid_line(
    line: bytes, source: str, number: int, refused: Exception | None = None
) -> InvalidRecordError:
    """The error that tells what is wrong with a line the import refused,
    in the words of :func:`check_record` (or else of ``refused``, the
    decoder's own error)."""
    try:
        record = _record_decoder.decode(line)
    except _DECODE_ERRORS as exc:
        return InvalidRecordError(source, number, _describe(exc))
    problem = check_record(record)
    if problem is None:
        problem = _describe(refused) if refused else "the record is not valid"
    return InvalidRecordError(source, number, problem)


def _event_ids(prefix: str, first: int, count: int) -> list[str]:
    """The event ids ``prefix + f"{seq:08x}"`` of ``count`` sequence numbers
    from ``first``.

    Formatting each id on its own costs more than decoding its record does;
    joining precomputed four-digit tails with a shared head, then splitting
    the result, does the same work in C, four times faster.
    """
    tails = _hex_tails()
    ids: list[str] = []
    seq, end = first, first + count
    while seq < end:
        high, low = divmod(seq, 0x10000)
        stop = min(low + end - seq, 0x10000)
        head = f"{prefix}{high:04x}"
        ids += (head + f"\n{head}".join(tails[low:stop])).split("\n")
        seq += stop - low
    return ids


@functools.cache
def _hex_tails() -> list[str]:
    """Every four-digit lower-case hex string, in order."""
    return [f"{n:04x}" for n in range(0x10000)]


def _enqueue_table(
    rows: list[tuple[Any, ...]], hashes: list[str], micros: int
) -> pa.Table:
    """Stamped enqueue events, as canonical values and hashes, as an Arrow table.

    Every event of a chunk has the same time; fields that no enqueue has are
    null.
    """
    count = len(rows)
    arrays = []
    for index, field in enumerate(ARROW_SCHEMA):
        if field.name == "hash":
            array = pa.array(hashes, type=field.type)
        elif field.name == "ts":
            array = pa.repeat(pa.scalar(micros, type=field.type), count)
        elif field.name in _CONSTANT:
            array = pa.repeat(pa.scalar(rows[0][index], type=field.type), count)
        elif field.name in _NEVER_SET:
            array = pa.nulls(count, type=field.type)
        else:
            # A comprehension per column is twice as fast as zip(*rows),
            # which transposes the constant columns too.
            array = pa.array([row[index] for row in rows], type=field.type)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


# Columns whose value is the same for every enqueue event of a writer, and
# those no enqueue event sets.
_CONSTANT = frozenset({"v", "type", "user", "host", "pid", "writer"})
_NEVER_SET = frozenset({"run_id", "attempt", "duration_ms", "reason", "data"})


class _BackgroundParquet:
    """Writes row groups to a Parquet file in a thread of its own.

    Compressing and writing a row group releases the GIL, so it overlaps
    with parsing the next batch. At most one row group waits at a time,
    which bounds memory.
    """

    def __init__(self, path: Path) -> None:
        self._writer = pq.ParquetWriter(path, ARROW_SCHEMA, compression="zstd")
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: Future[None] | None = None

    def __enter__(self) -> _BackgroundParquet:
        return self

    def write(self, table: pa.Table) -> None:
        self._wait()
        self._pending = self._pool.submit(self._writer.write_table, table)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown()
            self._writer.close()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cycle collector: bulk imports allocate millions of acyclic
    objects, and collecting after each few thousand doubles the import time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
