"""Seal abandoned segments of an event log over and over, until stdin closes.

The concurrency tests run this script next to live writers::

    python tests/helpers/eventlog_sealer.py LOG

When its stdin reaches end of file it prints ``sealed <n>`` and exits.
"""

from __future__ import annotations

import select
import sys

from eventlog import EventLog


def main() -> None:
    log = EventLog.open(sys.argv[1])
    sealed = 0
    while not select.select([sys.stdin], [], [], 0)[0]:
        sealed += log.seal_abandoned()
    print(f"sealed {sealed}", flush=True)


if __name__ == "__main__":
    main()
