"""Hang forever, with a child process that hangs too.

    python hang.py PIDS

Starts a child that sleeps, appends "<own pid> <child pid>" to the file
PIDS, then sleeps; only a signal ends either of them.
"""

import os
import subprocess
import sys
import time


def main() -> None:
    child = subprocess.Popen(
        [sys.executable, "-S", "-c", "import time; time.sleep(3600)"]
    )
    with open(sys.argv[1], "a") as pids:
        pids.write(f"{os.getpid()} {child.pid}\n")
    time.sleep(3600)


if __name__ == "__main__":
    main()
