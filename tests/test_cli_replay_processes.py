"""`dlq replay` as a real process: one at a time per log, Ctrl-C, and SIGKILL.

Each replay here is a `python -m dlq replay` subprocess whose workers
(``tests/workers/gate.py``) hold their attempts open until the test opens a
gate file, so the test decides when attempts are running instead of guessing
at how long anything takes.
"""

from __future__ import annotations

import collections
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from analytics import connect, open_attempts, open_runs, run_query
from dlq._app import app
from eventlog import EventLog, import_records

WORKERS = Path(__file__).parent / "workers"


def worker(name: str, *args: object) -> list[str]:
    """The argv that runs the script ``tests/workers/<name>.py``."""
    return [sys.executable, "-S", str(WORKERS / f"{name}.py"), *map(str, args)]


def enqueue(log: EventLog, *records: dict[str, Any]) -> None:
    lines = "".join(json.dumps(record) + "\n" for record in records)
    import_records(log, io.BytesIO(lines.encode()), source="test")


def query(log: EventLog, sql: str) -> list[dict[str, Any]]:
    conn = connect(log)
    try:
        rows: list[dict[str, Any]] = run_query(conn, sql).to_pylist()
    finally:
        conn.close()
    return rows


def still_open(log: EventLog) -> tuple[list[dict[str, Any]], list[str]]:
    """The attempts and the runs of ``log`` that have no end recorded."""
    conn = connect(log)
    try:
        return open_attempts(conn), open_runs(conn)
    finally:
        conn.close()


def is_running(pid: int) -> bool:
    """Whether a process exists and has not ended (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class Scene:
    """A log, the replays started on it, and what their workers left behind.

    ``calls`` gets a line "<item> <attempt> <pid>" from every worker that
    started; ``gate`` is the file whose existence lets them finish.
    """

    def __init__(self, log: EventLog, tmp_path: Path) -> None:
        self.log = log
        self.calls = tmp_path / "calls"
        self.gate = tmp_path / "gate"
        self.replays: list[subprocess.Popen[str]] = []

    def gated_worker(self) -> list[str]:
        return worker("gate", self.calls, self.gate)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start `python -m dlq replay --log LOG ARGS...` in the background."""
        command = [sys.executable, "-m", "dlq", "replay", "--log", str(self.log.path)]
        replay = subprocess.Popen(
            [*command, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.replays.append(replay)
        return replay

    def executions(self) -> list[tuple[str, int, int]]:
        """(item, attempt, pid) of every worker that started, in order."""
        if not self.calls.exists():
            return []
        rows = [line.split() for line in self.calls.read_text().splitlines()]
        return [(item, int(attempt), int(pid)) for item, attempt, pid in rows]

    def worker_pids(self) -> list[int]:
        return [pid for _, _, pid in self.executions()]

    def wait_until(
        self, condition: Callable[[], bool], replay: subprocess.Popen[str] | None
    ) -> None:
        """Poll until ``condition`` holds; fail if ``replay`` ends first."""
        while not condition():
            if replay is not None and replay.poll() is not None:
                _, err = replay.communicate()
                pytest.fail(f"the replay ended early ({replay.returncode}): {err}")
            time.sleep(0.02)

    def clean_up(self) -> None:
        self.gate.touch()
        for replay in self.replays:
            if replay.poll() is None:
                replay.kill()
            replay.communicate()
        for pid in self.worker_pids():
            if is_running(pid) and "tests/workers" in _command_line(pid):
                os.kill(pid, signal.SIGKILL)


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return ""


@pytest.fixture
def scene(log: EventLog, tmp_path: Path) -> Iterator[Scene]:
    """A scene whose replays and workers are all ended when the test ends."""
    scene = Scene(log, tmp_path)
    try:
        yield scene
    finally:
        scene.clean_up()


def attempts_started(log: EventLog) -> int:
    (row,) = query(
        log, "SELECT count(*) AS n FROM events WHERE type = 'attempt_started'"
    )
    count: int = row["n"]
    return count


def replay_in_process(log: EventLog, *args: str) -> dict[str, Any]:
    """Run `dlq replay --json` here; its summary."""
    result = CliRunner().invoke(
        app, ["replay", "--log", str(log.path), "--json", *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def test_a_second_replay_on_the_same_log_refuses_at_once_with_exit_3(
    scene: Scene, tmp_path: Path
) -> None:
    enqueue(scene.log, *({"item_id": f"order-{n}"} for n in range(4)))
    first = scene.start("-j", "2", "--json", "--", *scene.gated_worker())
    scene.wait_until(lambda: len(scene.executions()) == 2, first)
    events_before = query(scene.log, "SELECT event_id FROM events")
    second_calls = tmp_path / "second-calls"

    second = subprocess.run(
        [
            *(sys.executable, "-m", "dlq", "replay", "--log", str(scene.log.path)),
            *("--", *worker("record", second_calls)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert second.returncode == 3
    assert second.stdout == ""
    assert second.stderr == (
        f"error: another `replay` is already running on {scene.log.path} "
        f"(process {first.pid}); wait for it to finish\n"
    )
    # It did not wait for the first: that one cannot end before the gate opens.
    assert first.poll() is None
    assert not second_calls.exists()
    assert query(scene.log, "SELECT event_id FROM events") == events_before

    scene.gate.touch()
    out, err = first.communicate()
    assert first.returncode == 0, err
    # The last line: DuckDB may draw a progress bar on stdout before it (see
    # test_a_long_replay_writes_only_its_summary_on_stdout).
    assert json.loads(out.splitlines()[-1])["succeeded"] == 4
    runs = query(scene.log, "SELECT run_id FROM events WHERE type = 'run_started'")
    assert len(runs) == 1
    assert sorted(item for item, _, _ in scene.executions()) == [
        f"order-{n}" for n in range(4)
    ]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_the_attempts_records_them_and_exits_130(
    scene: Scene, signum: signal.Signals
) -> None:
    enqueue(scene.log, *({"item_id": f"order-{n}"} for n in range(5)))
    replay = scene.start("-j", "2", "--", *scene.gated_worker())
    scene.wait_until(lambda: attempts_started(scene.log) == 2, replay)
    scene.wait_until(lambda: len(scene.executions()) == 2, replay)

    replay.send_signal(signum)
    out, err = replay.communicate()

    assert replay.returncode == 130
    assert f"{signum.name}: stopping; running attempts are being terminated" in err
    assert "status:      interrupted\n" in out
    assert "interrupted: 2\n" in out
    assert not any(is_running(pid) for pid in scene.worker_pids())
    assert still_open(scene.log) == ([], [])
    attempts = query(
        scene.log,
        "SELECT item_id, type, error_type, error FROM events "
        "WHERE type LIKE 'attempt%' ORDER BY item_id, event_id",
    )
    started = sorted(item for item, _, _ in scene.executions())
    assert attempts == [
        row
        for item in started
        for row in (
            {"item_id": item, "type": "attempt_started", "error_type": None,
             "error": None},
            {"item_id": item, "type": "attempt_interrupted",
             "error_type": "interrupted", "error": "the replay was interrupted"},
        )
    ]  # fmt: skip
    (finished,) = query(
        scene.log, "SELECT data FROM events WHERE type = 'run_finished'"
    )
    assert json.loads(finished["data"])["status"] == "interrupted"
    statuses = query(scene.log, "SELECT DISTINCT status FROM items")
    assert statuses == [{"status": "pending"}]


def test_a_second_ctrl_c_kills_at_once_and_the_next_replay_recovers(
    scene: Scene, tmp_path: Path
) -> None:
    # These workers ignore SIGTERM, so after the first Ctrl-C the replay waits
    # out its grace period (5 s); the second Ctrl-C must not wait for it.
    enqueue(scene.log, {"item_id": "deaf-1"}, {"item_id": "deaf-2"})
    states = [tmp_path / "state-deaf-1", tmp_path / "state-deaf-2"]
    replay = scene.start(
        "-j", "2", "--", *worker("stubborn", tmp_path / "state-{item_id}")
    )
    scene.wait_until(lambda: all(state.exists() for state in states), replay)
    pids = [int(state.read_text().split()[0]) for state in states]

    replay.send_signal(signal.SIGINT)
    scene.wait_until(
        lambda: all("SIGTERM" in state.read_text() for state in states), replay
    )
    replay.send_signal(signal.SIGINT)
    replay.communicate()

    assert replay.returncode == 130
    assert not any(is_running(pid) for pid in pids)
    # Killed at once: it left its attempts and its run open, for the next one.
    attempts, runs = still_open(scene.log)
    assert sorted(row["item_id"] for row in attempts) == ["deaf-1", "deaf-2"]
    assert len(runs) == 1

    summary = replay_in_process(scene.log, "--", "true")

    assert summary["recovered"] == 2
    assert summary["succeeded"] == 2
    assert still_open(scene.log) == ([], [])


def test_a_replay_killed_mid_run_is_closed_and_finished_by_the_next(
    scene: Scene,
) -> None:
    items = [f"order-{n}" for n in range(6)]
    enqueue(scene.log, *({"item_id": item} for item in items))
    killed = scene.start("-j", "2", "--", *scene.gated_worker())
    scene.wait_until(lambda: len(scene.executions()) == 2, killed)
    (dead_run,) = still_open(scene.log)[1]

    killed.kill()
    killed.communicate()
    # Its workers outlive it (each runs in a session of its own); let them end.
    scene.gate.touch()
    scene.wait_until(
        lambda: not any(is_running(pid) for pid in scene.worker_pids()), None
    )
    summary = replay_in_process(scene.log, "-j", "2", "--", *scene.gated_worker())

    assert summary["recovered"] == 2
    assert (summary["selected"], summary["succeeded"]) == (6, 6)
    assert still_open(scene.log) == ([], [])
    statuses = query(scene.log, "SELECT item_id, status FROM items ORDER BY item_id")
    assert statuses == [{"item_id": item, "status": "succeeded"} for item in items]
    (closed,) = query(
        scene.log,
        f"SELECT reason, data FROM events WHERE type = 'run_finished' "
        f"AND run_id = '{dead_run}'",
    )
    assert json.loads(closed["data"]) == {"status": "crashed"}
    assert closed["reason"] == "the replay ended without finishing (crash or kill)"
    interrupted = query(
        scene.log,
        "SELECT item_id, run_id, attempt, error FROM events "
        "WHERE type = 'attempt_interrupted' ORDER BY item_id",
    )
    assert [row["run_id"] for row in interrupted] == [dead_run, dead_run]
    assert {row["error"] for row in interrupted} == {
        "the replay running it ended without recording an outcome"
    }
    # Every execution beyond the one that succeeded is an interrupted attempt.
    executions = collections.Counter(item for item, _, _ in scene.executions())
    extra = collections.Counter(row["item_id"] for row in interrupted)
    assert executions == collections.Counter(items) + extra
    assert sum(extra.values()) == 2


def test_the_next_replay_stops_the_commands_a_killed_replay_left_running(
    scene: Scene,
) -> None:
    items = [f"order-{n}" for n in range(3)]
    enqueue(scene.log, *({"item_id": item} for item in items))
    killed = scene.start("-j", "2", "--", *scene.gated_worker())
    scene.wait_until(lambda: len(scene.executions()) == 2, killed)
    killed.kill()
    killed.communicate()
    orphans = scene.worker_pids()
    assert all(is_running(pid) for pid in orphans)  # the gate is still shut

    summary = replay_in_process(scene.log, "--", "true")

    assert not any(is_running(pid) for pid in orphans)
    assert (summary["recovered"], summary["succeeded"]) == (2, 3)
