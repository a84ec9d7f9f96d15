"""Benchmark 6: `dlq stats --json` and `dlq errors` over ten million events.

The log is written straight as sealed Parquet segments by DuckDB, which takes
seconds where appending ten million events through a writer would take many
minutes. It holds what a busy queue leaves behind: 2,500,000 items of eight
jobs enqueued with realistic errors (ten templates with numbers, ids, paths
and URLs inside, two of them multi-line Python tracebacks), a first replay of
all of them in which about half fail again, and a second replay of those in
which about 40% succeed: about 10,000,000 events in all.

Every event has the columns and types of :data:`eventlog.ARROW_SCHEMA`, a
unique ``event_id`` that sorts by time, a writer and its sequence number.
Two things are not what a real writer would store, and no reader here looks
at them: ``hash`` is a placeholder, so the hash chain is not valid; and an
attempt's ``duration_ms`` is drawn at random, not the time between its
events (each writer's events are evenly spaced in time).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from bench._report import (
    INFO,
    Figure,
    count,
    judge,
    mebibytes,
    median,
    ratio,
    say,
    seconds,
)
from bench._workspace import ChildRun, Workspace, dlq, python_c, run_child
from eventlog import ARROW_SCHEMA, EventLog

_LABEL = "6 analytics"
_REPEATS = 3
TARGET_RATIO = 1.5
_ITEMS = 2_500_000
_EVENTS_PER_FILE = 2_000_000
# DuckDB's default; several row groups per file let both sides read in parallel.
_ROW_GROUP_SIZE = 122_880
# The share of attempts that fail, in percent: most of the first replay's,
# fewer of the second's (what was fixed in between).
_FAIL_PERCENT = {1: 50, 2: 60}

_MICROS_PER_HOUR = 3_600_000_000
_START = 1_793_606_400_000_000  # 2026-11-02T08:00:00Z, in microseconds
_ENQUEUE_STEP = 1_000  # microseconds between two enqueues
_RUN_STEP = 400  # microseconds between two events of a replay


# Who wrote each part of the log: (writer, user, host, pid, first moment).
_IMPORT = ("b7e5c0a1d2f0", "ci", "build-07.internal", 41_872, _START)
_RUNS = {
    1: (
        "4f19a2c7e801",
        "ops",
        "worker-3.prod.internal",
        2_231,
        _START + 3 * 3_600_000_000,
    ),
    2: (
        "9c03d5e2b417",
        "ops",
        "worker-3.prod.internal",
        9_120,
        _START + 6 * 3_600_000_000,
    ),
}

_DUCKDB_TYPES = {
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.string(): "VARCHAR",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
}

# Generating helpers. `bench_template` picks one of ten error templates from a
# number in 0..99, the frequent ones first; `bench_error` fills template `t`
# with numbers, ids, paths and URLs drawn from the hash `h`.
_GENERATING_MACROS = (
    """
    CREATE MACRO bench_template(r) AS CASE
        WHEN r < 25 THEN 0 WHEN r < 40 THEN 1 WHEN r < 52 THEN 2
        WHEN r < 62 THEN 3 WHEN r < 70 THEN 4 WHEN r < 78 THEN 5
        WHEN r < 85 THEN 6 WHEN r < 91 THEN 7 WHEN r < 96 THEN 8 ELSE 9 END
    """,
    """
    CREATE MACRO bench_error(t, h) AS CASE t
        WHEN 0 THEN 'HTTPError: 503 Service Unavailable from POST '
            || 'https://api.payments.example.com/v1/charges/ch_'
            || format('{:08x}', (h >> 27) % 4294967296)
            || '?attempt=' || ((h >> 59) % 5 + 1)
        WHEN 1 THEN 'TimeoutError: no answer from 10.0.' || ((h >> 59) % 32) || '.'
            || (h % 256) || ':8443 within ' || (h % 60 + 1) || '.0 s'
        WHEN 2 THEN 'Traceback (most recent call last):' || chr(10)
            || '  File "/srv/app/jobs/billing_sync.py", line ' || (h % 400 + 20)
            || ', in run' || chr(10)
            || '    customer = order["customer_id"]' || chr(10)
            || '  File "/srv/app/jobs/_orders.py", line ' || ((h >> 10) % 90 + 10)
            || ', in __getitem__' || chr(10)
            || '    return self._data[key]' || chr(10)
            || 'KeyError: ''customer_id'''
        WHEN 3 THEN 'psycopg.errors.UniqueViolation: duplicate key value violates '
            || 'unique constraint "orders_pkey"' || chr(10)
            || 'DETAIL:  Key (id)=(' || ((h >> 10) % 100000000) || ') already exists.'
        WHEN 4 THEN 'killed by the kernel: out of memory (limit 512 MiB, rss '
            || (512 + h % 64) || ' MiB)'
        WHEN 5 THEN 'ValidationError: amount_cents must be a positive integer, got -'
            || ((h >> 10) % 100000) || ' for order ord_'
            || format('{:08x}', (h >> 27) % 4294967296)
        WHEN 6 THEN 'ConnectionResetError: [Errno 104] Connection reset by peer '
            || 'while sending batch ' || ((h >> 10) % 100000) || ' to redis://cache-'
            || ((h >> 59) % 12) || '.internal:6379/0'
        WHEN 7 THEN 'PermissionError: [Errno 13] Permission denied: '
            || '''/srv/out/reports/2026/' || lpad(((h >> 40) % 12 + 1)::VARCHAR, 2, '0')
            || '/report-' || ((h >> 10) % 1000000) || '.pdf'''
        WHEN 8 THEN 'Traceback (most recent call last):' || chr(10)
            || '  File "/usr/lib/python3.12/site-packages/requests/models.py", '
            || 'line 1024, in raise_for_status' || chr(10)
            || '    raise HTTPError(http_error_msg, response=self)' || chr(10)
            || '  File "/srv/app/jobs/webhook_deliver.py", line ' || (h % 300 + 40)
            || ', in deliver' || chr(10)
            || '    response.raise_for_status()' || chr(10)
            || 'requests.exceptions.HTTPError: 429 Client Error: Too Many Requests '
            || 'for url: https://hooks.example.org/w/'
            || format('{:08x}', (h >> 27) % 4294967296) || '?attempt='
            || ((h >> 59) % 5 + 1)
        ELSE 'botocore.exceptions.ClientError: An error occurred (SlowDown) when '
            || 'calling the PutObject operation (reached max retries: 4): Please '
            || 'reduce your request rate. key=thumbs/'
            || format('{:08x}', (h >> 27) % 4294967296) || '-'
            || ((h >> 10) % 100000) || '.webp'
    END
    """,
    # What an enqueue records as the error's type (when it records one), what
    # a replay records for a failed attempt, and the exit code of each.
    """
    CREATE MACRO bench_raised(t) AS ['HTTPError', 'TimeoutError', 'KeyError',
        'UniqueViolation', 'MemoryError', 'ValidationError', 'ConnectionResetError',
        'PermissionError', 'HTTPError', 'ClientError'][(t + 1)::BIGINT]
    """,
    """
    CREATE MACRO bench_attempt_type(t) AS ['exit_code', 'timeout', 'exit_code',
        'exit_code', 'signal', 'exit_code', 'exit_code', 'permission',
        'exit_code', 'exit_code'][(t + 1)::BIGINT]
    """,
    """
    CREATE MACRO bench_exit(t) AS
        [1, 124, 1, 1, 137, 2, 1, 126, 1, 1][(t + 1)::BIGINT]
    """,
    """
    CREATE MACRO bench_job(h) AS ['billing-sync', 'invoice-render', 'email-send',
        'search-index', 'thumbnail-resize', 'ledger-export', 'webhook-deliver',
        'report-nightly'][(h % 8 + 1)::BIGINT]
    """,
    "CREATE MACRO bench_item(i) AS 'itm-' || lpad(i::VARCHAR, 9, '0')",
)


def _select(columns: dict[str, str], source: str) -> str:
    """A SELECT of every event column, in schema order and cast to its type.

    ``columns`` maps a column to its SQL expression over ``source``; the
    columns it leaves out are NULL. ``micros`` (the event's moment), ``seq``
    and ``writer`` are required and give ``event_id`` and ``ts``.
    """
    exprs = {
        "v": "1",
        "event_id": f"format('{{:013x}}-{{}}-{{:08x}}', {columns['micros']}, "
        f"{columns['writer']}, {columns['seq']})",
        "ts": f"make_timestamptz({columns['micros']})",
        "hash": "'0000000000000000000000000000000000000000000000000000000000000000'",
        **columns,
    }
    selected = ",\n    ".join(
        f"CAST({exprs.get(field.name, 'NULL')} AS {_DUCKDB_TYPES[field.type]}) "
        f'AS "{field.name}"'
        for field in ARROW_SCHEMA
    )
    return f"SELECT\n    {selected}\nFROM {source}"


def _who(writer: str, user: str, host: str, pid: int) -> dict[str, str]:
    return {
        "writer": f"'{writer}'",
        "user": f"'{user}'",
        "host": f"'{host}'",
        "pid": str(pid),
    }


def _enqueues(first: int, stop: int) -> str:
    """The ``item_enqueued`` events of items ``first`` to ``stop - 1``."""
    writer, user, host, pid, start = _IMPORT
    source = f"""(
        SELECT i, h, bench_template(h % 100) AS t
        FROM (
            -- The low 63 bits, as a BIGINT: DuckDB indexes lists by BIGINT.
            SELECT range AS i, (hash(range) & 9223372036854775807)::BIGINT AS h
            FROM range({first}, {stop})
        )
    )"""
    return _select(
        {
            **_who(writer, user, host, pid),
            "micros": f"{start} + i * {_ENQUEUE_STEP}",
            "seq": "i + 1",
            "type": "'item_enqueued'",
            "item_id": "bench_item(i)",
            "job_id": "bench_job(h)",
            "correlation_id": "bench_item(i)",
            "payload": """'{"order_id":' || i || ',"customer":"cus_'
                || format('{:08x}', (h >> 20) % 4294967296) || '","amount_cents":'
                || ((h >> 12) % 100000) || ',"currency":"'
                || ['EUR', 'USD', 'GBP', 'JPY', 'CHF'][((h >> 52) % 5 + 1)::BIGINT]
                || '","lines":' || ((h >> 44) % 7 + 1) || '}'""",
            "command": "'python -m jobs.' || replace(bench_job(h), '-', '_')",
            "exit_code": "bench_exit(t)",
            "error_type": "CASE WHEN (h >> 50) % 3 <> 0 THEN bench_raised(t) END",
            "error": "bench_error(t, h)",
        },
        source,
    )


def _attempts(run: int, first: int, stop: int) -> str:
    """The attempt events at positions ``first`` to ``stop - 1`` of a replay.

    Position 0 is the run's ``run_started``; the item ``k``-th in the run
    (``bench_run<run>``) has its start at ``2k + 1`` and outcome at ``2k + 2``.
    """
    writer, user, host, pid, start = _RUNS[run]
    source = f"""(
        SELECT p, i, finish, hash(i, {run}) AS h,
            hash(i, {run}) % 100 < {_FAIL_PERCENT[run]} AS fails,
            CASE WHEN (hash(i, {run}) >> 8) % 10 < 7 THEN bench_template(hash(i) % 100)
                ELSE bench_template((hash(i, {run}) >> 16) % 100) END AS t
        FROM (
            SELECT range AS p, (range - 1) // 2 AS k, (range - 1) % 2 = 1 AS finish
            FROM range({first}, {stop})
        ) JOIN bench_run{run} USING (k)
    )"""
    outcome = (
        "CASE WHEN NOT finish THEN 'attempt_started' "
        "WHEN fails THEN 'attempt_failed' ELSE 'attempt_succeeded' END"
    )
    return _select(
        {
            **_who(writer, user, host, pid),
            "micros": f"{start} + p * {_RUN_STEP}",
            "seq": "p + 1",
            "type": outcome,
            "item_id": "bench_item(i)",
            "job_id": "bench_job(hash(i))",
            "correlation_id": "bench_item(i)",
            "run_id": f"'{_run_id(run)}'",
            "attempt": str(run),
            "command": "CASE WHEN NOT finish THEN 'python -m jobs.' "
            "|| replace(bench_job(hash(i)), '-', '_') END",
            "exit_code": "CASE WHEN NOT finish THEN NULL WHEN NOT fails THEN 0 "
            "WHEN t <> 4 THEN bench_exit(t) END",
            "signal": "CASE WHEN finish AND fails AND t = 4 THEN 9 END",
            "duration_ms": "CASE WHEN NOT finish THEN NULL "
            "WHEN NOT fails THEN 40 + (h >> 24) % 2000 "
            "WHEN t = 1 THEN 30000 + (h >> 24) % 40 "
            "ELSE 5 + (h >> 24) % 4000 END",
            "error_type": "CASE WHEN finish AND fails THEN bench_attempt_type(t) END",
            "error": "CASE WHEN finish AND fails THEN bench_error(t, h >> 4) END",
        },
        source,
    )


def _run_id(run: int) -> str:
    return f"run-{_RUNS[run][4]:013x}-{'3fa2c1' if run == 1 else '7d0e94'}"


def _run_events(run: int, selected: int, failed: int) -> tuple[str, str]:
    """The ``run_started`` and ``run_finished`` of a replay of ``selected``."""
    writer, user, host, pid, start = _RUNS[run]
    last = 2 * selected + 1
    duration_s = last * _RUN_STEP / 1e6
    started = {
        "options": {
            "jobs": 8,
            "max_attempts": 5,
            "timeout": 60.0,
            "command": None,
            "dry_run": False,
        },
        "selection": {"statuses": ["pending"], "job_id": None, "signature": None},
    }
    finished = {
        "run_id": _run_id(run),
        "selected": selected,
        "succeeded": selected - failed,
        "failed": failed,
        "quarantined": 0,
        "skipped": 0,
        "interrupted": 0,
        "recovered": selected - failed,
        "canary_failed": False,
        "duration_s": duration_s,
        "throughput": round(selected / duration_s, 2),
        "status": "failed",
    }
    common = {**_who(writer, user, host, pid), "run_id": f"'{_run_id(run)}'"}
    return (
        _select(
            {
                **common,
                "micros": str(start),
                "seq": "1",
                "type": "'run_started'",
                "command": "'python -m jobs.retry'",
                "data": _literal(json.dumps(started)),
            },
            "(SELECT 1)",
        ),
        _select(
            {
                **common,
                "micros": f"{start + last * _RUN_STEP}",
                "seq": str(last + 1),
                "type": "'run_finished'",
                "duration_ms": str(round(duration_s * 1000)),
                "data": _literal(json.dumps(finished)),
            },
            "(SELECT 1)",
        ),
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _spans(total: int, first: int = 0) -> list[tuple[int, int]]:
    """``first`` to ``first + total`` cut into near-equal files' worth."""
    files = max(1, math.ceil(total / _EVENTS_PER_FILE))
    bounds = [first + total * n // files for n in range(files + 1)]
    return list(itertools.pairwise(bounds))


def build_log(space: Workspace, items: int) -> tuple[Path, int]:
    """A fresh log of ``items`` enqueued and two replays; its path and events."""
    log = EventLog.open(space.fresh("analytics-log"), create=True)
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET preserve_insertion_order = false")
    for macro in _GENERATING_MACROS:
        conn.execute(macro)
    # Which items each replay attempts, numbered in the order it takes them.
    conn.execute(
        f"CREATE TEMP TABLE bench_run1 AS SELECT range AS k, range AS i "
        f"FROM range({items})"
    )
    conn.execute(
        f"CREATE TEMP TABLE bench_run2 AS SELECT row_number() OVER (ORDER BY i) - 1 "
        f"AS k, i FROM bench_run1 WHERE hash(i, 1) % 100 < {_FAIL_PERCENT[1]}"
    )
    outputs: list[tuple[str, str]] = []
    for number, (first, stop) in enumerate(_spans(items), 1):
        outputs.append((f"{_IMPORT[0]}-{number:06d}", _enqueues(first, stop)))
    for run in (1, 2):
        selected = _count(conn, f"SELECT count(*) FROM bench_run{run}")
        failed = _count(
            conn,
            f"SELECT count(*) FROM bench_run{run} "
            f"WHERE hash(i, {run}) % 100 < {_FAIL_PERCENT[run]}",
        )
        run_started, run_finished = _run_events(run, selected, failed)
        spans = _spans(2 * selected, first=1)
        for number, (first, stop) in enumerate(spans, 1):
            parts = [_attempts(run, first, stop)]
            if number == 1:
                parts.insert(0, run_started)
            if number == len(spans):
                parts.append(run_finished)
            outputs.append(
                (f"{_RUNS[run][0]}-{number:06d}", "\nUNION ALL\n".join(parts))
            )

    events = 0
    for name, sql in outputs:
        path = log.segment_path(name, sealed=True)
        events += _count(
            conn,
            f"COPY ({sql}) TO {_literal(str(path))} (FORMAT parquet, "
            f"COMPRESSION zstd, ROW_GROUP_SIZE {_ROW_GROUP_SIZE})",
        )
        # DuckDB marks a column it knows has no NULL as required; a writer's
        # files leave every column nullable, which readers do not look at.
        schema = pq.read_schema(path)
        if [(f.name, f.type) for f in schema] != [
            (f.name, f.type) for f in ARROW_SCHEMA
        ]:
            raise RuntimeError(f"{path} has not the event schema:\n{schema}")
    conn.close()
    if [segment.name for segment in log.segments()] != sorted(n for n, _ in outputs):
        raise RuntimeError(f"the log does not list the {len(outputs)} files written")
    return log.path, events


def _count(conn: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


# What both references start with: a plain DuckDB, in UTC, with no progress
# bar on stdout (as dlq), and the signature macros given as JSON.
_PLAIN_PRELUDE = """\
import json, sys, duckdb
files, macros = sys.argv[1], json.loads(sys.argv[2])
conn = duckdb.connect()
conn.execute("SET TimeZone = 'UTC'")
conn.execute("SET enable_progress_bar = false")
for macro in macros:
    conn.execute(macro)
"""

# `dlq stats` by hand: the figures of analytics.queue_stats without filters,
# straight from the Parquet files with the same signature macros (passed in
# as JSON), printed as JSON for the comparison of counts.
PLAIN_STATS = (
    _PLAIN_PRELUDE
    + """\
conn.execute(f"CREATE VIEW ev AS SELECT * FROM read_parquet('{files}')")

def one(sql, params=()):
    cursor = conn.execute(sql, params)
    names = [column[0] for column in cursor.description]
    row = cursor.fetchone()
    return None if row is None else dict(zip(names, row))

items = one('''
SELECT
    count(*) AS total,
    count(*) FILTER (WHERE last IN ('item_enqueued', 'attempt_failed',
        'attempt_interrupted', 'item_requeued')) AS pending,
    count(*) FILTER (WHERE last = 'attempt_started') AS running,
    count(*) FILTER (WHERE last = 'attempt_succeeded') AS succeeded,
    count(*) FILTER (WHERE last = 'item_quarantined') AS quarantined,
    count(*) FILTER (WHERE last = 'item_discarded') AS discarded,
    arg_min(item_id, (enqueued_at, item_id)) FILTER (WHERE last IN ('item_enqueued',
        'attempt_failed', 'attempt_interrupted', 'item_requeued')) AS oldest_id
FROM (
    SELECT
        item_id,
        arg_max(type, event_id) FILTER (WHERE type IN ('item_enqueued',
            'attempt_started', 'attempt_succeeded', 'attempt_failed',
            'attempt_interrupted', 'item_quarantined', 'item_discarded',
            'item_requeued')) AS last,
        min(ts) FILTER (WHERE type = 'item_enqueued') AS enqueued_at
    FROM ev
    WHERE item_id IS NOT NULL
    GROUP BY item_id
)
''')
attempts = one('''
SELECT
    count(*) AS total,
    count(*) FILTER (WHERE o.type = 'attempt_succeeded') AS succeeded,
    count(*) FILTER (WHERE o.type = 'attempt_failed') AS failed,
    count(*) FILTER (WHERE o.type = 'attempt_interrupted') AS interrupted,
    count(*) FILTER (WHERE o IS NULL) AS running,
    avg(o.ms) AS mean,
    quantile_cont(o.ms, 0.5) AS p50,
    quantile_cont(o.ms, 0.95) AS p95,
    max(o.ms) AS max
FROM (
    SELECT arg_max_null({'type': type, 'ms': duration_ms}, event_id)
        FILTER (WHERE type <> 'attempt_started') AS o
    FROM ev
    WHERE type IN ('attempt_started', 'attempt_succeeded', 'attempt_failed',
        'attempt_interrupted')
    GROUP BY run_id, item_id, attempt
)
''')
run_id = one(
    "SELECT arg_max(run_id, event_id) AS run_id FROM ev "
    "WHERE type = 'attempt_started'"
)["run_id"]
last_run = one('''
SELECT
    run_id,
    min(ts) FILTER (WHERE type = 'run_started') AS started_at,
    max(ts) FILTER (WHERE type = 'run_finished') AS finished_at,
    json_extract_string(arg_max(data, event_id) FILTER (WHERE type = 'run_finished'),
        '$.status') AS status,
    count(DISTINCT item_id) FILTER (WHERE type = 'attempt_started') AS items,
    count(*) FILTER (WHERE type = 'attempt_started') AS attempts,
    count(*) FILTER (WHERE type = 'attempt_succeeded') AS succeeded,
    count(*) FILTER (WHERE type = 'attempt_failed') AS failed,
    count(*) FILTER (WHERE type = 'attempt_interrupted') AS interrupted,
    count(*) FILTER (WHERE type = 'item_quarantined') AS quarantined
FROM ev
WHERE run_id = ?
GROUP BY run_id
''', [run_id])
rows = conn.execute('''
WITH failure AS (
    SELECT item_id, error_type, exit_code, signal, error, coalesce(error, CASE
        WHEN signal IS NOT NULL THEN 'killed by signal ' || signal
        WHEN exit_code IS NOT NULL THEN 'exit code ' || exit_code
        ELSE 'no error message' END) AS message
    FROM ev
    WHERE type IN ('item_enqueued', 'attempt_failed')
)
SELECT
    grouping(error_type) = 1 AS by_signature,
    signature,
    mode(error_type) AS error_type,
    count(*) AS failures,
    count(DISTINCT item_id) AS items,
    any_value(text) AS text
FROM (
    SELECT
        item_id,
        classify_error(error_type, exit_code, signal, error) AS error_type,
        error_signature(message) AS signature,
        error_text(message) AS text
    FROM failure
)
GROUP BY GROUPING SETS ((signature), (error_type))
ORDER BY failures DESC, signature, error_type
''').fetchall()
error_types = {row[2]: row[3] for row in rows if not row[0]}
top = [
    {"signature": row[1], "error_type": row[2], "failures": row[3],
     "items": row[4], "text": row[5]}
    for row in rows if row[0]
][:5]
decided = attempts["succeeded"] + attempts["failed"]
attempts["success_rate"] = attempts["succeeded"] / decided if decided else None
print(json.dumps({"items": items, "attempts": attempts, "last_run": last_run,
    "error_types": error_types, "top_signatures": top}, default=str))
"""
)

# `dlq errors` by hand: the columns of the errors view, most failures first.
_PLAIN_ERRORS = (
    _PLAIN_PRELUDE
    + """\
rows = conn.execute(f'''
WITH ev AS (SELECT * FROM read_parquet('{files}')),
failure AS (
    SELECT
        event_id, ts, item_id,
        classify_error(error_type, exit_code, signal, error) AS error_type,
        error_signature(message) AS signature,
        error_text(message) AS text,
        error_line(message) AS line
    FROM (
        SELECT *, coalesce(error, CASE
            WHEN signal IS NOT NULL THEN 'killed by signal ' || signal
            WHEN exit_code IS NOT NULL THEN 'exit code ' || exit_code
            ELSE 'no error message' END) AS message
        FROM ev
        WHERE type IN ('item_enqueued', 'attempt_failed')
    )
),
per_item AS (
    SELECT signature, item_id, max(event_id) AS last_failure
    FROM failure
    GROUP BY signature, item_id
),
success AS (
    SELECT item_id, max(event_id) AS last_success
    FROM ev
    WHERE type = 'attempt_succeeded'
    GROUP BY item_id
),
recovery AS (
    SELECT
        signature,
        count(*) FILTER (WHERE last_success > last_failure) AS recovered,
        min(item_id, 3) AS sample_items
    FROM per_item LEFT JOIN success USING (item_id)
    GROUP BY signature
),
grouped AS (
    SELECT
        signature,
        mode(error_type) AS error_type,
        any_value(text) AS text,
        arg_max(line, event_id) AS sample_error,
        count(*) AS failures,
        count(DISTINCT item_id) AS items,
        min(ts) AS first_seen,
        max(ts) AS last_seen
    FROM failure
    GROUP BY signature
)
SELECT
    signature, error_type, text, sample_error, failures, items, first_seen,
    last_seen, sample_items, recovered, recovered / items AS recovery_rate
FROM grouped JOIN recovery USING (signature)
ORDER BY failures DESC, signature
LIMIT 20
''').fetchall()
for row in rows:
    print(json.dumps([row[0], row[4], row[5], row[9]]), *row[1:4], *row[6:9], row[10])
"""
)


def signature_macros() -> str:
    """The signature macros as the analytics package defines them right now."""
    from analytics._signatures import MACROS

    return json.dumps(list(MACROS))


def _comparable_stats(figures: dict[str, Any]) -> dict[str, Any]:
    """The counts both sides must agree on for their times to compare."""
    items = dict(figures["items"])
    oldest = items.pop("oldest_pending", None)
    oldest_id = items.pop("oldest_id", None) or (oldest and oldest["item_id"])
    attempts = {
        key: figures["attempts"][key]
        for key in ("total", "succeeded", "failed", "interrupted", "running")
    }
    run = figures["last_run"] or {}
    return {
        "items": items,
        "attempts": attempts,
        "last_run": {
            key: run.get(key)
            for key in ("run_id", "items", "attempts", "succeeded", "failed")
        },
        "error_types": figures["error_types"],
        "top_signatures": [
            (row["signature"], row["failures"], row["items"])
            for row in figures["top_signatures"]
        ],
        "oldest_pending": oldest_id,
    }


def check_equal_stats(cli: ChildRun, plain: ChildRun, what: str) -> None:
    """Stop the benchmark if the CLI and the reference disagree on ``what``."""
    documents = []
    for side, child in (("dlq", cli), ("the reference", plain)):
        try:
            documents.append(json.loads(child.stdout))
        except json.JSONDecodeError as exc:
            raise RuntimeError(
                f"{what}: {side} printed what is not JSON ({exc}):\n"
                f"{child.stdout[:2000]}\n{child.stderr[-2000:]}"
            ) from None
    ours, theirs = documents
    mine, reference = _comparable_stats(ours), _comparable_stats(theirs)
    say(f"  dlq stats:  items {mine['items']}")
    say(f"  reference:  items {reference['items']}")
    say(f"  dlq stats:  attempts {mine['attempts']}")
    say(f"  reference:  attempts {reference['attempts']}")
    differing = [key for key in mine if mine[key] != reference[key]]
    if differing:
        detail = "\n".join(
            f"  {key}: dlq {mine[key]!r}\n  {' ' * len(key)}  ref {reference[key]!r}"
            for key in differing
        )
        raise RuntimeError(
            f"{what}: dlq stats and the reference disagree, so their times do not "
            f"compare:\n{detail}"
        )
    say("  dlq stats --json and the reference agree on every count")


def _check_errors(cli: ChildRun, plain: ChildRun) -> None:
    """`dlq errors --json` and the reference must list the same signatures."""
    rows = json.loads(cli.stdout)
    ours = [[r["signature"], r["failures"], r["items"], r["recovered"]] for r in rows]
    theirs = [
        json.loads(line.split("] ", 1)[0] + "]") for line in plain.stdout.splitlines()
    ]
    if ours != theirs:
        raise RuntimeError(
            "dlq errors and the reference disagree on (signature, failures, items, "
            f"recovered), so their times do not compare:\n  dlq {ours}\n  ref {theirs}"
        )
    say(f"  dlq errors --json and the reference agree on all {len(ours)} signatures")


def bench_analytics(space: Workspace) -> list[Figure]:
    """`dlq stats --json` and `dlq errors` beside the same work in plain DuckDB.

    Every command runs in a fresh interpreter, timed from spawn to exit with
    its peak memory; each runs once to check the answers agree (and to warm
    the page cache), then :data:`_REPEATS` rounds that alternate which side
    goes first, and the medians are compared.
    """
    items = space.size(_ITEMS)
    started = time.perf_counter()
    log_dir, events = build_log(space, items)
    took_to_build = time.perf_counter() - started
    files = sorted((log_dir / "sealed").glob("*.parquet"))
    size = sum(path.stat().st_size for path in files)
    say(
        f"  wrote {events:,} events of {items:,} items in {len(files)} Parquet "
        f"files ({mebibytes(size)}) in {seconds(took_to_build)}"
    )

    pattern, macros = str(log_dir / "sealed" / "*.parquet"), signature_macros()
    commands = {
        "stats": dlq("stats", "--json", "--log", str(log_dir)),
        "plain stats": python_c(PLAIN_STATS, pattern, macros),
        "errors": dlq("errors", "--log", str(log_dir)),
        "plain errors": python_c(_PLAIN_ERRORS, pattern, macros),
    }
    first = {
        name: run_child(argv, space.fresh(name)) for name, argv in commands.items()
    }
    check_equal_stats(first["stats"], first["plain stats"], "stats")
    errors_json = run_child(
        dlq("errors", "--json", "--log", str(log_dir)), space.fresh("errors-json")
    )
    _check_errors(errors_json, first["plain errors"])

    runs: dict[str, list[ChildRun]] = {name: [] for name in commands}
    for round_ in range(_REPEATS):
        for cli in ("stats", "errors"):
            pair = [cli, f"plain {cli}"]
            for name in pair if round_ % 2 == 0 else reversed(pair):
                runs[name].append(run_child(commands[name], space.fresh(name)))
    for name, done in runs.items():
        say(
            f"  {name}: "
            + ", ".join(f"{seconds(r.wall)} ({mebibytes(r.peak_rss)})" for r in done)
        )
    wall = {name: median([r.wall for r in done]) for name, done in runs.items()}
    peak = {name: median([r.peak_rss for r in done]) for name, done in runs.items()}

    def compared(cli: str, shown: str, reference: str) -> list[Figure]:
        plain = f"plain {cli}"
        within = wall[cli] / wall[plain]
        return [
            Figure(
                _LABEL,
                f"{shown}, {count(events)} events: {seconds(wall[cli])}",
                f"{reference}: {seconds(wall[plain])}",
                ratio(within),
                f"<= {TARGET_RATIO}x the reference",
                judge(within <= TARGET_RATIO),
            ),
            Figure(
                _LABEL,
                f"peak memory of {shown}: {mebibytes(peak[cli])}",
                f"of the reference: {mebibytes(peak[plain])}",
                ratio(peak[cli] / peak[plain]),
                "none set (context)",
                INFO,
            ),
        ]

    return [
        Figure(
            _LABEL,
            f"generated {count(events)} events, {len(files)} Parquet files, "
            f"{mebibytes(size)}: {seconds(took_to_build)}",
            "",
            "",
            "none set (context)",
            INFO,
        ),
        *compared(
            "stats",
            "dlq stats --json",
            "same figures, plain DuckDB in python -c",
        ),
        *compared(
            "errors",
            "dlq errors (limit 20)",
            "errors view's columns, plain DuckDB in python -c",
        ),
    ]
