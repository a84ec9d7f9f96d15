"""A torn last line is not an event; any other damage is reported where it is.

A live segment's bytes after its last newline are a write that a crash cut
short (or one still under way), so readers skip them. A complete line that is
not a valid event is damage, and the error names the file and the line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eventlog import (
    ARROW_SCHEMA,
    DamagedLogError,
    Event,
    EventLog,
    LogWriter,
    event_from_row,
    follow_events,
    read_live_segment,
)


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    return EventLog.open(tmp_path / "log", create=True)


def write_lines(log: EventLog, count: int) -> tuple[list[Event], list[bytes]]:
    """Append ``count`` events to a scratch log beside ``log``; return them and
    their stored lines, to build segments of ``log`` from."""
    scratch = log.path.parent / "scratch"
    with LogWriter(EventLog.open(scratch, create=True)) as writer:
        events = [
            writer.append([Event(type="item_enqueued", item_id=f"item-{i}")])[0]
            for i in range(count)
        ]
        [path] = (scratch / "segments").iterdir()
        lines = path.read_bytes().splitlines(keepends=True)
    return events, lines


def abandoned_segment(log: EventLog, content: bytes) -> Path:
    """A live segment whose writer is gone, holding exactly ``content``."""
    path = log.segment_path("0badc0ffee00-000001", sealed=False)
    path.write_bytes(content)
    return path


def read_events(path: Path) -> list[Event]:
    return [event_from_row(row) for row in read_live_segment(path).to_pylist()]


@pytest.mark.parametrize("keep", ["first byte", "half", "all but the newline"])
def test_torn_last_line_of_a_live_segment_is_not_read(log: EventLog, keep: str) -> None:
    events, lines = write_lines(log, 4)
    torn = lines[3].rstrip(b"\n")
    cut = {"first byte": 1, "half": len(torn) // 2, "all but the newline": len(torn)}
    path = abandoned_segment(log, b"".join(lines[:3]) + torn[: cut[keep]])

    assert read_events(path) == events[:3]
    assert [event_from_row(r) for t in log.iter_tables() for r in t.to_pylist()] == (
        events[:3]
    )


def test_segment_holding_only_a_torn_line_reads_as_empty(log: EventLog) -> None:
    _, lines = write_lines(log, 1)
    path = abandoned_segment(log, lines[0][:40])

    table = read_live_segment(path)

    assert table.num_rows == 0
    assert table.schema == ARROW_SCHEMA


def test_sealing_drops_the_torn_tail_and_keeps_every_complete_line(
    log: EventLog,
) -> None:
    events, lines = write_lines(log, 3)
    abandoned_segment(log, b"".join(lines[:2]) + lines[2][:-10])

    assert log.seal_abandoned() == 1

    [segment] = [s for s in log.segments() if s.name == "0badc0ffee00-000001"]
    assert segment.sealed
    rows = log.read_segment(segment).to_pylist()
    assert [event_from_row(r) for r in rows] == events[:2]


DAMAGE = {
    "not json": lambda good: b"this is not an event\n",
    "cut short": lambda good: good[: len(good) // 2] + b"\n",
    "no id or hash": lambda good: b'{"type": "item_enqueued"}\n',
    "seq as text": lambda good: re.sub(rb'"seq":\d+', b'"seq":"three"', good),
    "unknown field": lambda good: good.replace(b'{"v":1,', b'{"v":1,"colour":"red",'),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_line_in_the_middle_raises_naming_file_and_line(
    log: EventLog, kind: str
) -> None:
    _, lines = write_lines(log, 5)
    bad = DAMAGE[kind](lines[2])
    assert bad != lines[2]
    path = abandoned_segment(log, b"".join([*lines[:2], bad, *lines[3:]]))

    with pytest.raises(DamagedLogError) as caught:
        read_live_segment(path)

    assert (caught.value.path, caught.value.line) == (str(path), 3)
    assert str(caught.value).startswith(f"damaged log segment {path}:3: ")


def test_damaged_last_complete_line_is_damage_not_a_torn_tail(log: EventLog) -> None:
    _, lines = write_lines(log, 3)
    path = abandoned_segment(log, b"".join(lines[:2]) + b"garbage\n")

    with pytest.raises(DamagedLogError) as caught:
        list(log.iter_tables())

    assert (caught.value.path, caught.value.line) == (str(path), 3)


def test_damaged_segment_is_not_sealed_and_stays_as_it_was(log: EventLog) -> None:
    _, lines = write_lines(log, 3)
    content = lines[0] + b"garbage\n" + lines[2]
    path = abandoned_segment(log, content)

    with pytest.raises(DamagedLogError, match=re.escape(f"{path}:2")):
        log.seal_abandoned()

    assert path.read_bytes() == content
    assert not log.segment_path(path.stem, sealed=True).exists()


def test_damaged_sealed_segment_raises_naming_the_file(log: EventLog) -> None:
    with LogWriter(log) as writer:
        writer.append([Event(type="run_started"), Event(type="run_finished")])
    [segment] = log.segments()
    segment.path.write_bytes(b"PAR1 not really parquet")

    with pytest.raises(DamagedLogError) as caught:
        log.read_segment(segment)

    assert (caught.value.path, caught.value.line) == (str(segment.path), None)
    assert str(caught.value).startswith(f"damaged log segment {segment.path}: ")


def edited(line: bytes) -> bytes:
    """The line with its item id changed, still a valid event."""
    changed = line.replace(b'"item_id":"item-', b'"item_id":"edited-')
    assert changed != line
    return changed


@pytest.mark.parametrize("line", [1, 2, 3])
def test_an_edited_line_breaks_the_chain_and_is_refused(
    log: EventLog, line: int
) -> None:
    _, lines = write_lines(log, 3)
    lines[line - 1] = edited(lines[line - 1])
    path = abandoned_segment(log, b"".join(lines))

    with pytest.raises(DamagedLogError, match=re.escape(f"{path}:{line}: edited")):
        read_live_segment(path)
    with pytest.raises(DamagedLogError, match=re.escape(f"{path}:{line}: edited")):
        list(log.iter_tables())


def test_a_torn_edited_last_line_is_still_only_a_torn_write(log: EventLog) -> None:
    events, lines = write_lines(log, 3)
    path = abandoned_segment(log, b"".join(lines[:2]) + edited(lines[2])[:-1])

    assert read_events(path) == events[:2]


def test_following_the_log_refuses_an_edited_live_line(log: EventLog) -> None:
    _, lines = write_lines(log, 3)
    path = abandoned_segment(log, b"".join(lines[:2]))
    followed = follow_events(log, last=1, follow=True, interval=0.01)
    assert next(followed).seq == 2  # the segment is read up to here
    with path.open("ab") as fh:
        fh.write(edited(lines[2]))

    with pytest.raises(DamagedLogError, match=r"after byte \d+\):1: edited"):
        next(followed)
