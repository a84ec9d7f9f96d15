"""Ignore SIGTERM and run forever: only SIGKILL ends it.

    python stubborn.py STATE

Writes its pid to STATE once SIGTERM is handled; each SIGTERM it receives
appends the line "SIGTERM" to STATE and is otherwise ignored.
"""

import os
import signal
import sys
import time


def main() -> None:
    state = sys.argv[1]

    def note_and_ignore(signum: int, frame: object) -> None:
        with open(state, "a") as file:
            file.write("SIGTERM\n")

    signal.signal(signal.SIGTERM, note_and_ignore)
    with open(state, "a") as file:
        file.write(f"{os.getpid()}\n")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
