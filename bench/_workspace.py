"""What the benchmarks share: a scratch directory, input files, child runs."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench._report import say

# The project's root: children run from here so that `-m dlq` is this tree's.
ROOT = Path(__file__).resolve().parent.parent

_JOBS = (
    "billing-sync",
    "invoice-render",
    "email-send",
    "search-index",
    "thumbnail-resize",
    "ledger-export",
    "webhook-deliver",
    "report-nightly",
)

# (error_type, message, exit_code): what failed jobs commonly leave behind.
_FAILURES = (
    ("HTTPError", "503 Service Unavailable from POST /v1/charges", 1),
    ("TimeoutError", "no answer from the upstream service within 30.0 s", 124),
    ("KeyError", "KeyError: 'customer_id' while reading the order", 1),
    ("MemoryError", "killed by the kernel: out of memory (limit 512 MiB)", 137),
    ("ValidationError", "amount_cents must be a positive integer, got -1", 2),
    ("ConnectionResetError", "[Errno 104] Connection reset by peer", 1),
    ("IntegrityError", "duplicate key value violates unique constraint", 1),
    ("PermissionError", "[Errno 13] Permission denied: '/srv/out/report.pdf'", 126),
)

_CURRENCIES = ("EUR", "USD", "GBP", "JPY", "CHF")


def item_line(number: int) -> str:
    """One realistic JSONL record of a failed item, the same for a number.

    Values vary with the number (by a cheap multiplicative hash, so that
    generating a million lines takes about a second) so that columns do not
    compress to nothing.
    """
    mixed = (number * 2654435761) & 0xFFFFFFFF
    job = _JOBS[mixed % len(_JOBS)]
    error_type, message, exit_code = _FAILURES[(mixed >> 8) % len(_FAILURES)]
    currency = _CURRENCIES[(mixed >> 16) % len(_CURRENCIES)]
    return (
        f'{{"item_id":"itm-{number:09d}","job_id":"{job}",'
        f'"payload":{{"order_id":{number},"customer":"cus_{mixed:08x}",'
        f'"amount_cents":{mixed % 100_000},"currency":"{currency}",'
        f'"lines":{mixed % 7 + 1}}},'
        f'"error":"{message} (order {number}, attempt {mixed % 5 + 1})",'
        f'"error_type":"{error_type}","exit_code":{exit_code}}}\n'
    )


def write_items(path: Path, count: int) -> None:
    """Write ``count`` records (see :func:`item_line`) to ``path``."""
    chunk = 20_000
    with open(path, "w", encoding="utf-8") as out:
        for start in range(0, count, chunk):
            stop = min(start + chunk, count)
            out.write("".join(item_line(n) for n in range(start, stop)))


@dataclass
class Workspace:
    """A scratch directory for one run, and what benchmarks leave for others.

    ``scale`` shrinks every size (0.1 for ``--quick``).
    """

    root: Path
    scale: float
    # A log holding the items of `items_file(count)`, by count, left by the
    # import benchmark for the list benchmark.
    imported_logs: dict[int, Path] = field(default_factory=dict)
    _items: dict[int, Path] = field(default_factory=dict)
    _serial: int = 0

    def size(self, full: int, *, least: int = 1) -> int:
        """``full`` scaled for this run, at least ``least``."""
        return max(least, round(full * self.scale))

    def fresh(self, label: str) -> Path:
        """A path in the scratch directory that does not exist yet."""
        self._serial += 1
        return self.root / f"{label}-{self._serial}"

    def items_file(self, count: int) -> Path:
        """A JSONL file of ``count`` items, written once per run."""
        if count not in self._items:
            path = self.root / f"items-{count}.jsonl"
            started = time.perf_counter()
            write_items(path, count)
            elapsed = time.perf_counter() - started
            megabytes = path.stat().st_size / 2**20
            say(
                f"  generated {count:,} items ({megabytes:,.0f} MiB) in {elapsed:.1f} s"
            )
            self._items[count] = path
        return self._items[count]


class ChildFailedError(RuntimeError):
    """A command a benchmark measures exited with an error."""


@dataclass(frozen=True, slots=True)
class ChildRun:
    """How one child process went."""

    wall: float  # seconds from spawn to exit, interpreter start-up included
    peak_rss: int  # bytes: the child's own ru_maxrss
    stdout: str
    stderr: str


# Spawns the measured command, waits for it and writes "<seconds> <KiB>" to
# the file named first. It runs in an interpreter of its own (no site, few
# modules) because a child's ru_maxrss counts the high-water mark of the
# memory it was forked from: measured straight from this process, every
# child would seem at least as big as the benchmark process itself.
_LAUNCHER = """\
import os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(report, "w") as out:
    out.write(f"{wall!r} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_child(argv: list[str], scratch: Path) -> ChildRun:
    """Run ``argv`` to completion, measuring its wall time and peak memory.

    A small launcher process spawns ``argv`` and reaps it with ``os.wait4``,
    which gives the resource usage of that child alone; the wall time runs
    from spawn to exit, so interpreter start-up is counted. Output goes to
    files, so that no pipe can fill and stall the child.

    Raises:
        ChildFailedError: the child exited non-zero (its stderr is quoted).
    """
    out_path, err_path = scratch.with_suffix(".out"), scratch.with_suffix(".err")
    report = scratch.with_suffix(".usage")
    launcher = [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(report), *argv]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        returncode = subprocess.run(
            launcher, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=ROOT
        ).returncode
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    for path in (out_path, err_path):
        path.unlink()
    if returncode != 0:
        shown = " ".join(argv[:6]) + (" ..." if len(argv) > 6 else "")
        raise ChildFailedError(
            f"`{shown}` exited with {returncode}:\n{stderr.strip()[-2000:]}"
        )
    wall, kibibytes = report.read_text().split()
    report.unlink()
    return ChildRun(float(wall), int(kibibytes) * 1024, stdout, stderr)


def python_c(code: str, *args: str) -> list[str]:
    """The command line running ``code`` in a fresh interpreter."""
    return [sys.executable, "-c", code, *args]


def dlq(*args: str) -> list[str]:
    """The command line running the real `dlq` CLI of this tree."""
    return [sys.executable, "-m", "dlq", *args]
