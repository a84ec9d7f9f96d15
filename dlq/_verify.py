"""`dlq verify`: check that no event was edited, removed, reordered or added."""

from __future__ import annotations

from pathlib import Path

import eventlog
from dlq import _render
from dlq._app import JsonOption, LogOption, command, echo, fail, note

_VERIFY_EPILOG = """
Examples:

  dlq verify

  dlq verify --json --log /var/lib/dlq | jq '.problems[].problem'

Exit status: 0 when the log is intact, 1 when a problem was found (each is
printed on one line: file, line or row, writer, seq, event id, what is wrong).
"""


@command("verify", epilog=_VERIFY_EPILOG)
def verify(json: JsonOption = False, log: LogOption = Path(".dlq")) -> None:
    """Recompute every hash and check every file against the log's manifest.

    Reports each event edited, removed, reordered or inserted since it was
    written, duplicate event ids, unreadable data and removed or added files.
    A torn last line of a live segment, as a crash leaves it, is only a note.
    """
    report = eventlog.verify_log(eventlog.EventLog.open(log))
    if json:
        echo(_render.render_json(report.to_dict()))
    else:
        echo("".join(f"{problem}\n" for problem in report.problems))
        for finding in report.notes:
            note(f"note: {finding}")
    checked = (
        f"{report.events} events of {report.writers} writers in {report.files} files"
    )
    if not report.clean:
        count = len(report.problems)
        raise fail(
            f"{count} problem{'s' if count != 1 else ''} in {checked} of {log}; "
            "the log was changed or damaged after it was written"
        )
    note(f"verified {checked}: intact")
