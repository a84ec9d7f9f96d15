"""How an attempt starts its command and waits for it, seen through `run_attempt`.

The command must start as ``subprocess.Popen`` would start it (looked up on
the PATH of its own environment, in a session of its own, holding nothing but
its three pipes) and must never be left behind as a zombie. Waiting is tested
both on a pidfd and, as on a system without ``os.pidfd_open``, in a thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from reprocessor import Outcome, run_attempt

WORKERS = Path(__file__).parent / "workers"

# Prints, as JSON, each open descriptor of the process and what it points at.
LIST_FDS = textwrap.dedent(
    """
    import json, os
    names = os.listdir("/proc/self/fd")
    found = {}
    for name in names:
        try:
            found[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the listing's own descriptor, closed by now
    print(json.dumps(found))
    """
)


@pytest.fixture(params=["pidfd", "thread"])
def waiting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How an attempt learns that its command exited.

    "thread" takes ``os.pidfd_open`` away, as on Linux before 5.3.
    """
    if request.param == "thread":
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    return str(request.param)


async def attempt(
    argv: Sequence[str], *, stdin: bytes = b"", env: dict[str, str] | None = None
) -> Outcome:
    return await run_attempt(
        argv,
        stdin=stdin,
        env=dict(os.environ) if env is None else env,
        timeout=None,
        grace=5.0,
    )


def python(code: str) -> list[str]:
    return [sys.executable, "-S", "-c", code]


def without_duration(outcome: Outcome) -> Outcome:
    return dataclasses.replace(outcome, duration_ms=0)


def stdout_of(outcome: Outcome) -> str:
    assert outcome.output is not None
    assert outcome.output.startswith("[stdout]\n"), outcome.output
    return outcome.output.removeprefix("[stdout]\n")


def start_time(pid: int) -> int | None:
    """When the process ``pid`` started (clock ticks after boot), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The name in parentheses may hold spaces; the fields after it are plain.
    return int(stat.rpartition(")")[2].split()[19])


def assert_reaped(pid: int, started: int | None) -> None:
    """``pid`` is no child of ours any more, running or zombie."""
    assert started is not None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    # Gone from /proc, or the number now belongs to another process.
    assert start_time(pid) != started


class Groups(set[int]):
    """The ``process_groups`` of an attempt, telling when one is added."""

    def __init__(self) -> None:
        super().__init__()
        self.added = trio.Event()

    def add(self, group: int) -> None:
        super().add(group)
        self.added.set()


async def wait_for_line(path: Path) -> None:
    """Wait until the file ``path`` holds a whole line."""
    file = trio.Path(path)
    # A worker's only sign is the file it writes, so it is polled.
    while True:
        if await file.exists() and "\n" in await file.read_text():
            return
        await trio.sleep(0.01)


async def run_watched(
    argv: Sequence[str], *, limit: float | None, grace: float, cancel: Path | None
) -> tuple[Outcome | None, int, int | None]:
    """Run an attempt with ``limit`` as its timeout, noting its group leader.

    With ``cancel``, the attempt is cancelled once that file holds a line.
    Returns the outcome (None if cancelled), the leader's pid and start time.
    """
    groups = Groups()
    outcomes: list[Outcome] = []

    async def run(scope: trio.CancelScope) -> None:
        with scope:
            outcomes.append(
                await run_attempt(
                    argv,
                    stdin=b"",
                    env=dict(os.environ),
                    timeout=limit,
                    grace=grace,
                    process_groups=groups,
                )
            )
        groups.added.set()  # in case the command never started

    scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, scope)
        await groups.added.wait()
        assert groups, "the attempt ended without starting its command"
        (leader,) = groups
        started = start_time(leader)
        if cancel is not None:
            await wait_for_line(cancel)
            scope.cancel()
    assert not groups
    return (outcomes[0] if outcomes else None), leader, started


async def test_the_command_holds_only_its_three_pipes() -> None:
    inherited = os.open(os.devnull, os.O_RDONLY)
    private = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(inherited, True)
    try:
        outcome = await attempt(python(LIST_FDS))
    finally:
        os.close(inherited)
        os.close(private)

    assert outcome.succeeded, outcome
    fds = json.loads(stdout_of(outcome))
    assert sorted(fds) == ["0", "1", "2"], fds
    assert all(target.startswith("pipe:") for target in fds.values()), fds
    assert len(set(fds.values())) == 3, fds


def open_fds() -> list[str]:
    """What each descriptor of this process points at, sorted."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own, closed by now
            found.append(os.readlink(f"/proc/self/fd/{name}"))
    return sorted(found)


async def test_an_attempt_leaves_no_descriptor_open_in_this_process(
    waiting: str,
) -> None:
    await attempt(["true"])  # anything opened once, for good, is open now
    before = open_fds()

    await attempt(["sh", "-c", "cat; echo out; echo err >&2"], stdin=b"x" * 100_000)
    await attempt(["dlq-test-no-such-command"])
    await run_watched(["sleep", "3600"], limit=0.1, grace=1.0, cancel=None)

    assert open_fds() == before


async def test_the_command_gets_the_payload_and_its_output_is_kept() -> None:
    outcome = await attempt(["cat"], stdin=b'{"order": 1}')

    assert without_duration(outcome) == Outcome(
        True, 0, None, 0, None, None, '[stdout]\n{"order": 1}'
    )


async def test_a_command_that_stops_reading_its_payload_still_succeeds() -> None:
    outcome = await attempt(["head", "-c", "5"], stdin=b"x" * (4 << 20))

    assert without_duration(outcome) == Outcome(
        True, 0, None, 0, None, None, "[stdout]\nxxxxx"
    )


async def test_the_command_runs_in_a_session_and_process_group_of_its_own() -> None:
    outcome = await attempt(
        python("import os; print(os.getpid(), os.getpgid(0), os.getsid(0))")
    )

    pid, group, session = map(int, stdout_of(outcome).split())
    assert pid == group == session
    assert group != os.getpgid(0)


async def test_the_command_starts_with_sigpipe_and_sigxfsz_at_their_default() -> None:
    # Python ignores both for itself; a command must not inherit that.
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN

    outcome = await attempt(["grep", "^SigIgn:", "/proc/self/status"])

    ignored = int(stdout_of(outcome).split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGXFSZ - 1))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["dlq-test-no-such-command"], "dlq-test-no-such-command"),
        (["/nonexistent/dir/tool"], "/nonexistent/dir/tool"),
    ],
)
async def test_a_missing_command_is_not_found(argv: list[str], expected: str) -> None:
    outcome = await attempt(argv)

    assert without_duration(outcome) == Outcome(
        False, None, None, 0, "not_found", f"command not found: {expected}", None
    )


async def test_a_command_that_cannot_start_leaves_no_process_behind() -> None:
    await attempt(["dlq-test-no-such-command"])

    assert exited_children() == 0


def exited_children() -> int:
    """The pid of a child of this process that exited and was not reaped, or 0."""
    try:
        pid, _ = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return 0  # no children at all
    return pid


async def test_a_file_without_execute_permission_is_a_permission_failure(
    tmp_path: Path,
) -> None:
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o644)

    outcome = await attempt([str(script)])

    assert without_duration(outcome) == Outcome(
        False, None, None, 0, "permission", f"permission denied: {script}", None
    )


async def test_a_directory_is_a_permission_failure(tmp_path: Path) -> None:
    outcome = await attempt([str(tmp_path)])

    assert (outcome.error_type, outcome.error) == (
        "permission",
        f"permission denied: {tmp_path}",
    )


async def test_a_file_the_system_cannot_execute_is_an_unknown_failure(
    tmp_path: Path,
) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(b"\x00\x01 not a program")
    binary.chmod(0o755)

    outcome = await attempt([str(binary)])

    assert without_duration(outcome) == Outcome(
        False,
        None,
        None,
        0,
        "unknown",
        f"could not start {binary}: Exec format error",
        None,
    )


async def test_a_path_through_a_file_is_an_unknown_failure(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    command = str(tmp_path / "file" / "tool")

    outcome = await attempt([command])

    assert (outcome.error_type, outcome.error) == (
        "unknown",
        f"could not start {command}: Not a directory",
    )


def install(folder: Path, name: str, mode: int, text: str = "") -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\necho {text or folder.name}\n")
    (folder / name).chmod(mode)


async def test_a_bare_name_is_looked_up_on_the_path_of_the_commands_environment(
    tmp_path: Path,
) -> None:
    install(tmp_path / "bin", "dlq-test-tool", 0o755)
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    outcome = await attempt(["dlq-test-tool"], env=env)

    assert without_duration(outcome) == Outcome(
        True, 0, None, 0, None, None, "[stdout]\nbin\n"
    )


async def test_a_path_entry_holding_a_non_executable_file_is_passed_over(
    tmp_path: Path,
) -> None:
    install(tmp_path / "first", "dlq-test-tool", 0o644)
    install(tmp_path / "second", "dlq-test-tool", 0o755)
    env = dict(os.environ, PATH=f"{tmp_path / 'first'}:{tmp_path / 'second'}")

    outcome = await attempt(["dlq-test-tool"], env=env)

    assert outcome.output == "[stdout]\nsecond\n"


async def test_a_name_on_the_path_only_without_permission_is_a_permission_failure(
    tmp_path: Path,
) -> None:
    install(tmp_path / "bin", "dlq-test-tool", 0o644)
    env = dict(os.environ, PATH=f"{tmp_path / 'missing'}:{tmp_path / 'bin'}")

    outcome = await attempt(["dlq-test-tool"], env=env)

    assert (outcome.error_type, outcome.error) == (
        "permission",
        "permission denied: dlq-test-tool",
    )


@pytest.mark.parametrize(
    ("code", "error_type"),
    [(1, "exit_code"), (3, "exit_code"), (126, "permission"), (127, "not_found")],
)
async def test_an_exit_code_is_reported_with_its_error_type(
    waiting: str, code: int, error_type: str
) -> None:
    outcome = await attempt(["sh", "-c", f"exit {code}"])

    assert without_duration(outcome) == Outcome(
        False, code, None, 0, error_type, f"exit code {code}", None
    )


async def test_a_command_exiting_zero_succeeds(waiting: str) -> None:
    outcome = await attempt(["true"])

    assert without_duration(outcome) == Outcome(True, 0, None, 0, None, None, None)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL, signal.SIGSEGV])
async def test_a_command_killed_by_a_signal_reports_the_signal(
    waiting: str, signum: signal.Signals
) -> None:
    outcome = await attempt(["sh", "-c", f"kill -{signum.name[3:]} $$"])

    assert without_duration(outcome) == Outcome(
        False, None, int(signum), 0, "signal", f"killed by {signum.name}", None
    )


@pytest.mark.parametrize("command", ["sleep", "stubborn"])
async def test_a_timed_out_command_is_stopped_and_reaped(
    waiting: str, command: str, tmp_path: Path
) -> None:
    argv = {
        "sleep": ["sleep", "3600"],
        "stubborn": [
            sys.executable,
            "-S",
            str(WORKERS / "stubborn.py"),
            tmp_path / "s",
        ],
    }[command]

    outcome, leader, started = await run_watched(
        list(map(str, argv)), limit=0.3, grace=0.3, cancel=None
    )

    assert outcome is not None
    assert (outcome.error_type, outcome.error) == ("timeout", "timed out after 0.3 s")
    assert_reaped(leader, started)


async def test_a_cancelled_attempt_kills_a_command_ignoring_sigterm_and_reaps_it(
    waiting: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    argv = [sys.executable, "-S", str(WORKERS / "stubborn.py"), str(state)]

    outcome, leader, started = await run_watched(
        argv, limit=None, grace=0.3, cancel=state
    )

    # The worker wrote its pid once SIGTERM was ignored: only SIGKILL ended it.
    assert outcome is None
    assert_reaped(leader, started)


def test_a_process_started_with_its_stdio_closed_still_gives_the_command_pipes(
    tmp_path: Path,
) -> None:
    result = tmp_path / "result.json"
    script = textwrap.dedent(
        f"""
        import json, os, sys, trio
        from reprocessor import run_attempt
        for fd in (0, 1, 2):
            os.close(fd)
        outcome = trio.run(lambda: run_attempt(
            ["sh", "-c", "cat; echo err >&2"], stdin=b"payload", env=dict(os.environ),
            timeout=None, grace=1.0,
        ))
        with open({str(result)!r}, "w") as file:
            json.dump([outcome.succeeded, outcome.output], file)
        """
    )

    subprocess.run([sys.executable, "-c", script], check=True)

    assert json.loads(result.read_text()) == [
        True,
        "[stdout]\npayload\n[stderr]\nerr\n",
    ]
