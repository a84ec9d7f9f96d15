"""Bulk import: all of an input's items enter the log, or none of them do."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventlog import (
    Event,
    EventLog,
    ImportResult,
    InvalidRecordError,
    LogWriter,
    event_from_row,
    import_records,
)

HELPERS = Path(__file__).parent / "helpers"
MAX_RECORD_BYTES = 4 * 1024 * 1024  # the documented limit on one input line


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    return EventLog.open(tmp_path / "log", create=True)


def stored_events(log: EventLog) -> list[Event]:
    return [
        event_from_row(row) for table in log.iter_tables() for row in table.to_pylist()
    ]


def jsonl(*records: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def run_import(log: EventLog, data: bytes, source: str = "input.jsonl") -> ImportResult:
    return import_records(log, io.BytesIO(data), source=source)


def assert_nothing_imported(log: EventLog) -> None:
    assert log.segments() == []
    assert stored_events(log) == []
    assert os.listdir(log.path / "staging") == []
    assert os.listdir(log.path / "sealed") == []


def test_import_records_every_line_as_an_enqueue_in_input_order(log: EventLog) -> None:
    data = jsonl(
        {"item_id": "a", "job_id": "mail", "payload": {"to": "x"}, "exit_code": 3},
        {"item_id": "b", "error": "timeout", "error_type": "Timeout", "signal": 9},
    )

    assert run_import(log, data) == ImportResult(imported=2, duplicates=0)

    events = stored_events(log)
    assert [(e.type, e.item_id, e.job_id, e.seq) for e in events] == [
        ("item_enqueued", "a", "mail", 1),
        ("item_enqueued", "b", "default", 2),
    ]
    assert events[0].payload == '{"to": "x"}'
    assert (events[1].error, events[1].error_type, events[1].signal) == (
        "timeout",
        "Timeout",
        9,
    )
    assert all(s.sealed for s in log.segments())


INVALID = {
    "not json": (b"{nope\n", r"not valid JSON \(.+\)"),
    "missing item_id": (b'{"job_id": "j"}\n', r"missing required field `item_id`"),
    "unknown field": (
        b'{"item_id": "a", "colour": 1}\n',
        r"Object contains unknown field `colour`",
    ),
    "empty item_id": (b'{"item_id": ""}\n', r"`item_id` must not be empty"),
    "blank item_id": (b'{"item_id": "  "}\n', r"`item_id` must not be empty"),
    "NUL in item_id": (
        b'{"item_id": "a\\u0000b"}\n',
        r"`item_id` must not contain a NUL character",
    ),
    "long job_id": (
        b'{"item_id": "a", "job_id": "' + b"j" * 1025 + b'"}\n',
        r"`job_id` is longer than 1024 characters",
    ),
    "exit_code as text": (
        b'{"item_id": "a", "exit_code": "1"}\n',
        r"Expected `int \| null`, got `str` - at `exit_code`",
    ),
    "exit_code past int64": (
        b'{"item_id": "a", "exit_code": 9223372036854775808}\n',
        r"`exit_code` is 9223372036854775808, outside the 64-bit range the log "
        "stores",
    ),
    "signal below int64": (
        b'{"item_id": "a", "signal": -9223372036854775809}\n',
        r"`signal` is -9223372036854775809, outside the 64-bit range the log "
        "stores",
    ),
    "payload not utf-8": (
        b'{"item_id": "a", "payload": "\xff"}\n',
        r"`payload` is not valid UTF-8 text",
    ),
    "payload not json": (
        b'{"item_id": "a", "payload": {x}}\n',
        r"not valid JSON \(JSON is malformed: .+\)",
    ),
    "an array": (b"[1, 2]\n", r"Expected `object`, got `array`"),
}


@pytest.mark.parametrize("kind", INVALID)
def test_invalid_line_in_the_middle_imports_nothing_and_names_the_line(
    log: EventLog, kind: str
) -> None:
    bad, problem = INVALID[kind]
    good = [jsonl({"item_id": f"item-{i}"}) for i in range(9)]
    data = b"".join([*good[:5], bad, *good[5:]])

    with pytest.raises(InvalidRecordError) as caught:
        run_import(log, data, source="batch.jsonl")

    assert caught.value.line == 6
    assert caught.value.source == "batch.jsonl"
    assert re.fullmatch(problem, caught.value.problem), caught.value.problem
    assert str(caught.value) == (
        f"batch.jsonl, line 6: {caught.value.problem}; nothing was imported"
    )
    assert_nothing_imported(log)


def test_invalid_line_after_a_full_row_group_still_imports_nothing(
    log: EventLog,
) -> None:
    good = b"".join(b'{"item_id": "i%d"}\n' % i for i in range(50_001))

    with pytest.raises(InvalidRecordError, match=r"^big.jsonl, line 50002: "):
        run_import(log, good + b"{broken\n", source="big.jsonl")

    assert_nothing_imported(log)


def test_importing_the_same_file_twice_changes_nothing_the_second_time(
    log: EventLog,
) -> None:
    data = jsonl(*({"item_id": f"i{n}", "failure_id": f"f{n}"} for n in range(5)))
    run_import(log, data)
    before = stored_events(log)
    segments = log.segments()

    assert run_import(log, data) == ImportResult(imported=0, duplicates=5)

    assert log.segments() == segments
    assert stored_events(log) == before


def test_failure_ids_already_logged_or_earlier_in_the_input_are_duplicates(
    log: EventLog,
) -> None:
    with LogWriter(log) as writer:
        writer.append([Event(type="item_enqueued", item_id="x", failure_id="seen")])
    data = jsonl(
        {"item_id": "a", "failure_id": "seen"},
        {"item_id": "b", "failure_id": "new"},
        {"item_id": "c", "failure_id": "new"},
        {"item_id": "d"},
        {"item_id": "d"},
    )

    assert run_import(log, data) == ImportResult(imported=3, duplicates=2)

    assert sorted(e.item_id or "" for e in stored_events(log)) == ["b", "d", "d", "x"]


def test_records_without_failure_id_are_imported_again_each_time(
    log: EventLog,
) -> None:
    data = jsonl({"item_id": "a"})

    run_import(log, data)
    run_import(log, data)

    assert [e.item_id for e in stored_events(log)] == ["a", "a"]


def test_blank_lines_are_skipped_but_counted_in_line_numbers(log: EventLog) -> None:
    data = b'\n  \n{"item_id": "a"}\n\t\r\n\n{"item_id": "b"}\r\n{"item_id": "c"}'

    assert run_import(log, data) == ImportResult(imported=3, duplicates=0)
    with pytest.raises(InvalidRecordError) as caught:
        run_import(log, b'\n\n{"item_id": "d"}\n\n{oops}\n')

    assert caught.value.line == 5
    assert [e.item_id for e in stored_events(log)] == ["a", "b", "c"]


def test_empty_input_imports_nothing_and_publishes_nothing(log: EventLog) -> None:
    assert run_import(log, b"") == ImportResult(imported=0, duplicates=0)
    assert run_import(log, b"\n \n") == ImportResult(imported=0, duplicates=0)

    assert_nothing_imported(log)


def test_record_longer_than_the_limit_is_refused_naming_its_line(
    log: EventLog,
) -> None:
    big = jsonl({"item_id": "big", "output": "o" * MAX_RECORD_BYTES})

    with pytest.raises(InvalidRecordError) as caught:
        run_import(log, jsonl({"item_id": "a"}) + big + jsonl({"item_id": "b"}))

    assert caught.value.line == 2
    # The size the message gives is what was read of the line before giving
    # up, not the whole line's length.
    found = re.fullmatch(
        rf"the record is at least (\d+) bytes, more than the {MAX_RECORD_BYTES} "
        "a record may have",
        caught.value.problem,
    )
    assert found is not None, caught.value.problem
    assert int(found[1]) > MAX_RECORD_BYTES
    assert_nothing_imported(log)


def test_record_just_under_the_limit_is_imported_whole(log: EventLog) -> None:
    output = "o" * (MAX_RECORD_BYTES - 100)

    run_import(log, jsonl({"item_id": "big", "output": output}))

    [event] = stored_events(log)
    assert event.output == output


@contextlib.contextmanager
def pipe_fed_in_small_writes(data: bytes) -> Iterator[io.BufferedReader]:
    """A real pipe another thread fills a few bytes at a time, like stdin."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with open(write_fd, "wb", buffering=0) as out:
            for start in range(0, len(data), 7):
                out.write(data[start : start + 7])

    feeder = threading.Thread(target=feed)
    feeder.start()
    with open(read_fd, "rb") as stream:
        yield stream
    feeder.join()


def test_import_reads_a_stream_arriving_in_pieces_like_stdin(log: EventLog) -> None:
    data = jsonl(*({"item_id": f"item-{i}", "payload": [i]} for i in range(300)))

    with pipe_fed_in_small_writes(data) as stream:
        result = import_records(log, stream, source="<stdin>")

    assert result == ImportResult(imported=300, duplicates=0)
    assert [e.item_id for e in stored_events(log)] == [f"item-{i}" for i in range(300)]


def test_import_under_way_is_invisible_and_survives_seal_abandoned(
    log: EventLog,
) -> None:
    importer = subprocess.Popen(
        [sys.executable, str(HELPERS / "eventlog_import.py"), str(log.path), "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert importer.stdin is not None
        importer.stdin.write(jsonl(*({"item_id": f"i{n}"} for n in range(100))))
        importer.stdin.flush()
        # Seal the moment the import's file aside appears, as `dlq compact`
        # running at the same time might.
        while importer.poll() is None and not os.listdir(log.path / "staging"):
            time.sleep(0.001)
        log.seal_abandoned()
        # More input than a pipe holds: once written, the importer is reading
        # records, so it has long set up its file aside.
        importer.stdin.write(jsonl(*({"item_id": f"j{n}"} for n in range(10_000))))
        importer.stdin.flush()
        [in_progress] = os.listdir(log.path / "staging")

        assert log.segments() == []
        log.seal_abandoned()
        assert os.listdir(log.path / "staging") == [in_progress]

        out, _ = importer.communicate(jsonl({"item_id": "last"}))
    finally:
        if importer.poll() is None:
            importer.kill()
            importer.communicate()

    assert out == b"imported 10101 duplicates 0\n"
    assert len(stored_events(log)) == 10_101
    assert os.listdir(log.path / "staging") == []
