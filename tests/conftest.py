"""Fixtures shared by every test area."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventlog import EventLog


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        help="Run the reliability suite's long form (300 trials per fault).",
    )


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    """A new, empty event log in the test's own directory."""
    return EventLog.open(tmp_path / "log", create=True)
