"""What runs for an item: the command template and its placeholders.

A template is an argv whose arguments may hold placeholders: ``{item_id}``,
``{job_id}``, ``{attempt}``, ``{payload}`` (the payload's JSON text) and
``{payload.KEY.SUBKEY}`` (one value inside it; a string as it is, anything
else as JSON). ``{{`` and ``}}`` stand for literal braces; braces around
anything that is not a name (``{ a; b; }``, ``${HOME}``) are left as they
are. The argv is run
directly, never through a shell, so no value can inject a command; with
``shell=True`` the template is one ``sh -c`` string and every substituted
value is shell-quoted.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from reprocessor._errors import ReplayUsageError

# A placeholder is a name in braces; other braces (a shell group, an awk
# program, ``${VAR}``) are left as they are. ``{{`` and ``}}`` are literal.
_FIELD = re.compile(r"\{\{|\}\}|(?<!\$)\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_NAMES = ("item_id", "job_id", "attempt", "payload")


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

    def render(self, item: Mapping[str, Any]) -> list[str]:
        """The argv to run for ``item`` (its id, job, attempt and payload text).

        Raises:
            MissingValueError: the payload lacks a key the template names.
        """
        values = _Values(item, quote=self.shell)
        filled = [_FIELD.sub(values.replace, arg) for arg in self.argv]
        if self.shell:
            return ["/bin/sh", "-c", filled[0]]
        return filled


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
    def __init__(self, item: Mapping[str, Any], *, quote: bool) -> None:
        self.item = item
        self.quote = quote
        self._payload: Any = msgspec.UNSET

    def replace(self, match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "{{":
            return "{"
        if text == "}}":
            return "}"
        value = self.lookup(match.group(1))
        return shlex.quote(value) if self.quote else value

    def lookup(self, name: str) -> str:
        if name in ("item_id", "job_id", "attempt"):
            return str(self.item[name])
        payload_text = self.item.get("payload") or "null"
        if name == "payload":
            return str(payload_text)
        if self._payload is msgspec.UNSET:
            self._payload = msgspec.json.decode(payload_text)
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
