"""Bulk import: all of an input's items enter the log, or none do.

The input is streamed: records are validated, stamped and written in batches
to a Parquet file aside (in ``staging/``). Only when the whole input was valid
and the file is durable is it renamed into ``sealed/``, which publishes every
event at once. A crash or an invalid line leaves the log as it was.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from eventlog._errors import InvalidItemError, InvalidRecordError
from eventlog._event import (
    ARROW_SCHEMA,
    SCHEMA_VERSION,
    Event,
    canonical_bytes,
    chain_hash,
    format_ts_us,
)
from eventlog._files import create_locked, publish
from eventlog._log import EventLog
from eventlog._writer import LogWriter, Stamper

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


def parse_record(line: bytes, source: str, number: int) -> EnqueueRecord:
    """Decode and check one input line.

    Raises:
        InvalidRecordError: naming the line and what is wrong with it.
    """
    if len(line) > MAX_RECORD_BYTES:
        raise InvalidRecordError(
            source,
            number,
            f"the record is {len(line)} bytes, more than the "
            f"{MAX_RECORD_BYTES} a record may have",
        )
    try:
        record = _record_decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRecordError(source, number, _describe(exc)) from None
    problem = check_record(record)
    if problem:
        raise InvalidRecordError(source, number, problem)
    return record


def _describe(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        return text.replace("`$.", "`").replace("Object missing", "missing")
    return f"not valid JSON ({text})"


def iter_lines(stream: BinaryIO) -> Iterable[tuple[int, bytes]]:
    """Numbered non-blank lines, read in chunks, each line at most
    :data:`MAX_RECORD_BYTES` (a longer one is cut there and ends the input,
    for :func:`parse_record` to refuse by its size)."""
    number = 0
    rest = b""
    while chunk := stream.read(_CHUNK):
        # Splitting a chunk in C is several times faster than a readline per
        # line, which the import rate depends on.
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            number += 1
            if line and not line.isspace():
                yield number, line
        if len(rest) > MAX_RECORD_BYTES:
            yield number + 1, rest[: MAX_RECORD_BYTES + 1]
            return
    if rest and not rest.isspace():
        yield number + 1, rest


_CHUNK = 1024 * 1024


def import_records(log: EventLog, stream: BinaryIO, *, source: str) -> ImportResult:
    """Import JSON Lines items from ``stream``, all or nothing.

    A record whose ``failure_id`` is already in the log (or earlier in the
    same input) is skipped and counted as a duplicate.

    Raises:
        InvalidRecordError: a line is invalid; nothing was imported.
        OSError: the disk refused the write; nothing was imported.
    """
    stamper = Stamper()
    name = f"{stamper.writer_id}-000001"
    tmp = log.staging_path(f"{name}.parquet")
    counts = {"imported": 0, "duplicates": 0}
    fd = create_locked(tmp)  # the lock marks the file as in use for `compact`
    try:
        with _gc_paused(), _BackgroundParquet(tmp) as out:
            records = _new_records(stream, source, log.failure_ids(), counts)
            gathered: list[pa.Table] = []
            for table in _stamp_in_batches(records, stamper):
                counts["imported"] += table.num_rows
                gathered.append(table)
                if sum(len(part) for part in gathered) >= ROW_GROUP:
                    out.write(pa.concat_tables(gathered))
                    gathered = []
            if gathered:
                out.write(pa.concat_tables(gathered))
        os.fsync(fd)
        if counts["imported"]:
            publish(tmp, log.segment_path(name, sealed=True))
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return ImportResult(imported=counts["imported"], duplicates=counts["duplicates"])


def _new_records(
    stream: BinaryIO, source: str, known: set[str], counts: dict[str, int]
) -> Iterator[tuple[EnqueueRecord, str | None]]:
    """Valid records not yet in the log, each with its payload as text."""
    for number, line in iter_lines(stream):
        record = parse_record(line, source, number)
        if record.failure_id is not None:
            if record.failure_id in known:
                counts["duplicates"] += 1
                continue
            known.add(record.failure_id)
        try:
            payload = bytes(record.payload).decode("utf-8") or None
        except UnicodeDecodeError:
            problem = "`payload` is not valid UTF-8 text"
            raise InvalidRecordError(source, number, problem) from None
        yield record, payload


# The columns whose values differ between the enqueue events of an import,
# in the order _stamp_in_batches gathers them.
_VARYING = (
    "event_id",
    "item_id",
    "job_id",
    "correlation_id",
    "payload",
    "command",
    "exit_code",
    "signal",
    "error_type",
    "error",
    "output",
    "failure_id",
    "seq",
    "hash",
)


def _stamp_in_batches(
    records: Iterator[tuple[EnqueueRecord, str | None]], stamper: Stamper
) -> Iterator[pa.Table]:
    """Stamp ``records`` as enqueue events, one Arrow table per batch.

    Each event gets its own id, sequence number and chained hash, exactly as
    :class:`LogWriter` would stamp it (the hash covers the same canonical
    values); the events of one batch share the moment the batch began.
    """
    # This loop runs once per imported item, so it is written flat, with
    # every name it uses bound locally: that is a third faster than calling
    # helpers, and the import rate depends on it.
    canonical, link = canonical_bytes, chain_hash
    user, host, pid, writer = stamper.user, stamper.host, stamper.pid, stamper.writer_id
    while True:
        micros = max(time.time_ns() // 1000, stamper.last_us)
        stamper.last_us = micros
        ts = format_ts_us(micros)
        id_prefix = f"{micros:013x}-{writer}-"
        columns: list[list[Any]] = [[] for _ in _VARYING]
        (
            add_event_id, add_item_id, add_job_id, add_correlation_id, add_payload,
            add_command, add_exit_code, add_signal, add_error_type, add_error,
            add_output, add_failure_id, add_seq, add_hash,
        ) = [column.append for column in columns]  # fmt: skip
        seq = stamper.seq
        prev = stamper.prev_hash
        for record, payload in itertools.islice(records, _BATCH):
            seq += 1
            event_id = f"{id_prefix}{seq:08x}"
            item_id = record.item_id
            job_id = record.job_id if record.job_id is not None else "default"
            correlation_id = record.correlation_id or item_id
            values = (
                SCHEMA_VERSION, event_id, ts, "item_enqueued", item_id, job_id,
                correlation_id, None, None, payload, record.command,
                record.exit_code, record.signal, None, record.error_type,
                record.error, record.output, record.failure_id, None, None, user,
                host, pid, writer, seq,
            )  # fmt: skip
            prev = link(prev, canonical(values))
            add_event_id(event_id)
            add_item_id(item_id)
            add_job_id(job_id)
            add_correlation_id(correlation_id)
            add_payload(payload)
            add_command(record.command)
            add_exit_code(record.exit_code)
            add_signal(record.signal)
            add_error_type(record.error_type)
            add_error(record.error)
            add_output(record.output)
            add_failure_id(record.failure_id)
            add_seq(seq)
            add_hash(prev)
        stamper.seq = seq
        stamper.prev_hash = prev
        count = len(columns[0])
        if count:
            yield _enqueue_table(columns, micros, stamper)
        if count < _BATCH:
            return


def _enqueue_table(columns: list[list[Any]], micros: int, stamper: Stamper) -> pa.Table:
    """A batch's gathered columns, with the constant ones, as an Arrow table."""
    count = len(columns[0])
    constant = {
        "v": SCHEMA_VERSION,
        "ts": micros,
        "type": "item_enqueued",
        "user": stamper.user,
        "host": stamper.host,
        "pid": stamper.pid,
        "writer": stamper.writer_id,
    }
    varying = dict(zip(_VARYING, columns, strict=True))
    arrays = []
    for field in ARROW_SCHEMA:
        if field.name in varying:
            array = pa.array(varying[field.name], type=field.type)
        elif field.name in constant:
            array = pa.repeat(pa.scalar(constant[field.name], type=field.type), count)
        else:
            array = pa.nulls(count, type=field.type)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


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
