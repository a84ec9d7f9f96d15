"""Appending through a LogWriter: what it stamps, refuses and promises."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eventlog import (
    Event,
    EventLog,
    LogNotFoundError,
    LogWriter,
    WriterFailedError,
    event_from_row,
    read_live_segment,
)


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    return EventLog.open(tmp_path / "log", create=True)


def stored_events(log: EventLog) -> list[Event]:
    return [
        event_from_row(row) for table in log.iter_tables() for row in table.to_pylist()
    ]


def test_opening_a_missing_log_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(LogNotFoundError, match=r"^no dead-letter queue at .*nowhere"):
        EventLog.open(tmp_path / "nowhere")

    assert not (tmp_path / "nowhere").exists()


def test_opening_with_create_twice_keeps_the_events(tmp_path: Path) -> None:
    with LogWriter(EventLog.open(tmp_path / "log", create=True)) as writer:
        writer.append([Event(type="run_started")])

    assert len(stored_events(EventLog.open(tmp_path / "log", create=True))) == 1


def test_append_returns_the_events_stamped_in_place(log: EventLog) -> None:
    event = Event(type="attempt_failed", item_id="a", exit_code=1)

    with LogWriter(log) as writer:
        [stamped] = writer.append([event])

    assert stamped is event
    assert stamped.writer == writer.writer_id
    assert (stamped.pid, stamped.seq) == (os.getpid(), 1)
    assert all((stamped.user, stamped.host, stamped.ts, stamped.event_id))
    assert len(stamped.hash) == 64
    assert stored_events(log) == [stamped]


def test_empty_append_writes_nothing(log: EventLog) -> None:
    with LogWriter(log) as writer:
        assert writer.append([]) == []

        assert log.segments() == []
    assert log.segments() == []


def test_closing_seals_the_segment_and_further_appends_fail(log: EventLog) -> None:
    writer = LogWriter(log)
    writer.append([Event(type="run_started")])

    writer.close()
    writer.close()

    assert [s.sealed for s in log.segments()] == [True]
    with pytest.raises(WriterFailedError, match=r"^this log writer is closed$"):
        writer.append([Event(type="run_finished")])
    assert len(stored_events(log)) == 1


def test_appending_the_same_event_twice_is_refused(log: EventLog) -> None:
    event = Event(type="run_started")
    with LogWriter(log) as writer:
        writer.append([event])

        with pytest.raises(ValueError, match=r"^an event can be appended only once$"):
            writer.append([Event(type="run_finished"), event])

        writer.append([Event(type="run_finished")])

    assert [e.seq for e in stored_events(log)] == [1, 2]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attempt", 2**63),
        ("exit_code", -(2**63) - 1),
        ("signal", 2**64),
        ("duration_ms", 10**30),
        ("v", 2**31),
        ("attempt", True),
    ],
)
def test_integer_the_log_cannot_store_is_refused_and_nothing_is_kept(
    log: EventLog, field: str, value: int
) -> None:
    with LogWriter(log) as writer:
        writer.append([Event(type="run_started")])
        bad = Event(type="attempt_failed", item_id="a")
        setattr(bad, field, value)

        with pytest.raises(ValueError, match=rf"`{field}`"):
            writer.append([Event(type="attempt_started", item_id="a"), bad])

        writer.append([Event(type="run_finished")])
        [segment] = log.segments()
        live = [event_from_row(r) for r in read_live_segment(segment.path).to_pylist()]

    assert [(e.type, e.seq) for e in live] == [("run_started", 1), ("run_finished", 2)]
    assert stored_events(log) == live


def test_append_with_an_unencodable_string_keeps_none_of_its_events(
    log: EventLog,
) -> None:
    first = Event(type="attempt_started", item_id="fine")
    with LogWriter(log) as writer:
        with pytest.raises(ValueError, match="surrogates not allowed"):
            writer.append([first, Event(type="attempt_failed", error="\ud800")])

        writer.append([Event(type="run_finished")])
        writer.append([first])

    assert [(e.type, e.seq) for e in stored_events(log)] == [
        ("run_finished", 1),
        ("attempt_started", 2),
    ]


def test_events_of_one_append_get_consecutive_sequence_numbers_in_time_order(
    log: EventLog,
) -> None:
    with LogWriter(log) as writer:
        events = writer.append([Event(type="run_started") for _ in range(5)])
        events += writer.append([Event(type="run_finished")])

    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert [e.event_id for e in events] == sorted(e.event_id for e in events)
