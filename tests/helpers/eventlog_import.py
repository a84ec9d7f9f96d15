"""Import JSON Lines items from stdin into an event log, in a process of its own.

The crash and import tests run this script as a real importer::

    python tests/helpers/eventlog_import.py LOG SOURCE < records.jsonl

On success it prints ``imported <n> duplicates <d>``.
"""

from __future__ import annotations

import sys

from eventlog import EventLog, import_records


def main() -> None:
    log = EventLog.open(sys.argv[1])
    result = import_records(log, sys.stdin.buffer, source=sys.argv[2])
    print(f"imported {result.imported} duplicates {result.duplicates}", flush=True)


if __name__ == "__main__":
    main()
