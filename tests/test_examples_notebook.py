"""The example notebook runs from top to bottom, headless, as a reader runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
import trio
from nbclient import NotebookClient

from eventlog import EventLog
from tests.replaying import enqueue, run, worker

NOTEBOOK = Path(__file__).parent.parent / "examples" / "analytics.ipynb"


def execute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run every cell of the notebook in a real kernel; a failing cell raises."""
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    return notebook


def outputs(notebook: Any) -> str:
    """Everything the cells printed or returned, as one text."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.append(json.dumps(output.get("data", {})))
    return "\n".join(texts)


def test_the_notebook_runs_on_a_generated_log(
    log: EventLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue(
        log,
        *(
            {
                "item_id": f"order-{n}",
                "payload": {"fail": n % 2 == 0},
                "error": f"ConnectionError: connection refused by 10.0.0.{n}:5432",
            }
            for n in range(10)
        ),
    )
    # A plain function: nbclient runs an asyncio loop of its own, which must
    # not run inside the test's trio loop.
    trio.run(run, log, worker("judge"))
    monkeypatch.setenv("DLQ_LOG", str(log.path))

    notebook = execute(tmp_path, monkeypatch)

    shown = outputs(notebook)
    assert "'status': 'succeeded', 'items': 5" in shown
    assert "told to fail" in shown  # the failed attempts' signature
    assert "image/png" in shown  # the charts were drawn


def test_the_notebook_builds_its_own_sample_without_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DLQ_LOG", raising=False)

    notebook = execute(tmp_path, monkeypatch)

    shown = outputs(notebook)
    assert "still broken" in shown
    assert "'status': 'pending'" in shown
