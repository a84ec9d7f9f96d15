"""Values crafted to run a command of their own, through every placeholder of a
replay's command, with and without --shell: none runs, and the real command
receives each value exactly as the item holds it."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dlq import app
from reprocessor import CommandTemplate, MissingValueError

runner = CliRunner()
RECORD = Path(__file__).parents[1] / "workers" / "record.py"


def injections(sentinel: Path) -> list[str]:
    """Texts that run ``touch SENTINEL`` if a shell ever parses them."""
    touch = f"touch {sentinel}"
    return [
        f"$({touch})",
        f"`{touch}`",
        f"; {touch}",
        f"a && {touch}",
        f"a | {touch}",
        f"a\n{touch}",
        f"'; {touch}; '",
        f'"; {touch}; "',
        f'"$({touch})"',
        f"'$({touch})'",
        f"\\'; {touch} #",
        f"$(IFS=_;cmd=touch_{sentinel};$cmd)",
        f"{{payload}}; {touch}",
        f"x > {sentinel}",
        f"-c={touch}",
    ]


TEMPLATES = {
    "argv": (
        False,
        ["{item_id}", "{job_id}", "{payload}", "{payload.x}", "{payload.nested.0}"],
    ),
    "shell, bare": (
        True,
        ["{item_id}", "{job_id}", "{payload}", "{payload.x}", "{payload.nested.0}"],
    ),
    "shell, double quotes": (
        True,
        [
            '"{item_id}"',
            '"{job_id}"',
            '"{payload}"',
            '"{payload.x}"',
            '"{payload.nested.0}"',
        ],
    ),
    "shell, single quotes": (
        True,
        [
            "'{item_id}'",
            "'{job_id}'",
            "'{payload}'",
            "'{payload.x}'",
            "'{payload.nested.0}'",
        ],
    ),
    "shell, inside words": (
        True,
        [
            "id={item_id}.",
            'j"{job_id}"',
            "p'{payload}'",
            "x{payload.x}",
            "n{payload.nested.0}",
        ],
    ),
}


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_injected_commands_never_run_and_values_arrive_verbatim(
    tmp_path: Path, template: str, figures: Any
) -> None:
    shell, holes = TEMPLATES[template]
    sentinel = tmp_path / "INJECTED"
    calls = tmp_path / "calls.jsonl"
    log = tmp_path / "log"
    texts = injections(sentinel)
    records = [
        {
            "item_id": f"{n}{text}",
            "job_id": f"job {text}",
            "payload": {"x": text, "nested": [f"{text}!"]},
        }
        for n, text in enumerate(texts)
    ]
    source = tmp_path / "items.jsonl"
    source.write_text("".join(json.dumps(record) + "\n" for record in records))
    assert runner.invoke(app, ["import", str(source), "--log", str(log)]).exit_code == 0

    if shell:
        # The worker's own path is quoted by the template's author, as a
        # person would; only the placeholders carry hostile values.
        script = shlex.join([sys.executable, "-S", str(RECORD), str(calls)])
        command = [script + " " + " ".join(holes)]
    else:
        command = [sys.executable, "-S", str(RECORD), str(calls), *holes]
    options = ["--shell"] if shell else []
    result = runner.invoke(
        app,
        ["replay", "--log", str(log), "-j", "4", "--json", *options, "--", *command],
        catch_exceptions=False,
    )

    assert result.exit_code == 0, result.stderr
    received = sorted(
        json.loads(line)["args"] for line in calls.read_text().splitlines()
    )
    stored = runner.invoke(app, ["list", "--json", "--log", str(log)]).stdout
    payloads = {row["item_id"]: row["payload"] for row in json.loads(stored)}
    wanted = []
    for record in records:
        values = [
            record["item_id"],
            record["job_id"],
            payloads[record["item_id"]],
            record["payload"]["x"],
            record["payload"]["nested"][0],
        ]
        # The shell removes the template's own quotes; the values keep theirs.
        words = [hole.replace('"', "").replace("'", "") for hole in holes]
        wanted.append(
            [
                word.replace(name, value)
                for word, name, value in zip(words, _HOLES, values, strict=True)
            ]
        )
    assert received == sorted(wanted)
    assert not sentinel.exists()
    figures.add(
        "shell injection through placeholders",
        trials=len(records),
        faults=len(records) * len(holes),
        events_checked=len(received),
        events_lost=len(records) - len(received),
    )


_HOLES = ["{item_id}", "{job_id}", "{payload}", "{payload.x}", "{payload.nested.0}"]


def test_a_payload_nested_too_deep_to_decode_is_a_missing_value(
    figures: Any,
) -> None:
    """Deeper than any decoder recurses: the lookup fails as a missing value
    (the attempt fails with it) instead of a RecursionError ending the replay,
    and the whole payload still reaches {payload} verbatim."""
    deep = '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    item = {"item_id": "deep", "job_id": "j", "attempt": 1, "payload": deep}

    with pytest.raises(MissingValueError, match=r"^the payload is nested too deeply"):
        CommandTemplate.parse(["echo", "{payload.x}"]).render(item)
    whole = CommandTemplate.parse(["echo", "{payload}"]).render(item)

    assert whole.argv == ["echo", deep]
    figures.add("shell injection through placeholders", trials=1, faults=1)
