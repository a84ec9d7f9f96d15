"""Exporting the queue to files a colleague can open, or back to Prodigy.

Items (rows of ``items``) or events (rows of ``events``) are streamed from
DuckDB in record batches and written aside, then renamed into place, so a
failed export never leaves a half-written file. Formats:

- ``parquet``: the views' own column types;
- ``csv``, ``jsonl``, ``json`` (one array): times as RFC 3339 text with six
  digits, as the log stores them; ``payload`` and ``data`` stay JSON text;
- ``prodigy``: Prodigy's dead-letter queue layout (see docs/prodigy.md):
  ``OUT/mapreduce/dlq/<job_id>/items/<item_id>.json`` and an ``index.json``
  per job, names encoded by :func:`eventlog.encode_prodigy_name`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from analytics._errors import QueryError
from analytics._query import _check_condition, check_statement
from analytics._sql import one_line
from analytics._views import _IS_FAILURE, _OCCURRED, BASE_VIEW
from eventlog import encode_prodigy_name

EXPORT_FORMATS = ("jsonl", "json", "csv", "parquet", "prodigy")

# Rows fetched from DuckDB at a time: bounds the memory of an export.
_BATCH_ROWS = 10_000

# A file name may have at most this many bytes on the usual file systems.
_NAME_MAX = 255

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

# Prodigy's name for each error type dlq gives a failure it did not import.
_PRODIGY_TYPES = {
    "timeout": "Timeout",
    "resource_exhausted": "ResourceExhausted",
    "validation": "ValidationFailed",
    "CommitValidationFailed": "CommitValidationFailed",
    "WorktreeError": "WorktreeError",
    "MergeConflict": "MergeConflict",
}

# The order Prodigy writes an item's and an entry's keys in; others follow.
_ITEM_KEYS = (
    "item_id", "item_data", "first_attempt", "last_attempt", "failure_count",
    "failure_history", "error_signature", "worktree_artifacts",
    "reprocess_eligible", "manual_review_required",
)  # fmt: skip
_ENTRY_KEYS = (
    "attempt_number", "timestamp", "error_type", "error_message", "error_context",
    "stack_trace", "agent_id", "step_failed", "duration_ms", "json_log_location",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        rows: items (or events) written.
        path: where.
        jobs: Prodigy job directories written (0 for the other formats).
    """

    rows: int
    path: Path
    jobs: int = 0


def export_rows(
    conn: duckdb.DuckDBPyConnection,
    out: Path,
    *,
    fmt: str,
    where: str | None = None,
    events: bool = False,
    force: bool = False,
) -> ExportResult:
    """Write the items, or the events, of an opened log to ``out``.

    Args:
        conn: a connection from :func:`analytics.connect`.
        out: the file to write (for ``prodigy``, the base directory).
        fmt: one of :data:`EXPORT_FORMATS`.
        where: a SQL condition over ``items``; only those items (or their
            events) are written.
        events: write the events rather than the items (not for ``prodigy``).
        force: replace ``out`` if it exists (for ``prodigy``, replace the
            directories of the jobs written and keep the others).

    Raises:
        QueryError: an unknown format, a mistake in ``where``, ``out`` exists
            and ``force`` is false, or a name too long for a file.
        ForbiddenQueryError: ``where`` is not a single condition.
        OSError: the file could not be written; nothing was left at ``out``.
    """
    if fmt not in EXPORT_FORMATS:
        raise QueryError(
            f"unknown format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}"
        )
    if events and fmt == "prodigy":
        raise QueryError("events cannot be exported as prodigy, which holds items")
    if (out.exists() or out.is_symlink()) and not force:
        raise QueryError(f"{out} exists already; give --force to replace it")
    if fmt == "prodigy":
        return _export_prodigy(conn, out, where)
    if out.is_dir():
        raise QueryError(f"{out} is a directory; give the name of a file to write")

    chosen = _items_sql(where)
    if events:
        sql = f"SELECT * FROM events WHERE item_id IN (SELECT item_id {chosen})"
        if where is None:
            sql = "SELECT * FROM events"
    else:
        sql = f"SELECT * {chosen} ORDER BY enqueued_at, item_id"
    check_statement(sql)
    with _written_aside(out, force=force) as fh:
        rows = _write_batches(_reader(conn, sql), fh, fmt)
    return ExportResult(rows=rows, path=out)


def _items_sql(where: str | None) -> str:
    if where is None:
        return "FROM items"
    _check_condition(where)
    # The newline ends a trailing `--` comment before the parenthesis.
    return f"FROM items WHERE ({where}\n)"


def _reader(conn: duckdb.DuckDBPyConnection, sql: str) -> pa.RecordBatchReader:
    try:
        return conn.sql(sql).to_arrow_reader(_BATCH_ROWS)
    except duckdb.Error as exc:
        raise QueryError(one_line(exc)) from exc


def _batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except (duckdb.Error, pa.ArrowException) as exc:
            raise QueryError(one_line(exc)) from exc


def _as_text_times(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Timestamps as the log writes them (``%S`` gives the six digits)."""
    columns = [
        pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")
        if pa.types.is_timestamp(column.type)
        else column
        for column in batch.columns
    ]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _write_batches(reader: pa.RecordBatchReader, fh: BinaryIO, fmt: str) -> int:
    rows = 0
    if fmt == "parquet":
        with pq.ParquetWriter(fh, reader.schema, compression="zstd") as writer:
            for batch in _batches(reader):
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    if fmt == "csv":
        csv_writer: pa_csv.CSVWriter | None = None
        for batch in _batches(reader):
            batch = _as_text_times(batch)
            if csv_writer is None:
                csv_writer = pa_csv.CSVWriter(fh, batch.schema)
            csv_writer.write_batch(batch)
            rows += batch.num_rows
        if csv_writer is None:  # no rows: still the header
            empty = _as_text_times(pa.RecordBatch.from_pylist([], schema=reader.schema))
            csv_writer = pa_csv.CSVWriter(fh, empty.schema)
        csv_writer.close()
        return rows
    if fmt == "json":
        fh.write(b"[")
    for batch in _batches(reader):
        for row in _as_text_times(batch).to_pylist():
            if fmt == "json":
                fh.write(b"\n" if rows == 0 else b",\n")
                fh.write(_encoder.encode(row))
            else:
                fh.write(_encoder.encode(row) + b"\n")
            rows += 1
    if fmt == "json":
        fh.write(b"\n]\n")
    return rows


@contextlib.contextmanager
def _written_aside(out: Path, *, force: bool) -> Iterator[BinaryIO]:
    """A file that takes ``out``'s name only once it is whole and durable."""
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        with tmp.open("xb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)  # never replaces a file made meanwhile
            except FileExistsError:
                raise QueryError(
                    f"{out} exists already; give --force to replace it"
                ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# -- Prodigy ---------------------------------------------------------------


def _prodigy_sql(where: str | None) -> str:
    """Per chosen item: its row, its origin in Prodigy, the item document an
    import kept, and its failures in order."""
    return f"""
WITH chosen AS (
    SELECT item_id, job_id, status, payload, last_signature, enqueued_at,
        updated_at {_items_sql(where)}
),
history AS (
    SELECT
        item_id,
        arg_max(json_extract(data, '$.prodigy'), event_id) FILTER (
            WHERE type = 'item_enqueued' AND data IS NOT NULL
              AND json_extract(data, '$.prodigy') IS NOT NULL
        ) AS origin,
        arg_max(json_extract(data, '$.prodigy.item'), event_id) FILTER (
            WHERE data IS NOT NULL AND json_extract(data, '$.prodigy.item') IS NOT NULL
        ) AS document,
        list({{
            'occurred': {_OCCURRED}, 'attempt': attempt,
            'error_type': classify_error(error_type, exit_code, signal, error),
            'error': error, 'exit_code': exit_code, 'signal': signal,
            'duration_ms': duration_ms, 'run_id': run_id, 'command': command,
            'output': output,
            'entry': CASE WHEN data IS NOT NULL
                THEN json_extract(data, '$.prodigy.entry') END
        }} ORDER BY event_id) FILTER (WHERE {_IS_FAILURE}) AS failures
    FROM {BASE_VIEW}
    WHERE item_id IN (SELECT item_id FROM chosen)
    GROUP BY item_id
)
SELECT
    coalesce(json_extract_string(origin, '$.job_id'), job_id) AS export_job,
    coalesce(json_extract_string(origin, '$.item_id'), item_id) AS export_id,
    *
FROM chosen LEFT JOIN history USING (item_id)
ORDER BY export_job, export_id
"""


def _export_prodigy(
    conn: duckdb.DuckDBPyConnection, out: Path, where: str | None
) -> ExportResult:
    if out.exists() and not out.is_dir():
        raise QueryError(f"{out} is not a directory; prodigy writes a directory tree")
    sql = _prodigy_sql(where)
    check_statement(sql)
    reader = _reader(conn, sql)

    # A new base is built whole beside it and renamed into place; an existing
    # one (with --force) gets each job's directory built aside inside it, then
    # swapped for the old one.
    existing = out.exists()
    parent = out if existing else out.parent
    staging = parent / f".dlq-export-{secrets.token_hex(6)}"
    jobs_root = staging if existing else staging / "mapreduce" / "dlq"
    jobs: list[_JobDirectory] = []
    previous: tuple[str, str] | None = None
    try:
        jobs_root.mkdir(parents=True)
        for batch in _batches(reader):
            for row in batch.to_pylist():
                job, export_id = row["export_job"] or "default", row["export_id"]
                if (job, export_id) == previous:
                    raise QueryError(
                        f"two items would be written as item {export_id!r} of job "
                        f"{job!r} (one is {row['item_id']!r}); export them apart "
                        "with --where"
                    )
                previous = job, export_id
                if not jobs or jobs[-1].job_id != job:
                    if jobs:
                        jobs[-1].close()
                    jobs.append(_JobDirectory(jobs_root, job))
                jobs[-1].write(export_id, _document(row))
        if jobs:
            jobs[-1].close()
        # One flush of every written file, cheaper than a fsync each.
        os.sync()
        if existing:
            _swap_jobs([job.path for job in jobs], out / "mapreduce" / "dlq", staging)
        else:
            os.rename(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    rows = sum(len(job.item_ids) for job in jobs)
    return ExportResult(rows=rows, path=out, jobs=len(jobs))


class _JobDirectory:
    """One job's directory being written: its item files, then its index."""

    def __init__(self, root: Path, job_id: str) -> None:
        self.job_id = job_id
        self.path = root / _file_name(job_id, "job")
        self.item_ids: list[str] = []
        (self.path / "items").mkdir(parents=True)

    def write(self, item_id: str, document: dict[str, Any]) -> None:
        name = _file_name(item_id, "item") + ".json"
        (self.path / "items" / name).write_bytes(_pretty(document))
        self.item_ids.append(item_id)

    def close(self) -> None:
        index = {
            "job_id": self.job_id,
            "item_count": len(self.item_ids),
            "item_ids": self.item_ids,
            "updated_at": _rfc3339(datetime.now(UTC)),
        }
        (self.path / "index.json").write_bytes(_pretty(index))


# Limitation: `--force` onto an existing Prodigy base replaces one job's
# directory at a time (two renames each), so a crash in the middle leaves
# some jobs exported and others as they were, and each job's directory is
# missing for an instant; Linux's renameat2(RENAME_EXCHANGE), which Python
# does not offer, would make each swap a single step.
def _swap_jobs(written: list[Path], jobs_root: Path, staging: Path) -> None:
    jobs_root.mkdir(parents=True, exist_ok=True)
    for directory in written:
        final = jobs_root / directory.name
        if final.exists():
            os.rename(final, staging / f".old-{directory.name}")
        os.rename(directory, final)


# Limitation: an item or job whose encoded id is longer than a file name may
# be (255 bytes) cannot be exported as prodigy, because Prodigy finds an item
# by its file's name; the export stops and names it.
def _file_name(text: str | None, what: str) -> str:
    name = encode_prodigy_name(text if text is not None else "default")
    if len(name) + len(".json") > _NAME_MAX:
        raise QueryError(
            f"the {what} id {text!r} is too long for a file name once encoded "
            f"({len(name)} characters); leave it out with --where"
        )
    return name


def _pretty(document: Any) -> bytes:
    return msgspec.json.format(_encoder.encode(document), indent=2) + b"\n"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(text: str | None) -> Any:
    return None if text is None else _decoder.decode(text)


def _ordered(document: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    first = {key: document[key] for key in keys if key in document}
    return first | {k: v for k, v in document.items() if k not in first}


def _document(row: dict[str, Any]) -> dict[str, Any]:
    """The Prodigy item file of one chosen item."""
    history, from_dlq = [], []
    for failure in row["failures"] or []:
        entry = _json(failure["entry"])
        if entry is not None:
            entry |= {
                "attempt_number": failure["attempt"],
                "error_message": failure["error"],
                "duration_ms": failure["duration_ms"],
            }
        else:
            entry = _entry_from_dlq(failure)
            from_dlq.append(failure["occurred"])
        history.append(_ordered(entry, _ENTRY_KEYS))

    document = _json(row["document"])
    if document is None:
        times = [failure["occurred"] for failure in row["failures"] or []]
        document = {
            "first_attempt": _rfc3339(min(times, default=row["enqueued_at"])),
            "last_attempt": _rfc3339(max(times, default=row["updated_at"])),
            "failure_count": len(history),
            "error_signature": row["last_signature"] or "",
            "worktree_artifacts": None,
            "reprocess_eligible": row["status"] in ("pending", "running"),
            "manual_review_required": row["status"] == "quarantined",
        }
    elif from_dlq:
        # Failures of replays since the import come after Prodigy's own.
        document["failure_count"] = document.get("failure_count", 0) + len(from_dlq)
        document["last_attempt"] = _rfc3339(max(from_dlq))
    document |= {
        "item_id": row["export_id"],
        "item_data": _json(row["payload"]),
        "failure_history": history,
    }
    return _ordered(document, _ITEM_KEYS)


def _entry_from_dlq(failure: dict[str, Any]) -> dict[str, Any]:
    """A failure dlq recorded itself, as a Prodigy history entry."""
    exit_code = failure["exit_code"]
    error_type: Any
    if failure["error_type"] in _PRODIGY_TYPES:
        error_type = _PRODIGY_TYPES[failure["error_type"]]
    elif exit_code is not None and -(2**31) <= exit_code < 2**31:
        error_type = {"CommandFailed": {"exit_code": exit_code}}
    else:
        error_type = "Unknown"
    message = failure["error"]
    if message is None:
        if failure["signal"] is not None:
            message = f"killed by signal {failure['signal']}"
        elif exit_code is not None:
            message = f"exit code {exit_code}"
        else:
            message = ""
    return {
        "attempt_number": failure["attempt"] or 0,
        "timestamp": _rfc3339(failure["occurred"]),
        "error_type": error_type,
        "error_message": message,
        "error_context": None,
        "stack_trace": failure["output"],
        "agent_id": failure["run_id"] or "dlq",
        "step_failed": failure["command"] or "",
        "duration_ms": max(0, failure["duration_ms"] or 0),
        "json_log_location": None,
    }
