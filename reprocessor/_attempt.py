"""One attempt: run a command as a real subprocess and describe how it ended."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

# How much of each stream an attempt keeps (its last bytes).
OUTPUT_TAIL_BYTES = 8 * 1024

# How long the streams may stay open after the process ended (a background
# child can keep them open) before they are abandoned.
_DRAIN_AFTER_EXIT = 1.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended."""

    succeeded: bool
    exit_code: int | None
    signal: int | None
    duration_ms: int
    error_type: str | None
    error: str | None
    output: str | None


class _Tail:
    """The last ``limit`` bytes written to it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def add(self, chunk: bytes | bytearray) -> None:
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


async def run_attempt(
    argv: Sequence[str],
    *,
    stdin: bytes,
    env: Mapping[str, str],
    timeout: float | None,  # noqa: ASYNC109 - an expiry is an outcome, not an error
    grace: float,
    process_groups: set[int] | None = None,
) -> Outcome:
    """Run ``argv`` once, feeding ``stdin``, and return how it ended.

    On timeout the whole process group gets SIGTERM, then SIGKILL after
    ``grace`` seconds. If the caller is cancelled (an interrupted replay),
    the process group is stopped the same way before the cancellation goes on.
    While it runs, its process group id is in ``process_groups``.
    """
    started = trio.current_time()
    try:
        process = await trio.lowlevel.open_process(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        return _spawn_failure(argv, exc, _ms_since(started))

    out, err = _Tail(OUTPUT_TAIL_BYTES), _Tail(OUTPUT_TAIL_BYTES)
    timed_out = False
    groups = process_groups if process_groups is not None else set()
    groups.add(process.pid)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_feed, process.stdin, stdin)
            nursery.start_soon(_drain, process.stdout, out)
            nursery.start_soon(_drain, process.stderr, err)
            with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
                await process.wait()
            if scope.cancelled_caught:
                timed_out = True
                await stop_process_group(process, grace)
            nursery.cancel_scope.deadline = trio.current_time() + _DRAIN_AFTER_EXIT
    except BaseException:
        with trio.CancelScope(shield=True):
            await stop_process_group(process, grace)
        raise
    finally:
        _kill_leftovers(process)
        groups.discard(process.pid)

    return _describe(process.returncode, timed_out, timeout, out, err, started)


async def stop_process_group(process: trio.Process, grace: float) -> None:
    """SIGTERM the process's group, then SIGKILL it if still alive after ``grace``."""
    if process.returncode is not None:
        return
    _signal_group(process, signal.SIGTERM)
    with trio.move_on_after(grace):
        await process.wait()
        return
    _signal_group(process, signal.SIGKILL)
    await process.wait()


def kill_commands_of_runs(run_ids: set[str], *, wait: float = 2.0) -> int:
    """SIGKILL the process groups of commands that these runs started.

    A command is known by the ``DLQ_RUN_ID`` in its environment, which its
    own children inherit too. Returns how many process groups were killed,
    after waiting up to ``wait`` seconds for them to be gone.

    Limitation: commands are found through /proc, so on a system without it
    (macOS) those of a dead run are left running; a file of process group
    ids kept beside the log would lift it.
    """
    markers = {f"DLQ_RUN_ID={run_id}".encode() for run_id in run_ids}
    own = os.getpgrp()
    groups: set[int] = set()
    for entry in _proc_entries():
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            if markers.isdisjoint(environ.split(b"\0")):
                continue
            group = os.getpgid(int(entry))
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
        if group != own:
            groups.add(group)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    alive, deadline = set(groups), time.monotonic() + wait
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = {group for group in alive if _group_alive(group)}
    return len(groups)


def _proc_entries() -> list[str]:
    try:
        return [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except FileNotFoundError:
        return []


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(process: trio.Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _kill_leftovers(process: trio.Process) -> None:
    # Children the command left behind in its group would outlive the replay.
    _signal_group(process, signal.SIGKILL)


async def _feed(stream: trio.abc.SendStream | None, data: bytes) -> None:
    if stream is None:
        return
    # A command that exits without reading its stdin is fine.
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        async with stream:
            if data:
                await stream.send_all(data)


async def _drain(stream: trio.abc.ReceiveStream | None, tail: _Tail) -> None:
    if stream is None:
        return
    async with stream:
        while chunk := await stream.receive_some(65536):
            tail.add(chunk)


def _describe(
    returncode: int | None,
    timed_out: bool,
    timeout: float | None,
    out: _Tail,
    err: _Tail,
    started: float,
) -> Outcome:
    duration_ms = _ms_since(started)
    output = _join_output(out.text(), err.text())
    if timed_out:
        return Outcome(
            False, None, None, duration_ms, "timeout",
            f"timed out after {timeout:g} s", output,
        )  # fmt: skip
    assert returncode is not None
    if returncode == 0:
        return Outcome(True, 0, None, duration_ms, None, None, output)
    message = last_meaningful_line(err.text()) or last_meaningful_line(out.text())
    if returncode < 0:
        signum = -returncode
        name = _signal_name(signum)
        return Outcome(
            False, None, signum, duration_ms, "signal",
            message or f"killed by {name}", output,
        )  # fmt: skip
    error_type = {126: "permission", 127: "not_found"}.get(returncode, "exit_code")
    return Outcome(
        False, returncode, None, duration_ms, error_type,
        message or f"exit code {returncode}", output,
    )  # fmt: skip


def _spawn_failure(argv: Sequence[str], exc: OSError, duration_ms: int) -> Outcome:
    if isinstance(exc, FileNotFoundError):
        error_type, error = "not_found", f"command not found: {argv[0]}"
    elif isinstance(exc, PermissionError):
        error_type, error = "permission", f"permission denied: {argv[0]}"
    else:
        error_type, error = "unknown", f"could not start {argv[0]}: {exc.strerror}"
    return Outcome(False, None, None, duration_ms, error_type, error, None)


def last_meaningful_line(text: str) -> str | None:
    """The line a person would quote: the last one that says something.

    For a Python traceback that is the exception line; lines of only
    punctuation or whitespace are passed over.
    """
    for line in reversed(text.splitlines()):
        stripped = line.strip()
        if any(char.isalnum() for char in stripped):
            return stripped[:1000]
    return None


def _join_output(stdout: str, stderr: str) -> str | None:
    parts = []
    if stdout:
        parts.append(f"[stdout]\n{stdout}")
    if stderr:
        parts.append(f"[stderr]\n{stderr}")
    return "\n".join(parts) or None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _ms_since(started: float) -> int:
    return round((trio.current_time() - started) * 1000)
