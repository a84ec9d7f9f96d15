"""What the reliability suite shares: how many trials to run, and the tally
of what it tried, printed at the end of the run for docs/reliability.md."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

# SIGKILL trials per command: `just test` runs the first, `just soak` the second.
TRIALS = {"test": 30, "soak": 300}


@dataclass
class Tally:
    """What one area of the suite tried and what held."""

    trials: int = 0
    faults: int = 0
    events_checked: int = 0
    events_lost: int = 0
    notes: list[str] = field(default_factory=list)


class Figures:
    """The tally of every area, kept for the whole session."""

    def __init__(self) -> None:
        self.areas: dict[str, Tally] = {}

    def add(
        self,
        area: str,
        *,
        trials: int = 0,
        faults: int = 0,
        events_checked: int = 0,
        events_lost: int = 0,
    ) -> None:
        """Count what a test tried in ``area`` (a short name, such as
        "SIGKILL during dlq replay")."""
        tally = self.areas.setdefault(area, Tally())
        tally.trials += trials
        tally.faults += faults
        tally.events_checked += events_checked
        tally.events_lost += events_lost

    def rows(self) -> list[dict[str, Any]]:
        return [{"area": name, **asdict(t)} for name, t in sorted(self.areas.items())]


_FIGURES = Figures()


@pytest.fixture(scope="session")
def trials(pytestconfig: pytest.Config) -> int:
    """How many seeded trials a fault test runs: more with `--soak`."""
    return TRIALS["soak" if pytestconfig.getoption("soak") else "test"]


@pytest.fixture(scope="session")
def figures() -> Figures:
    """The session's tally; each fault test adds what it tried and found."""
    return _FIGURES


def _tree_hash(root: Path) -> str:
    """A hash of every name and byte below ``root``."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
        digest.update(b"\1")
    return digest.hexdigest()


@pytest.fixture(scope="session")
def tree_hash() -> Callable[[Path], str]:
    """A function hashing every name and byte below a directory, to show that
    a refused command left a log exactly as it was."""
    return _tree_hash


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the tally, and write it as JSON where DLQ_RELIABILITY_REPORT says."""
    rows = _FIGURES.rows()
    if not rows:
        return
    write = terminalreporter.write_line
    write("")
    write("reliability: area | trials | faults injected | events checked | lost")
    for row in rows:
        write(
            f"  {row['area']} | {row['trials']} | {row['faults']} | "
            f"{row['events_checked']} | {row['events_lost']}"
        )
    target = os.environ.get("DLQ_RELIABILITY_REPORT")
    if target:
        Path(target).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
