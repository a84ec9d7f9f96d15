"""A replayed command that records, outside the log, each time it really ran.

The SIGKILL tests replay their items with it::

    python tests/workers/execution_recorder.py RECORD ITEM_ID

It appends one line, ``<DLQ_RUN_ID> <ITEM_ID> <DLQ_ATTEMPT>``, to the file
RECORD (opened with ``O_APPEND``, so that concurrent attempts never mix their
lines), fsyncs it, and only then exits 0: a line in RECORD is an execution
that finished, whatever happened to the replay that started it. Only the
standard library is used, so that it starts in a few milliseconds.
"""

import os
import sys


def main() -> int:
    record, item_id = sys.argv[1], sys.argv[2]
    line = f"{os.environ['DLQ_RUN_ID']} {item_id} {os.environ['DLQ_ATTEMPT']}\n"
    fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
