"""The sample queue `dlq demo` builds: failures as a real batch job has them."""

from __future__ import annotations

import io
import random
import shutil
import sys
from pathlib import Path

import msgspec

import eventlog
import reprocessor

# Marks a directory as built by the demo, so a later demo may replace it.
DEMO_MARKER = "DLQ-DEMO"

_ERRORS = [
    (
        "network",
        7,
        "requests.exceptions.ConnectionError: HTTPSConnectionPool("
        "host='cdn.example.com', port=443): Max retries exceeded with url: "
        "/img/{n}.jpg",
    ),
    (
        "exit_code",
        1,
        'Traceback (most recent call last):\n  File "resize.py", line 42, in <module>\n'
        "    main()\nPIL.UnidentifiedImageError: cannot identify image file "
        "'/data/in/{n}.jpg'",
    ),
    ("exit_code", 2, "ValueError: invoice {n} has a negative total (-{n}.50 EUR)"),
    ("timeout", None, "timed out after 30 s"),
    ("resource_exhausted", 137, "killed: out of memory (rss 2048 MiB)"),
]


def build_demo(directory: Path, *, items: int = 60, seed: int = 7) -> eventlog.EventLog:
    """Create a log in ``directory`` holding a sample of failed items.

    Raises:
        FileExistsError: ``directory`` exists and was not made by the demo.
    """
    if directory.exists():
        if not (directory / DEMO_MARKER).exists():
            raise FileExistsError(
                f"{directory} exists and is not a demo; pass --dir with a new path"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / DEMO_MARKER).write_text("built by `dlq demo`; safe to delete\n")
    log = eventlog.EventLog.open(directory, create=True)
    eventlog.import_records(log, io.BytesIO(_sample(items, seed)), source="demo")
    return log


def demo_command() -> tuple[str, ...]:
    """The argv the demo replays its items with: a small worker script that
    reads each item's payload from stdin and still fails for some."""
    worker = Path(__file__).with_name("_demo_worker.py")
    return (sys.executable, "-S", str(worker), "{item_id}")


def demo_options() -> reprocessor.ReplayOptions:
    """How the demo replays its queue: its worker, a second try for what fails,
    and a timeout short enough that the slow item shows one quickly."""
    return reprocessor.ReplayOptions(
        command=demo_command(),
        timeout=SLOW_TIMEOUT,
        attempts=2,
        backoff="fixed",
        delay=0.1,
    )


# Seconds the demo gives an attempt; the slow item needs far more.
SLOW_TIMEOUT = 1.5


# The sample's number of the one item that takes too long.
SLOW_ITEM = 1


def _sample(items: int, seed: int) -> bytes:
    rng = random.Random(seed)
    lines = []
    for n in range(items):
        job = rng.choice(["thumbnails", "invoices"])
        error_type, exit_code, template = rng.choice(_ERRORS)
        payload: dict[str, object] = {
            "n": n,
            "source": f"s3://batch/{job}/{n:04d}.json",
        }
        if n == SLOW_ITEM:
            # One document far bigger than the rest: the worker needs minutes.
            job, error_type, exit_code = "invoices", "timeout", None
            template = "timed out after 30 s"
            payload["pages"] = 40_000
        record = {
            "item_id": f"{job}-{n:04d}",
            "job_id": job,
            "payload": payload,
            "error": template.format(n=n),
            "error_type": error_type,
            "exit_code": exit_code,
            "failure_id": f"demo-{n}",
        }
        lines.append(msgspec.json.encode(record) + b"\n")
    return b"".join(lines)
