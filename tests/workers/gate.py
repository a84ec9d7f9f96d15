"""Record that this attempt started, then wait until a gate file exists.

    python gate.py CALLS GATE

Appends "<item id> <attempt> <pid>" to the file CALLS as soon as it starts
(so a test can count how often each item really ran), then polls for the
file GATE and succeeds once it appears. A test keeps the gate closed to hold
attempts running for as long as it needs.
"""

import os
import sys
import time


def main() -> None:
    calls, gate = sys.argv[1], sys.argv[2]
    line = f"{os.environ['DLQ_ITEM_ID']} {os.environ['DLQ_ATTEMPT']} {os.getpid()}\n"
    fd = os.open(calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    while not os.path.exists(gate):
        time.sleep(0.02)


if __name__ == "__main__":
    main()
