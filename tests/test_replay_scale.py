"""Ten thousand items through `dlq import` and `dlq replay`, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from analytics import connect, run_query

ITEMS = 10_000


@dataclass(frozen=True)
class Replayed:
    log: Path
    process: subprocess.CompletedProcess[str]

    def summary(self) -> dict[str, Any]:
        """The summary, from the last line of stdout."""
        document: dict[str, Any] = json.loads(self.process.stdout.splitlines()[-1])
        return document


def dlq(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlq", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    """A log of ten thousand items, imported and then replayed with `true`."""
    log = tmp_path_factory.mktemp("scale") / "log"
    records = "".join(
        json.dumps({"item_id": f"item-{n:05d}", "payload": {"n": n}}) + "\n"
        for n in range(ITEMS)
    )
    imported = dlq("import", "-", "--log", str(log), stdin=records)
    assert imported.returncode == 0, imported.stderr
    process = dlq("replay", "--log", str(log), "-j", "4", "--json", "--", "true")
    return Replayed(log, process)


@pytest.mark.slow
def test_ten_thousand_items_each_get_exactly_one_attempt(replayed: Replayed) -> None:
    assert replayed.process.returncode == 0, replayed.process.stderr
    summary = replayed.summary()
    assert (summary["selected"], summary["succeeded"], summary["failed"]) == (
        ITEMS,
        ITEMS,
        0,
    )
    assert summary["status"] == "succeeded"
    conn = connect(replayed.log)
    try:
        statuses = run_query(
            conn, "SELECT status, count(*) AS n FROM items GROUP BY status"
        ).to_pylist()
        per_item = run_query(
            conn,
            "SELECT types, count(*) AS items FROM ("
            "  SELECT item_id, list(type ORDER BY event_id) AS types FROM events"
            "  WHERE type LIKE 'attempt%' GROUP BY item_id"
            ") GROUP BY types",
        ).to_pylist()
    finally:
        conn.close()
    assert statuses == [{"status": "succeeded", "n": ITEMS}]
    assert per_item == [
        {"types": ["attempt_started", "attempt_succeeded"], "items": ITEMS}
    ]


@pytest.mark.slow
def test_a_long_replay_writes_only_its_summary_on_stdout(replayed: Replayed) -> None:
    assert replayed.process.stdout.count("\n") == 1
    assert replayed.summary()["succeeded"] == ITEMS
