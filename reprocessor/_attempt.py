"""One attempt: run a command as a real subprocess and describe how it ended.

A command is started with ``os.posix_spawn`` straight from the trio thread,
not with ``subprocess.Popen`` in a worker thread (a thread hop and Popen's
setup cost about a millisecond per attempt), yet it is started as Popen would
start it: looked up on the PATH of its own environment, in a new session,
with SIGPIPE and SIGXFSZ back at their default action, and holding no
descriptor but its three pipes. Its exit is awaited on a pidfd, or where
there is none (Linux before 5.3), in a thread.

Limitation: the trio thread stops until the command has been exec'ed,
because glibc's posix_spawn waits for the child (vfork) and os.posix_spawn
holds the GIL meanwhile; usually tens of microseconds, but up to a few
milliseconds on a virtual machine slow to wake an idle CPU for the child.
A helper process that starts commands would lift it.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import signal
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

# Signals Python ignores for itself; a command gets them at their default
# action, as with subprocess (its restore_signals).
_RESTORED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ")
    if hasattr(signal, name)
)

# Threads waiting for processes to exit where there is no pidfd: one per
# running attempt, never held back, since a capped wait would delay timeouts.
_EXIT_WAITERS = trio.CapacityLimiter(math.inf)


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
    # An attempt cancelled before its command starts does not start it.
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        process, stdin_stream, stdout_stream, stderr_stream = _spawn(argv, env)
    except OSError as exc:
        return _spawn_failure(argv, exc, _ms_since(started))

    out, err = _Tail(OUTPUT_TAIL_BYTES), _Tail(OUTPUT_TAIL_BYTES)
    timed_out = False
    groups = process_groups if process_groups is not None else set()
    groups.add(process.pid)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_feed, stdin_stream, stdin)
            nursery.start_soon(_drain, stdout_stream, out)
            nursery.start_soon(_drain, stderr_stream, err)
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
        process.close()

    return _describe(process.returncode, timed_out, timeout, out, err, started)


async def stop_process_group(process: _Process, grace: float) -> None:
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


def _signal_group(process: _Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _kill_leftovers(process: _Process) -> None:
    # Children the command left behind in its group would outlive the replay.
    _signal_group(process, signal.SIGKILL)


class _Process:
    """A started command: its pid, and its returncode once it has been reaped.

    The returncode is the exit code, or minus the number of the signal that
    ended the process, as with subprocess. One task at a time may wait.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd = _open_pidfd(pid)

    async def wait(self) -> int:
        """Wait until the process has exited, reap it, and return its returncode."""
        if self.returncode is None:
            if self._pidfd is not None:
                await trio.lowlevel.wait_readable(self._pidfd)
            else:
                # abandon_on_cancel=True (trio >= 0.23; formerly cancellable=)
                # lets a timeout or an interrupted replay cancel the wait. The
                # thread only learns that the process exited (WNOWAIT) and
                # leaves it to be reaped here, so an abandoned thread never
                # takes the exit status with it, and a later wait just starts
                # a thread of its own.
                await trio.to_thread.run_sync(
                    _wait_exited,
                    self.pid,
                    abandon_on_cancel=True,
                    limiter=_EXIT_WAITERS,
                )
            self.returncode = self._reap()
        return self.returncode

    def close(self) -> None:
        """Close the pidfd, if still open; the process itself is left alone."""
        if self._pidfd is not None:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _reap(self) -> int:
        # The process has exited, so this does not block.
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            status = 0  # SIGCHLD is ignored, so no status is kept: as subprocess
        finally:
            self.close()
        return os.waitstatus_to_exitcode(status)


def _open_pidfd(pid: int) -> int | None:
    # pidfd_open needs Linux 5.3 and Python 3.9; without it, a thread waits.
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _wait_exited(pid: int) -> None:
    # Gone already (reaped by a wait in the trio thread, or SIGCHLD ignored):
    # the caller's waitpid finds that out.
    with contextlib.suppress(ChildProcessError):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


def _spawn(
    argv: Sequence[str], env: Mapping[str, str]
) -> tuple[
    _Process, trio.lowlevel.FdStream, trio.lowlevel.FdStream, trio.lowlevel.FdStream
]:
    """Start ``argv`` in a new session, with pipes as its stdin, stdout and stderr.

    Returns the process and this side's ends of the pipes: stdin, stdout,
    stderr. Raises the OSError of a command that could not be started (the
    child's exec error, which posix_spawn reports), having closed every pipe.
    """
    opened: list[int] = []
    try:
        stdin_read, stdin_write = _pipe(opened)
        stdout_read, stdout_write = _pipe(opened)
        stderr_read, stderr_write = _pipe(opened)
        actions: list[tuple[int, ...]] = [
            (os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds()
        ]
        actions += [
            (os.POSIX_SPAWN_DUP2, fd, target)
            for target, fd in enumerate((stdin_read, stdout_write, stderr_write))
        ]
        pid = _spawn_on_path(argv, env, actions)
    except BaseException:
        for fd in opened:
            os.close(fd)
        raise

    kept = (stdin_write, stdout_read, stderr_read)
    for fd in opened:
        if fd not in kept:
            os.close(fd)
    return (
        _Process(pid),
        trio.lowlevel.FdStream(stdin_write),
        trio.lowlevel.FdStream(stdout_read),
        trio.lowlevel.FdStream(stderr_read),
    )


def _pipe(opened: list[int]) -> tuple[int, int]:
    """A pipe whose ends are close-on-exec and numbered above 2.

    Every descriptor made is added to ``opened``, for the caller to close.
    """
    ends = []
    for fd in os.pipe():  # made with O_CLOEXEC
        opened.append(fd)
        if fd <= 2:
            # This process runs with stdin, stdout or stderr closed. A child
            # end numbered 0-2 might be overwritten by the dup2 of another
            # end, or dup2'ed onto itself, which some C libraries do without
            # clearing close-on-exec.
            fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            opened.append(fd)
        ends.append(fd)
    return ends[0], ends[1]


def _inheritable_fds() -> list[int]:
    """This process's descriptors above 2 that a child would inherit.

    They are those it was given without close-on-exec, or that a C library
    opened so; Popen closes them in the child, and so does _spawn.

    Limitation: one opened without close-on-exec by another thread between
    this listing and the spawn reaches the command, because posix_spawn has
    no "close everything above 2" that Python exposes (glibc's
    posix_spawn_file_actions_addclosefrom_np would lift it). Where there is
    neither /proc/self/fd nor /dev/fd, none are closed.
    """
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        found = []
        for name in names:
            fd = int(name)
            # The listing's own descriptor is closed by now: OSError.
            with contextlib.suppress(OSError):
                if fd > 2 and os.get_inheritable(fd):
                    found.append(fd)
        return found
    return []


def _spawn_on_path(
    argv: Sequence[str], env: Mapping[str, str], actions: list[tuple[int, ...]]
) -> int:
    """posix_spawn ``argv`` in a new session, looked up as Popen looks it up.

    A bare name is tried in each folder of the PATH in ``env``, not of this
    process (which posix_spawnp would search). If none starts, the error
    raised is the first that is not "no such file" or "not a directory", or
    else the last one, as with Popen.
    """
    name = argv[0]
    if os.path.dirname(name):
        candidates = [name]
    else:
        candidates = [os.path.join(folder, name) for folder in os.get_exec_path(env)]

    first_error: OSError | None = None
    missing: OSError | None = None
    for path in candidates:
        try:
            os.stat(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            missing = exc  # what exec would say, known without starting a child
            continue
        except OSError:
            pass  # exec says what is wrong
        try:
            return os.posix_spawn(
                path,
                list(argv),
                env,
                file_actions=actions,
                setsid=True,
                setsigdef=_RESTORED_SIGNALS,
            )
        except (FileNotFoundError, NotADirectoryError) as exc:
            missing = exc  # a script whose interpreter is missing, say
        except OSError as exc:
            first_error = first_error or exc
    error = first_error or missing
    assert error is not None  # there is always a candidate
    raise error


async def _feed(stream: trio.abc.SendStream, data: bytes) -> None:
    # A command that exits without reading its stdin is fine.
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        async with stream:
            if data:
                await stream.send_all(data)


async def _drain(stream: trio.abc.ReceiveStream, tail: _Tail) -> None:
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
