"""Events come back from the log exactly as they were appended or imported.

Hypothesis generates awkward values (any unicode, newlines and NUL inside
strings, the ends of the int64 range, nulls, JSON text); each example writes a
fresh log on disk and reads it back from the live JSONL segment and, once
sealed, from Parquet.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlog import (
    EVENT_TYPES,
    EnqueueRecord,
    Event,
    EventLog,
    LogWriter,
    enqueue_event,
    event_from_row,
    format_ts,
    import_records,
    read_live_segment,
)

EXAMPLES = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# The fields a writer or an import stamps; everything else is the caller's.
STAMPED = ("event_id", "ts", "user", "host", "pid", "writer", "seq", "hash")

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
AWKWARD = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\n", "line\nbreak", "\r\n", "\u2028", "é", "𝄞", '"\\']
)
TEXT = AWKWARD | st.text()
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | INT64
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)
JSON_TEXT = st.builds(json.dumps, JSON_VALUES, ensure_ascii=st.booleans())

EVENTS = st.builds(
    Event,
    type=st.sampled_from(sorted(EVENT_TYPES)),
    item_id=st.none() | TEXT,
    job_id=st.none() | TEXT,
    correlation_id=st.none() | TEXT,
    run_id=st.none() | TEXT,
    attempt=st.none() | INT64,
    payload=st.none() | JSON_TEXT,
    command=st.none() | TEXT,
    exit_code=st.none() | INT64,
    signal=st.none() | INT64,
    duration_ms=st.none() | INT64,
    error_type=st.none() | TEXT,
    error=st.none() | TEXT,
    output=st.none() | TEXT,
    failure_id=st.none() | TEXT,
    reason=st.none() | TEXT,
    data=st.none() | JSON_TEXT,
)
BATCHES = st.lists(st.lists(EVENTS, min_size=1, max_size=4), min_size=1, max_size=4)

# Identifiers an import accepts: not empty, not blank, no NUL, at most 1024.
IDS = (
    st.sampled_from(["a", "é", "id with spaces", "𝄞"]) | st.text(max_size=40)
).filter(lambda s: s.strip() != "" and "\x00" not in s)
RECORDS = st.fixed_dictionaries(
    {"item_id": IDS},
    optional={
        "job_id": st.none() | IDS,
        "payload": JSON_VALUES,
        "error": st.none() | TEXT,
        "error_type": st.none() | TEXT,
        "exit_code": st.none() | INT64,
        "signal": st.none() | INT64,
        "command": st.none() | TEXT,
        "correlation_id": st.none() | IDS,
        "failure_id": st.none() | st.sampled_from(["f-1", "f-2", "f-3"]),
        "output": st.none() | TEXT,
    },
)


@contextmanager
def fresh_log() -> Iterator[EventLog]:
    with tempfile.TemporaryDirectory() as tmp:
        yield EventLog.open(f"{tmp}/log", create=True)


def fields(event: Event) -> dict[str, Any]:
    return msgspec.structs.asdict(event)


def caller_fields(event: Event) -> dict[str, Any]:
    return {k: v for k, v in fields(event).items() if k not in STAMPED}


def events_of(table: Any) -> list[Event]:
    return [event_from_row(row) for row in table.to_pylist()]


@EXAMPLES
@given(batches=BATCHES)
def test_appended_events_read_back_equal_from_live_and_sealed_segments(
    batches: list[list[Event]],
) -> None:
    originals = [msgspec.structs.replace(e) for batch in batches for e in batch]

    with fresh_log() as log:
        writer = LogWriter(log)
        acknowledged = [e for batch in batches for e in writer.append(batch)]
        [live] = log.segments()
        from_jsonl = events_of(read_live_segment(live.path))
        writer.close()
        [sealed] = log.segments()
        from_parquet = events_of(log.read_segment(sealed))

    assert not live.sealed
    assert sealed.sealed
    assert sealed.name == live.name
    assert [caller_fields(e) for e in acknowledged] == [
        caller_fields(e) for e in originals
    ]
    assert [fields(e) for e in from_jsonl] == [fields(e) for e in acknowledged]
    assert [fields(e) for e in from_parquet] == [fields(e) for e in acknowledged]


@EXAMPLES
@given(batches=BATCHES)
def test_stored_timestamp_text_is_the_canonical_format_of_the_read_value(
    batches: list[list[Event]],
) -> None:
    with fresh_log() as log, LogWriter(log) as writer:
        for batch in batches:
            writer.append(batch)
        [live] = log.segments()
        stored = [json.loads(line) for line in live.path.read_bytes().splitlines()]
        table = read_live_segment(live.path)

    assert [format_ts(ts) for ts in table.column("ts").to_pylist()] == [
        line["ts"] for line in stored
    ]


@EXAMPLES
@given(records=st.lists(RECORDS, max_size=12), ascii_only=st.booleans())
def test_imported_records_equal_the_events_enqueue_event_makes(
    records: list[dict[str, Any]], ascii_only: bool
) -> None:
    lines = [json.dumps(r, ensure_ascii=ascii_only).encode() for r in records]
    seen: set[str] = set()
    expected = []
    for line, record in zip(lines, records, strict=True):
        failure_id = record.get("failure_id")
        if failure_id is not None:
            if failure_id in seen:
                continue
            seen.add(failure_id)
        expected.append(enqueue_event(msgspec.json.decode(line, type=EnqueueRecord)))

    with fresh_log() as log:
        result = import_records(log, io.BytesIO(b"\n".join(lines)), source="gen")
        imported = [e for table in log.iter_tables() for e in events_of(table)]

    assert result.imported == len(expected)
    assert result.duplicates == len(records) - len(expected)
    assert [caller_fields(e) for e in imported] == [caller_fields(e) for e in expected]
    assert [e.seq for e in imported] == list(range(1, len(expected) + 1))


def test_imported_payload_keeps_the_json_text_it_was_given_byte_for_byte(
    tmp_path: Any,
) -> None:
    log = EventLog.open(tmp_path / "log", create=True)
    line = b'{"item_id": "a", "payload":  { "b" :[1, 2.50 ,"\\u00e9"] } }\n'

    import_records(log, io.BytesIO(line), source="input.jsonl")

    [table] = log.iter_tables()
    assert table.column("payload").to_pylist() == ['{ "b" :[1, 2.50 ,"\\u00e9"] }']


def test_enqueue_event_defaults_job_to_default_and_correlation_to_item() -> None:
    event = enqueue_event(EnqueueRecord(item_id="order-7"))

    assert (event.type, event.item_id, event.job_id, event.correlation_id) == (
        "item_enqueued",
        "order-7",
        "default",
        "order-7",
    )
    assert event.payload is None
