"""Record what this attempt received, then succeed.

    python record.py CALLS [ARG ...]

Appends one JSON line to the file CALLS: the ARGs as received, the text read
from stdin, the ``DLQ_*`` environment variables and this process's pid.
"""

import json
import os
import sys


def main() -> None:
    calls, args = sys.argv[1], sys.argv[2:]
    received = {
        "args": args,
        "stdin": sys.stdin.read(),
        "env": {
            key: value for key, value in os.environ.items() if key.startswith("DLQ_")
        },
        "pid": os.getpid(),
    }
    line = (json.dumps(received) + "\n").encode()
    # One write to a file opened for appending: parallel attempts never interleave.
    fd = os.open(calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
