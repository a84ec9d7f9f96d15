"""Fixtures shared by every test area."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventlog import EventLog


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    """A new, empty event log in the test's own directory."""
    return EventLog.open(tmp_path / "log", create=True)
