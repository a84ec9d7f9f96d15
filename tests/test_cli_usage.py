"""The command line's face: help for every command, and exit code 2 for misuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner, Result

from dlq import app

runner = CliRunner()

COMMANDS = [
    "add",
    "import",
    "list",
    "show",
    "query",
    "stats",
    "errors",
    "compact",
    "demo",
    "replay",
    "audit",
    "tail",
    "export",
    "discard",
    "requeue",
    "amend",
    "verify",
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str | None]:
    """An environment whose DLQ_LOG points into the test's own directory."""
    return {"DLQ_LOG": str(tmp_path / "log")}


def dlq(*args: str | Path, env: dict[str, str | None]) -> Result:
    """Run `dlq ARGS` in this process; an exception escaping the CLI fails the test."""
    return runner.invoke(
        app, [str(arg) for arg in args], env=env, catch_exceptions=False
    )


def registered() -> dict[str, Any]:
    """The commands as typer registered them, by name, in order."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    return dict(group.commands)


def summary(command: Any) -> str:
    """The first line of a command's help."""
    return str(command.help or "").strip().partition("\n")[0]


def words(text: str) -> str:
    """``text`` with every run of whitespace as one space, to ignore wrapping."""
    return " ".join(text.split())


def test_every_command_is_registered() -> None:
    assert list(registered()) == COMMANDS


def test_python_m_dlq_help_lists_every_command(tmp_path: Path) -> None:
    env = os.environ | {"COLUMNS": "200", "DLQ_LOG": str(tmp_path / "log")}

    result = subprocess.run(
        [sys.executable, "-m", "dlq", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=env,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "Usage: python -m dlq [OPTIONS] COMMAND [ARGS]..." in result.stdout
    _, _, commands = result.stdout.partition("─ Commands ─")
    listed = dict(
        line.strip("│ ").split(maxsplit=1)
        for line in commands.splitlines()
        if line.startswith("│")
    )
    assert listed == {name: summary(c) for name, c in registered().items()}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_a_summary(
    name: str, env: dict[str, str | None]
) -> None:
    first_line = summary(registered()[name])
    assert first_line.endswith(".")
    assert len(first_line) > 10

    result = dlq(name, "--help", env=env)

    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert f"Usage: dlq {name} [OPTIONS]" in result.stdout
    assert words(first_line) in words(result.stdout)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_shows_an_example_of_itself(
    name: str, env: dict[str, str | None]
) -> None:
    result = dlq(name, "--help", env={**env, "COLUMNS": "200"})

    assert result.exit_code == 0, result.stderr
    _, found, shown = result.stdout.partition(" Examples:")
    assert found
    lines = [line.strip(" │") for line in shown.splitlines()]
    assert any(
        line.startswith(f"dlq {name} ") or line == f"dlq {name}" for line in lines
    )


def test_no_command_shows_the_help_and_is_bad_usage(
    env: dict[str, str | None],
) -> None:
    result = dlq(env=env)

    assert result.exit_code == 2
    assert "Usage: dlq [OPTIONS] COMMAND [ARGS]..." in result.stdout + result.stderr


def test_an_unknown_command_is_bad_usage(env: dict[str, str | None]) -> None:
    result = dlq("lsit", env=env)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert "No such command 'lsit'" in result.stderr


@pytest.mark.parametrize("name", [c for c in COMMANDS if c != "replay"])
def test_an_unknown_option_is_bad_usage(tmp_path: Path, name: str) -> None:
    result = dlq(name, "--no-such-option", "--log", tmp_path / "log", env={})

    assert result.exit_code == 2
    assert result.stdout == ""
    assert "No such option: --no-such-option" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "missing"),
    [(["add"], "item_id"), (["show"], "item_id"), (["query"], "sql")],
)
def test_a_missing_argument_is_bad_usage(
    tmp_path: Path, args: list[str], missing: str
) -> None:
    result = dlq(*args, "--log", tmp_path / "log", env={})

    assert result.exit_code == 2
    assert f"Missing argument '{missing}'" in result.stderr
    assert list(tmp_path.iterdir()) == []
