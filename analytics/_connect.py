"""Opening a log for SQL: a sandboxed in-memory DuckDB with views over the events.

The connection reads a snapshot of the log taken when it is opened: sealed
segments are read by DuckDB straight from their Parquet files (which never
change), live segments are read once in Python and handed to DuckDB as Arrow
tables. Nothing is stored: ``items`` is computed from the events by every
query that reads it.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from analytics._errors import AnalyticsError
from analytics._signatures import MACROS
from analytics._sql import as_utc, one_line, quote_literal
from analytics._views import BASE_VIEW, VIEWS
from eventlog import ARROW_SCHEMA, EventLog, Segment

logger = logging.getLogger("analytics")

# Set when the connection is made, before anything runs on it. With no
# temporary directory DuckDB cannot spill files anywhere.
# Limitation: a query whose intermediate results do not fit in memory fails
# rather than spilling to disk, because a sandbox that may write temporary
# files may write files; a private temporary directory would lift it.
CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_persistent_secrets": False,
    "python_enable_replacements": False,
    "temp_directory": "",
}

# DuckDB expands these in a path given to read_parquet, and has no way to
# escape them; a file whose path holds one is read in Python instead.
_GLOB_CHARS = frozenset("*?[]{}")

_LIVE_TABLE = "_live_events"


def connect(
    log: EventLog | str | os.PathLike[str], *, as_of: datetime | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the log for SQL: an in-memory DuckDB with the views over its events.

    ``events`` has every event, one row each, ordered by ``event_id``, with the
    columns of :data:`eventlog.ARROW_SCHEMA`. ``items`` has one row per item,
    derived from its events whenever it is read: item_id, status, job_id,
    correlation_id, attempts, failures, last_error_type, last_error,
    last_exit_code, last_signal, last_signature, enqueued_at, updated_at,
    last_run_id, command and payload (the ``analytics._views`` docstring says
    where each comes from). ``attempts``, ``failures``, ``runs`` and
    ``errors`` are described in docs/analytics.md; the macros
    ``error_line``, ``error_text``, ``error_signature`` and
    ``classify_error`` in ``analytics._signatures``.

    The connection sees the log as it was when it was opened. It is locked
    down before it is returned: no statement on it can write or create a file,
    read a file other than the log's sealed segments, attach a database, load
    an extension or change a setting. :func:`analytics.run_query` further
    refuses anything but a single read-only statement.

    Args:
        log: the log, or the path of its directory.
        as_of: keep only the events stamped at or before this moment, to see
            the queue as it was then; a naive datetime is taken as UTC.

    Raises:
        eventlog.LogNotFoundError: there is no log at the path.
        eventlog.DamagedLogError: a live segment holds a damaged line or a
            break in its hash chain, a Parquet file's bytes are not those its
            manifest record holds the digest of, or a file that the manifest
            records is missing.
        AnalyticsError: DuckDB could not read a sealed segment.
    """
    if not isinstance(log, EventLog):
        log = EventLog.open(log)
    parquet_files, live = _snapshot(log)

    conn = duckdb.connect(":memory:", config=CONFIG)
    try:
        conn.execute("SET TimeZone = 'UTC'")
        # DuckDB draws a progress bar on stdout for long queries, which would
        # corrupt the data a command prints there. Inside Jupyter it is off
        # already, and DuckDB refuses to set it at all without ipywidgets.
        (progress_bar,) = conn.execute(
            "SELECT current_setting('enable_progress_bar')"
        ).fetchall()[0]
        if progress_bar:
            conn.execute("SET enable_progress_bar = false")
        conn.register(_LIVE_TABLE, live)
        conn.execute(_base_view_sql(parquet_files, as_of))
        for statement in (*MACROS, *VIEWS):
            conn.execute(statement)
        _lock_down(conn, parquet_files)
    except duckdb.Error as exc:
        conn.close()
        raise AnalyticsError(
            f"could not read the log at {log.path}: {one_line(exc)}"
        ) from exc
    except BaseException:
        conn.close()
        raise
    logger.debug(
        "opened %s: %d sealed files, %d live events",
        log.path,
        len(parquet_files),
        live.num_rows,
    )
    return conn


def _snapshot(log: EventLog) -> tuple[list[Path], pa.Table]:
    """The Parquet files DuckDB reads, and the events read here, of every segment.

    Live segments are read into memory, which their size bounds (a writer
    seals its segment past ``SEGMENT_MAX_BYTES``).
    """
    # A file deleted from the log would silently take its events out of
    # every view; the manifest shows it cheaply.
    log.check_files()
    parquet_files: list[Path] = []
    handed: list[Segment] = []
    tables = [ARROW_SCHEMA.empty_table()]
    for segment in log.segments():
        if not segment.sealed:
            try:
                tables.append(log.read_segment(segment))
                continue
            except FileNotFoundError:
                # Sealed since it was listed: its events are now in its twin.
                segment = Segment(
                    segment.name, log.segment_path(segment.name, sealed=True), True
                )
        path = segment.path.absolute()
        if _GLOB_CHARS.isdisjoint(str(path)):
            parquet_files.append(path)
            handed.append(segment)
        else:
            tables.append(log.read_segment(segment))
    # DuckDB would read an edited file as the log; its digest shows the edit
    # (read_segment checks the files read here, and each live event's hash).
    log.check_digests(handed)
    return parquet_files, pa.concat_tables(tables)


_COLUMNS = ", ".join(f'"{name}"' for name in ARROW_SCHEMA.names)


def _base_view_sql(parquet_files: list[Path], as_of: datetime | None) -> str:
    """The unordered union of every event, cut at ``as_of``."""
    where = ""
    if as_of is not None:
        where = f" WHERE ts <= TIMESTAMPTZ '{as_utc(as_of).isoformat()}'"
    parts = [f"SELECT {_COLUMNS} FROM {_LIVE_TABLE}{where}"]
    if parquet_files:
        files = ", ".join(quote_literal(str(path)) for path in parquet_files)
        parts.append(f"SELECT {_COLUMNS} FROM read_parquet([{files}]){where}")
    return f"CREATE VIEW {BASE_VIEW} AS\n" + "\nUNION ALL\n".join(parts)


def _lock_down(conn: duckdb.DuckDBPyConnection, readable: list[Path]) -> None:
    """Allow reading exactly ``readable``, then forbid any other file and setting.

    Allowing the files rather than the log directory keeps COPY and ATTACH
    from creating files inside the log.
    """
    paths = ", ".join(quote_literal(str(path)) for path in readable)
    conn.execute(f"SET allowed_paths = [{paths}]")
    conn.execute("SET enable_external_access = false")
    conn.execute("SET lock_configuration = true")
