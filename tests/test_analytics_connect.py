"""Opening a log for SQL: which events the views see, and as of when."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analytics import AnalyticsError, connect, run_query
from eventlog import (
    ARROW_SCHEMA,
    DamagedLogError,
    Event,
    EventLog,
    LogNotFoundError,
    LogWriter,
    Segment,
    import_records,
)


def enqueue(log: EventLog, *item_ids: str) -> None:
    lines = "".join(json.dumps({"item_id": i}) + "\n" for i in item_ids)
    import_records(log, io.BytesIO(lines.encode()), source="test")


def event_ids(log: EventLog | str | Path, **options: Any) -> list[str]:
    table = run_query(connect(log, **options), "SELECT event_id FROM events")
    ids: list[str] = table.column("event_id").to_pylist()
    return ids


def moment(event: Event) -> datetime:
    return datetime.fromisoformat(event.ts.replace("Z", "+00:00"))


def fields(table: Any) -> list[tuple[str, Any]]:
    return [(field.name, field.type) for field in table.schema]


def test_an_empty_log_has_both_views_with_their_column_types(log: EventLog) -> None:
    conn = connect(log)

    events = run_query(conn, "SELECT * FROM events")
    items = run_query(conn, "SELECT * FROM items")

    assert events.num_rows == 0
    assert fields(events) == fields(ARROW_SCHEMA.empty_table())
    assert items.num_rows == 0
    assert items.schema.field("enqueued_at").type == ARROW_SCHEMA.field("ts").type


def test_sealed_and_live_events_have_the_same_column_types(log: EventLog) -> None:
    enqueue(log, "a")
    with LogWriter(log) as writer:
        writer.append([Event(type="item_discarded", item_id="a")])
        live = run_query(connect(log), "SELECT * FROM events")
    sealed = run_query(connect(log), "SELECT * FROM events")

    assert live.num_rows == sealed.num_rows == 2
    assert fields(live) == fields(sealed) == fields(ARROW_SCHEMA.empty_table())


def test_live_and_sealed_segments_are_read_together_each_event_once(
    log: EventLog,
) -> None:
    enqueue(log, "a", "b")
    enqueue(log, "c")
    writer = LogWriter(log)
    try:
        appended = writer.append(
            [Event(type="attempt_started", item_id="a", run_id="r1")]
        )
        appended += writer.append(
            [Event(type="attempt_failed", item_id="a", run_id="r1")]
        )
        assert any(not segment.sealed for segment in log.segments())

        ids = event_ids(log)
    finally:
        writer.close()

    assert len(ids) == 5
    assert len(set(ids)) == 5
    assert {event.event_id for event in appended} <= set(ids)
    assert ids == sorted(ids)
    assert event_ids(log) == ids  # and the same once the live segment is sealed


def test_a_torn_last_line_of_a_live_segment_is_not_an_event(log: EventLog) -> None:
    with LogWriter(log) as writer:
        writer.append([Event(type="item_enqueued", item_id="a")])
        (segment,) = log.segments()
        with open(segment.path, "ab") as fh:
            fh.write(b'{"v": 1, "event_id": "half a line')

        assert len(event_ids(log)) == 1


def test_a_damaged_live_segment_is_reported_with_its_line(log: EventLog) -> None:
    with LogWriter(log) as writer:
        writer.append([Event(type="item_enqueued", item_id="a")])
        (segment,) = log.segments()
        with open(segment.path, "ab") as fh:
            fh.write(b"not json\n")

        with pytest.raises(DamagedLogError, match=r":2: "):
            connect(log)
        segment.path.unlink()  # so that closing the writer has nothing to seal


def test_a_damaged_sealed_segment_is_an_analytics_error(log: EventLog) -> None:
    log.segment_path("0badf00d0bad-000001", sealed=True).write_bytes(b"not parquet")

    with pytest.raises(AnalyticsError, match=r"^could not read the log at .*"):
        connect(log)


class SealsAfterListing(EventLog):
    """A log whose live segments are sealed right after a reader lists them."""

    def segments(self) -> list[Segment]:
        listed = super().segments()
        for segment in listed:
            if not segment.sealed:
                assert self.seal(segment.name)
        return listed


def test_a_segment_sealed_between_listing_and_reading_is_read_once(
    log: EventLog,
) -> None:
    enqueue(log, "a")
    writer = LogWriter(log)
    try:
        writer.append([Event(type="attempt_started", item_id="a", run_id="r1")])
        racing = SealsAfterListing(log.path)

        ids = event_ids(racing)
        live_left = [segment for segment in log.segments() if not segment.sealed]
    finally:
        writer.close()

    assert live_left == []  # the race did happen
    assert len(ids) == len(set(ids)) == 2


@pytest.mark.parametrize("sealed", [True, False])
def test_as_of_shows_the_log_as_it_was_then(log: EventLog, sealed: bool) -> None:
    writer = LogWriter(log)
    try:
        (enqueued,) = writer.append([Event(type="item_enqueued", item_id="a")])
        (started,) = writer.append([Event(type="attempt_started", item_id="a")])
        writer.append([Event(type="attempt_succeeded", item_id="a")])
        if sealed:
            writer.close()
        assert [segment.sealed for segment in log.segments()] == [sealed]
        assert moment(started) > moment(enqueued)

        assert status_as_of(log, None) == ["succeeded"]
        assert status_as_of(log, moment(started)) == ["running"]
        just_before = moment(started) - timedelta(microseconds=1)
        assert status_as_of(log, just_before) == ["pending"]
        assert status_as_of(log, moment(enqueued) - timedelta(seconds=1)) == []
    finally:
        writer.close()


def status_as_of(log: EventLog, as_of: datetime | None) -> list[Any]:
    table = run_query(connect(log, as_of=as_of), "SELECT status FROM items")
    statuses: list[Any] = table.column("status").to_pylist()
    return statuses


def test_a_naive_as_of_is_taken_as_utc(
    log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LogWriter(log) as writer:
        (enqueued,) = writer.append([Event(type="item_enqueued", item_id="a")])
    naive = moment(enqueued).astimezone(UTC).replace(tzinfo=None)
    # A local time zone east of UTC would put a naive moment before the event.
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert status_as_of(log, naive) == ["pending"]
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_log_can_be_given_by_its_path(log: EventLog) -> None:
    enqueue(log, "a")

    assert len(event_ids(log.path)) == len(event_ids(str(log.path))) == 1


def test_a_missing_log_is_reported(tmp_path: Path) -> None:
    with pytest.raises(LogNotFoundError):
        connect(tmp_path / "nowhere")


def test_a_log_whose_path_has_glob_characters_is_read_whole(tmp_path: Path) -> None:
    log = EventLog.open(tmp_path / "queue[1]*?", create=True)
    enqueue(log, "a", "b")

    assert len(event_ids(log)) == 2


def test_events_are_ordered_by_event_id_across_writers(log: EventLog) -> None:
    first, second = LogWriter(log), LogWriter(log)
    with first, second:
        for number in range(3):
            for writer in (first, second):
                writer.append([Event(type="item_enqueued", item_id=f"{number}")])

    ids = event_ids(log)

    assert len(ids) == 6
    assert ids == sorted(ids)
