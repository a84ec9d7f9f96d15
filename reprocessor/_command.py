"""What runs for an item: the command template and its placeholders.

A template is an argv whose arguments may hold placeholders: ``{item_id}``,
``{job_id}``, ``{attempt}``, ``{payload}`` (the payload's JSON text) and
``{payload.KEY.SUBKEY}`` (one value inside it; a string as it is, anything
else as JSON). ``{{`` and ``}}`` stand for literal braces; braces around
anything that is not a name (``{ a; b; }``, ``${HOME}``) are left as they
are. The argv is run directly, never through a shell, so no value can
inject a command. With ``shell=True`` the template is one ``sh -c`` script
in which each placeholder becomes ``"${DLQ_VALUE_n}"``, a quoted reference
to an environment variable that holds the value: the shell expands it but
never parses it as code.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from reprocessor._errors import ReplayUsageError

# A placeholder is a name in braces; other braces (a shell group, an awk
# program, ``${VAR}``) are left as they are. ``{{`` and ``}}`` are literal.
_FIELD = re.compile(r"\{\{|\}\}|(?<!\$)\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_NAMES = ("item_id", "job_id", "attempt", "payload")
_BRACES = {"{{": "{", "}}": "}"}
# How a shell script refers to a value's variable, by the quotes around it.
_REFERENCE = {"": '"${NAME}"', '"': "${NAME}", "'": "'\"${NAME}\"'"}


class MissingValueError(Exception):
    """An item lacks a value its command's placeholders ask for."""


@dataclass(frozen=True, slots=True)
class CommandTemplate:
    """A command with placeholders, checked once and filled in per item."""

    argv: tuple[str, ...]
    shell: bool = False

    @classmethod
    def parse(cls, argv: Sequence[str], *, shell: bool = False) -> CommandTemplate:
        """Check a template's placeholders.

        Raises:
            ReplayUsageError: the template is empty or names an unknown placeholder.
        """
        if not argv:
            raise ReplayUsageError("the command is empty")
        for arg in argv:
            for match in _FIELD.finditer(arg):
                _check(match, arg)
        if shell:
            return cls((" ".join(argv),), shell=True)
        return cls(tuple(argv))

    def render(self, item: Mapping[str, Any]) -> Command:
        """What to run for ``item`` (its id, job, attempt and payload text).

        Raises:
            MissingValueError: the payload lacks a key the template names.
        """
        values = _Values(item)
        if not self.shell:
            return Command([_FIELD.sub(values.replace, arg) for arg in self.argv])
        # The shell never parses a value: each placeholder becomes a
        # reference to an environment variable holding it, quoted to suit
        # where it stands, which is safe even inside quotes the template put
        # around it (`echo "{payload.name}"`), where a pasted, shell-quoted
        # value would not be. The shown form pastes the values, for people.
        script = _shell_script(self.argv[0], values)
        shown = _FIELD.sub(values.quoted, self.argv[0])
        return Command(["/bin/sh", "-c", script], values.env, shown)


@dataclass(frozen=True, slots=True)
class Command:
    """One item's command: its argv, extra environment, and how to show it."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    shown: str | None = None

    def __str__(self) -> str:
        return self.shown if self.shown is not None else shlex.join(self.argv)


def _shell_script(template: str, values: _Values) -> str:
    """``template`` with each placeholder made a reference to a variable.

    The reference depends on the quoting around it: ``"${V}"`` outside
    quotes, ``${V}`` inside double quotes, and ``'"${V}"'`` inside single
    quotes (closing them, expanding, and opening them again), so that the
    value arrives whole and unchanged wherever the placeholder stands.
    """
    out: list[str] = []
    quote = ""  # the quote character we are inside, if any
    position = 0
    for match in _FIELD.finditer(template):
        quote = _quote_after(template[position : match.start()], quote)
        out.append(template[position : match.start()])
        position = match.end()
        if match.group(0) in _BRACES:
            out.append(_BRACES[match.group(0)])
            continue
        out.append(_REFERENCE[quote].replace("NAME", values.variable(match)))
    out.append(template[position:])
    return "".join(out)


def _quote_after(text: str, quote: str) -> str:
    """The shell quoting in force after ``text``, starting inside ``quote``."""
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote == "" and char in "'\"":
            quote = char
        elif char == quote:
            quote = ""
    return quote


def _check(match: re.Match[str], arg: str) -> None:
    text = match.group(0)
    if text in ("{{", "}}"):
        return
    name = match.group(1)
    head = name.split(".", 1)[0]
    if head not in _NAMES or (head != "payload" and "." in name) or name.endswith("."):
        raise ReplayUsageError(
            f"unknown placeholder {{{name}}} in {arg!r}; use {{item_id}}, {{job_id}}, "
            "{attempt}, {payload} or {payload.KEY}"
        )


class _Values:
    def __init__(self, item: Mapping[str, Any]) -> None:
        self.item = item
        self.env: dict[str, str] = {}
        self._payload: Any = msgspec.UNSET

    def replace(self, match: re.Match[str]) -> str:
        """The value itself, for an argv run without a shell."""
        return _BRACES.get(match.group(0)) or self.lookup(match.group(1))

    def quoted(self, match: re.Match[str]) -> str:
        """The value shell-quoted, for showing a shell command to people."""
        return _BRACES.get(match.group(0)) or shlex.quote(self.lookup(match.group(1)))

    def variable(self, match: re.Match[str]) -> str:
        """The name of a new environment variable holding the value."""
        name = f"DLQ_VALUE_{len(self.env)}"
        self.env[name] = self.lookup(match.group(1))
        return name

    def lookup(self, name: str) -> str:
        if name in ("item_id", "job_id", "attempt"):
            return str(self.item[name])
        payload_text = self.item.get("payload") or "null"
        if name == "payload":
            return str(payload_text)
        if self._payload is msgspec.UNSET:
            try:
                self._payload = msgspec.json.decode(payload_text)
            except RecursionError:
                # The import takes JSON up to a depth this decode, run deeper
                # in the stack, may not reach.
                raise MissingValueError(
                    f"the payload is nested too deeply to find {name!r} in it"
                ) from None
        value = self._payload
        for key in name.split(".")[1:]:
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                raise MissingValueError(f"the payload has no value at {name!r}")
        if isinstance(value, str):
            return value
        return msgspec.json.encode(value).decode()
