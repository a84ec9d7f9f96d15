"""Many processes on one log at once: writers released together, replays
started at the same instant, and readers running while a replay writes."""

from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventlog import EventLog, event_from_row, verify_log

ROOT = Path(__file__).parents[2]
HELPERS = Path(__file__).parent / "helpers"
WORKERS = ROOT / "tests" / "workers"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "DLQ_LOG_LEVEL": "ERROR"}


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at its end is killed."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate()


def start(
    processes: list[subprocess.Popen[str]], script: Path, *args: str | Path
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    processes.append(process)
    return process


def wait_ready(paths: list[Path], processes: list[subprocess.Popen[str]]) -> None:
    """Wait until every process has touched its ready file (or one died)."""
    while not all(path.exists() for path in paths):
        for process in processes:
            if process.poll() is not None:
                raise AssertionError(process.communicate())
        time.sleep(0.005)


def dlq(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlq", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )


def all_events(log: EventLog) -> list[dict[str, Any]]:
    return [row for table in log.iter_tables() for row in table.to_pylist()]


def test_eight_writers_released_together_land_each_event_exactly_once(
    log: EventLog, tmp_path: Path, started: list[subprocess.Popen[str]], figures: Any
) -> None:
    writers, count = 8, 10_000
    barrier = tmp_path / "go"
    names = [f"w{n}" for n in range(writers)]
    for name in names:
        start(started, HELPERS / "barrier_writer.py", log.path, name, count, barrier)
    wait_ready([Path(f"{barrier}.{name}.ready") for name in names], started)

    barrier.touch()
    for process in started:
        _, err = process.communicate()
        assert process.returncode == 0, err

    events = [event_from_row(row) for row in all_events(log)]
    seen = collections.Counter((e.item_id, e.payload) for e in events)
    wanted = collections.Counter(
        (f"{name}-{i}", json.dumps({"writer": name, "i": i}))
        for name in names
        for i in range(count)
    )
    lost = sum((wanted - seen).values())
    figures.add(
        "8 writers released at once",
        trials=writers,
        faults=writers - 1,
        events_checked=sum(wanted.values()),
        events_lost=lost,
    )
    assert len(events) == writers * count
    assert seen == wanted
    assert len({e.event_id for e in events}) == len(events)
    assert len({e.writer for e in events}) == writers
    report = verify_log(log)
    assert report.clean, report.problems
    assert report.events == writers * count
    verified = dlq("verify", "--json", "--log", log.path)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["events"] == writers * count


def enqueue(log: Path, count: int, tmp_path: Path) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text(
        "".join(
            json.dumps({"item_id": f"i{n}", "payload": {"n": n}}) + "\n"
            for n in range(count)
        )
    )
    done = dlq("import", source, "--log", log)
    assert done.returncode == 0, done.stderr


def test_two_replays_released_at_once_run_one_and_refuse_the_other(
    tmp_path: Path, started: list[subprocess.Popen[str]], figures: Any
) -> None:
    rounds, items = 4, 30
    checked = lost = 0
    for trial in range(rounds):
        rng = random.Random(trial)
        here = tmp_path / f"trial-{trial}"
        here.mkdir()
        log = here / "log"
        enqueue(log, items, here)
        calls = here / "calls.jsonl"
        barrier = here / "go"
        ready = [here / "a.ready", here / "b.ready"]
        command = [
            sys.executable,
            "-S",
            str(WORKERS / "record.py"),
            str(calls),
            "{item_id}",
        ]
        pair = [
            start(
                started,
                HELPERS / "released_dlq.py",
                path,
                barrier,
                "replay",
                "--log",
                log,
                "-j",
                str(rng.randint(1, 4)),
                "--json",
                "--",
                *command,
            )
            for path in ready
        ]
        wait_ready(ready, pair)

        barrier.touch()
        results = [process.communicate() for process in pair]

        codes = sorted(process.returncode for process in pair)
        assert codes == [0, 3], results
        [(_, refusal)] = [
            r for r, p in zip(results, pair, strict=True) if p.returncode == 3
        ]
        assert refusal.startswith(
            f"error: another `replay` is already running on {log}"
        )
        assert refusal.endswith("; wait for it to finish\n")
        assert refusal.count("\n") == 1
        ran = [json.loads(line)["args"][0] for line in calls.read_text().splitlines()]
        assert sorted(ran) == sorted(f"i{n}" for n in range(items))
        rows = all_events(EventLog.open(log))
        succeeded = [r["item_id"] for r in rows if r["type"] == "attempt_succeeded"]
        runs = [r for r in rows if r["type"] == "run_started"]
        assert len(runs) == 1
        assert sorted(succeeded) == sorted(f"i{n}" for n in range(items))
        checked += items
        lost += items - len(set(succeeded))
        started.clear()
    figures.add(
        "two replays released at once",
        trials=rounds,
        faults=rounds,
        events_checked=checked,
        events_lost=lost,
    )


def test_readers_never_fail_or_see_a_half_written_event_during_a_replay(
    tmp_path: Path, started: list[subprocess.Popen[str]], figures: Any
) -> None:
    items = 300
    log = tmp_path / "log"
    enqueue(log, items, tmp_path)
    replay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dlq",
            "replay",
            "--log",
            str(log),
            "-j",
            "2",
            "--json",
            "--",
            sys.executable,
            "-S",
            str(WORKERS / "judge.py"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    started.append(replay)  # type: ignore[arg-type]

    seen: dict[str, dict[str, Any]] = {}
    tailed: dict[str, dict[str, Any]] = {}
    reads = 0
    readers = {
        "query": ["query", "SELECT * FROM events", "--format", "jsonl"],
        "stats": ["stats", "--json"],
        "tail": ["tail", "-n", "50", "--json"],
    }
    while replay.poll() is None or reads < 3:
        # The three readers run at once, each a process of its own.
        running = {
            name: subprocess.Popen(
                [sys.executable, "-m", "dlq", *args, "--log", str(log)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=ENV,
            )
            for name, args in readers.items()
        }
        for name, process in running.items():
            out, err = process.communicate()
            assert process.returncode == 0, (name, err)
            reads += 1
            if name == "stats":
                json.loads(out)
                continue
            into = seen if name == "query" else tailed
            for line in out.splitlines():
                event = json.loads(line)
                into.setdefault(event["event_id"], event)
    _, err = replay.communicate()
    assert replay.returncode == 0, err

    final = dlq("query", "SELECT * FROM events", "--format", "jsonl", "--log", log)
    assert final.returncode == 0, final.stderr
    stored = {e["event_id"]: e for e in map(json.loads, final.stdout.splitlines())}
    whole = dlq("tail", "-n", "100000", "--json", "--log", log)
    assert whole.returncode == 0, whole.stderr
    last = {e["event_id"]: e for e in map(json.loads, whole.stdout.splitlines())}
    changed = [i for i, event in seen.items() if stored.get(i) != event]
    changed += [i for i, event in tailed.items() if last.get(i) != event]
    figures.add(
        "readers during a replay",
        trials=reads,
        faults=reads,
        events_checked=len(seen) + len(tailed),
        events_lost=len(changed),
    )
    assert changed == []
    succeeded = [e for e in stored.values() if e["type"] == "attempt_succeeded"]
    assert len(succeeded) == items
