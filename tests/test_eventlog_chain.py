"""Every stored event carries a hash chaining it to its writer's previous event.

The chain is recomputed here from the stored values alone, the way an auditor
would: ``sha256(previous_hash_hex + canonical_bytes(values))`` where the
values are the event's fields in schema order without ``hash``, ``ts`` as its
stored text, and ``GENESIS_HASH`` before a writer's first event.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventlog import (
    FIELD_NAMES,
    GENESIS_HASH,
    DamagedLogError,
    Event,
    EventLog,
    LogWriter,
    canonical_bytes,
    event_from_row,
    format_ts,
    import_records,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HASHED_FIELDS = tuple(name for name in FIELD_NAMES if name != "hash")


def expected_hash(previous: str, values: Iterable[object]) -> str:
    canonical = canonical_bytes(tuple(values))
    return hashlib.sha256(previous.encode("ascii") + canonical).hexdigest()


def assert_chains_hold(events: Iterable[Event]) -> None:
    """Each writer's events number 1..n and each hash links to the one before."""
    by_writer: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_writer[event.writer].append(event)
    for writer, chain in by_writer.items():
        chain.sort(key=lambda e: e.seq)
        assert [e.seq for e in chain] == list(range(1, len(chain) + 1)), writer
        previous = GENESIS_HASH
        for event in chain:
            values = (getattr(event, name) for name in HASHED_FIELDS)
            assert event.hash == expected_hash(previous, values), event.event_id
            previous = event.hash


def stored_events(log: EventLog) -> list[Event]:
    return [
        event_from_row(row) for table in log.iter_tables() for row in table.to_pylist()
    ]


def append_each(writer: LogWriter, count: int, **fields: Any) -> list[Event]:
    return [
        writer.append([Event(type="item_enqueued", item_id=f"item-{i}", **fields)])[0]
        for i in range(count)
    ]


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    return EventLog.open(tmp_path / "log", create=True)


def test_canonical_bytes_are_the_compact_json_array_of_the_values() -> None:
    values = (1, "é\n\x00", None, -(2**63), "2024-01-02T03:04:05.000006Z")

    assert canonical_bytes(values) == (
        b'[1,"\xc3\xa9\\n\\u0000",null,-9223372036854775808,'
        b'"2024-01-02T03:04:05.000006Z"]'
    )


def test_format_ts_always_writes_six_fraction_digits_in_utc() -> None:
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)

    assert format_ts(moment) == "2024-01-02T03:04:05.000000Z"


def test_live_segment_lines_hash_from_their_stored_text_values(log: EventLog) -> None:
    with LogWriter(log) as writer:
        append_each(writer, 5, payload='{"k": [1, 2]}', exit_code=-1)
        [segment] = log.segments()
        lines = [json.loads(line) for line in segment.path.read_bytes().splitlines()]

    assert [list(line) for line in lines] == [list(FIELD_NAMES)] * 5
    previous = GENESIS_HASH
    for line in lines:
        assert line["hash"] == expected_hash(
            previous, (line[name] for name in HASHED_FIELDS)
        )
        previous = line["hash"]


def test_sealed_segment_hashes_verify_from_parquet_values(log: EventLog) -> None:
    with LogWriter(log) as writer:
        append_each(writer, 5, error="boom\nline two", signal=9)

    [segment] = log.segments()
    assert segment.sealed
    assert_chains_hold(stored_events(log))


def test_chain_continues_across_segment_rollover(log: EventLog) -> None:
    with LogWriter(log, segment_max_bytes=2_000) as writer:
        acknowledged = append_each(writer, 40)
        while_writing = log.segments()

    # Each full segment is sealed as soon as the writer moves to the next.
    assert all(s.sealed for s in while_writing[:-1])
    segments = log.segments()
    assert len(segments) > 3
    assert all(s.sealed for s in segments)
    per_segment = [
        [event_from_row(r).seq for r in log.read_segment(s).to_pylist()]
        for s in segments
    ]
    assert [seq for seqs in per_segment for seq in seqs] == list(range(1, 41))
    assert stored_events(log) == acknowledged
    assert_chains_hold(acknowledged)


def test_imported_events_chain_from_genesis_across_row_groups(log: EventLog) -> None:
    # More records than one row group holds, so the chain spans row groups.
    count = 50_003
    lines = b"".join(b'{"item_id": "i%d", "exit_code": 1}\n' % i for i in range(count))

    import_records(log, io.BytesIO(lines), source="big.jsonl")

    events = stored_events(log)
    assert len(events) == count
    assert_chains_hold(events)


def test_separate_writers_each_chain_from_genesis(log: EventLog) -> None:
    with LogWriter(log) as first, LogWriter(log) as second:
        append_each(first, 3)
        append_each(second, 3)
    import_records(log, io.BytesIO(b'{"item_id": "x"}\n'), source="one.jsonl")

    events = stored_events(log)
    assert len({e.writer for e in events}) == 3
    assert_chains_hold(events)


def test_an_edited_event_no_longer_matches_its_hash(log: EventLog) -> None:
    with LogWriter(log) as writer:
        append_each(writer, 3)
        [segment] = log.segments()
        stored = segment.path.read_bytes()
        segment.path.write_bytes(stored.replace(b'"item-1"', b'"item-X"'))
        lines = segment.path.read_bytes().splitlines()
        events = [msgspec.json.decode(line, type=Event) for line in lines]

        # Readers check the chain as they read, and refuse the edited line.
        with pytest.raises(DamagedLogError, match=re.escape(f"{segment.path}:2")):
            stored_events(log)

    assert events[1].item_id == "item-X"
    with pytest.raises(AssertionError, match=re.escape(events[1].event_id)):
        assert_chains_hold(events)


def test_event_id_is_time_then_writer_then_sequence(log: EventLog) -> None:
    with LogWriter(log) as writer:
        events = append_each(writer, 20)

    for event in events:
        micros, writer_id, seq = event.event_id.split("-")
        assert re.fullmatch(r"[0-9a-f]{13}", micros)
        assert re.fullmatch(r"[0-9a-f]{8}", seq)
        moment = EPOCH + timedelta(microseconds=int(micros, 16))
        assert format_ts(moment) == event.ts
        assert (writer_id, int(seq, 16)) == (event.writer, event.seq)
    assert sorted(e.event_id for e in events) == [e.event_id for e in events]
    assert sorted(e.ts for e in events) == [e.ts for e in events]
