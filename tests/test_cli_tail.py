"""`dlq tail` and `eventlog.follow_events`: every event once, in each writer's
order, while writers append, seal their segments and imports publish files."""

from __future__ import annotations

import collections
import contextlib
import io
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from dlq import app
from eventlog import (
    FIELD_NAMES,
    Event,
    EventLog,
    LogWriter,
    event_from_row,
    follow_events,
    import_records,
)

HELPERS = Path(__file__).parent / "helpers"

runner = CliRunner()


def dlq(*args: str | Path) -> Result:
    """Run `dlq ARGS` in this process; an exception escaping the CLI fails the test."""
    return runner.invoke(app, [str(arg) for arg in args], catch_exceptions=False)


def fields(event: Event) -> dict[str, Any]:
    return {name: getattr(event, name) for name in FIELD_NAMES}


def stored(log: EventLog) -> list[Event]:
    """Every event of the log, in id order."""
    events = [
        event_from_row(row) for table in log.iter_tables() for row in table.to_pylist()
    ]
    return sorted(events, key=lambda event: event.event_id)


def enqueued(*item_ids: str) -> list[Event]:
    return [Event(type="item_enqueued", item_id=item_id) for item_id in item_ids]


def imported(log: EventLog, *item_ids: str) -> None:
    lines = "".join(json.dumps({"item_id": item_id}) + "\n" for item_id in item_ids)
    import_records(log, io.BytesIO(lines.encode()), source="test")


# -- the last events -----------------------------------------------------------


def test_tail_json_prints_the_last_n_events_one_object_a_line(log: EventLog) -> None:
    with LogWriter(log) as writer:
        events = writer.append(enqueued(*(f"a-{n}" for n in range(5))))

    result = dlq("tail", "-n", "3", "--json", "--log", log.path)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        fields(event) for event in events[-3:]
    ]


def test_tail_prints_ten_events_by_default_or_all_there_are(log: EventLog) -> None:
    with LogWriter(log) as writer:
        events = writer.append(enqueued(*(f"a-{n}" for n in range(12))))

    ten = dlq("tail", "--json", "--log", log.path)
    every = dlq("tail", "-n", "100", "--json", "--log", log.path)

    assert ten.exit_code == every.exit_code == 0
    assert [json.loads(line)["event_id"] for line in ten.stdout.splitlines()] == [
        event.event_id for event in events[-10:]
    ]
    assert [json.loads(line)["event_id"] for line in every.stdout.splitlines()] == [
        event.event_id for event in events
    ]


def test_tail_prints_one_readable_line_per_event(log: EventLog) -> None:
    long_error = "x" * 150
    with LogWriter(log) as writer:
        events = writer.append(
            [
                *enqueued("img-1"),
                Event(type="attempt_started", item_id="img-1", run_id="r1", attempt=1),
                Event(
                    type="attempt_failed",
                    item_id="img-1",
                    run_id="r1",
                    attempt=1,
                    exit_code=2,
                    error="ValueError: bad pixel\nTraceback follows",
                ),
                Event(
                    type="attempt_failed",
                    item_id="img-1",
                    run_id="r1",
                    attempt=2,
                    signal=9,
                    error=long_error,
                ),
                Event(type="item_discarded", item_id="img-1", reason="obsolete"),
                Event(type="run_finished", run_id="r1"),
            ]
        )

    result = dlq("tail", "--log", log.path)

    assert result.exit_code == 0, result.stderr
    ts = [event.ts for event in events]
    assert result.stdout.splitlines() == [
        f"{ts[0]}  item_enqueued        img-1",
        f"{ts[1]}  attempt_started      img-1  attempt 1  r1",
        f"{ts[2]}  attempt_failed       img-1  attempt 1  r1  exit 2  "
        "ValueError: bad pixel …",
        f"{ts[3]}  attempt_failed       img-1  attempt 2  r1  signal 9  "
        + "x" * 99
        + "…",
        f"{ts[4]}  item_discarded       img-1  obsolete",
        f"{ts[5]}  run_finished         -  r1",
    ]


def test_tail_of_an_empty_log_prints_nothing(log: EventLog) -> None:
    result = dlq("tail", "--log", log.path)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""


def test_tail_refuses_a_negative_count(log: EventLog) -> None:
    result = dlq("tail", "-n", "-1", "--log", log.path)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Invalid value for '-n' / '--lines'" in result.stderr


def test_tail_without_a_log_says_where_it_looked(tmp_path: Path) -> None:
    result = dlq("tail", "--log", tmp_path / "nowhere")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: no dead-letter queue at {tmp_path}")


# -- following, in this process ------------------------------------------------


def test_following_gives_each_event_once_across_seals_and_imports(
    log: EventLog,
) -> None:
    # A segment this small is sealed after every few events, so the follower
    # reads part of a live segment that is sealed before it looks again.
    writer = LogWriter(log, segment_max_bytes=1500)
    first = [writer.append(enqueued(f"a-{n}"))[0] for n in range(7)]
    *sealed, live = [segment.sealed for segment in log.segments()]
    assert sealed
    assert all(sealed)
    assert not live
    followed = follow_events(log, last=7, interval=0.001)

    assert list(itertools.islice(followed, 7)) == first
    more = [writer.append(enqueued(f"b-{n}"))[0] for n in range(9)]
    writer.close()
    imported(log, "i-1", "i-2")
    with LogWriter(log) as other:
        last = other.append(enqueued("c-1"))

    given = list(itertools.islice(followed, 12))

    assert [fields(e) for e in given] == [fields(e) for e in [*more, *stored(log)[16:]]]
    assert [e.item_id for e in given[9:]] == ["i-1", "i-2", "c-1"]
    assert given[-1] == last[0]
    assert len({e.event_id for e in [*first, *given]}) == len(stored(log)) == 19


def test_following_starts_after_the_events_it_skipped(log: EventLog) -> None:
    with LogWriter(log) as writer:
        writer.append(enqueued("old-1", "old-2", "old-3"))
    followed = follow_events(log, last=1, interval=0.001)

    assert next(followed).item_id == "old-3"
    with LogWriter(log) as writer:
        (new,) = writer.append(enqueued("new-1"))
    assert next(followed) == new


def test_a_line_without_its_newline_is_not_an_event_yet(
    log: EventLog, tmp_path: Path
) -> None:
    # Real stored lines, written by a writer of another log.
    elsewhere = EventLog.open(tmp_path / "elsewhere", create=True)
    with LogWriter(elsewhere) as writer:
        events = writer.append(enqueued("whole", "torn"))
        (segment,) = elsewhere.segments()
        whole, torn = segment.path.read_bytes().splitlines(keepends=True)
    live = log.segment_path(f"{events[0].writer}-000001", sealed=False)
    live.write_bytes(whole + torn[:40])

    followed = follow_events(log, last=10, interval=0.001)

    assert next(followed) == events[0]
    assert [e.item_id for e in follow_events(log, follow=False)] == ["whole"]
    with live.open("ab") as fh:
        fh.write(torn[40:])
    assert next(followed) == events[1]


def test_follow_refuses_a_negative_count(log: EventLog) -> None:
    with pytest.raises(ValueError, match=r"^last must be 0 or more, not -2$"):
        next(follow_events(log, last=-2))


# -- following, with real processes -------------------------------------------


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; any still running at its end is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()
        process.wait()


def start(
    started: list[subprocess.Popen[bytes]], *command: str | Path, **options: Any
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([str(part) for part in command], **options)
    started.append(process)
    return process


@pytest.mark.slow
def test_tail_follow_prints_every_event_once_while_others_write_and_seal(
    log: EventLog, processes: list[subprocess.Popen[bytes]]
) -> None:
    python = sys.executable
    with LogWriter(log) as writer:
        (ready,) = writer.append(enqueued("ready"))
    tail = start(
        processes,
        python, "-m", "dlq", "tail", "--follow", "--json", "-n", "1000000",
        "--interval", "0.01", "--log", log.path,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    sealer = start(
        processes,
        python, HELPERS / "eventlog_sealer.py", log.path,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    writers = [
        start(
            processes,
            python,
            HELPERS / "eventlog_writer.py",
            log.path,
            "300",
            *("--prefix", f"w{n}", "--max-batch", "5", "--seed", str(n)),
            *("--segment-max-bytes", "6000", "--wait-for-go", *extra),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        for n, extra in enumerate([[], [], ["--abandon"]])
    ]
    # The writers start once the tail runs (it has printed what was there).
    assert tail.stdout is not None
    printed = [json.loads(tail.stdout.readline())]
    assert printed[0]["event_id"] == ready.event_id
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.write(b"go\n")
        writer.stdin.close()
    records = "".join(json.dumps({"item_id": f"imp-{n}"}) + "\n" for n in range(200))
    importer = start(
        processes,
        python, HELPERS / "eventlog_import.py", log.path, "-",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert importer.communicate(records.encode())[0] == b"imported 200 duplicates 0\n"
    for writer in writers:
        assert writer.wait() == 0
    assert sealer.communicate(b"")[0].startswith(b"sealed ")
    assert dlq("compact", "--log", log.path).exit_code == 0
    # Written after everything else was published, so the tail prints it last.
    with LogWriter(log) as writer:
        (sentinel,) = writer.append(enqueued("sentinel"))

    while printed[-1]["event_id"] != sentinel.event_id:
        line = tail.stdout.readline()
        assert line.endswith(b"\n"), "the tail ended before the sentinel"
        printed.append(json.loads(line))
    tail.terminate()
    rest = tail.stdout.read()
    tail.wait()

    assert rest == b""
    expected = stored(log)
    assert len(expected) == 1 + 3 * 300 + 200 + 1
    counts = collections.Counter(row["event_id"] for row in printed)
    assert [event_id for event_id, n in counts.items() if n > 1] == []
    assert sorted(counts) == [event.event_id for event in expected]
    by_id = {row["event_id"]: row for row in printed}
    assert [by_id[e.event_id] for e in expected] == [fields(e) for e in expected]
    seqs: dict[str, list[int]] = collections.defaultdict(list)
    for row in printed:
        seqs[row["writer"]].append(row["seq"])
    assert all(seq == list(range(1, len(seq) + 1)) for seq in seqs.values())
    assert len(seqs) == 1 + 3 + 1 + 1
    assert [p.name for p in (log.path / "segments").iterdir()] == []
