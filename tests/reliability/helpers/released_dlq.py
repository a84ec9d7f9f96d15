"""Run one `dlq` command at the moment a barrier file appears.

    python tests/reliability/helpers/released_dlq.py READY BARRIER ARG...

It imports dlq first (the slow part of a command's start), touches READY,
waits for BARRIER to exist, then runs `dlq ARG...` as the console script
would, so that processes released together reach the command at once.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from dlq.__main__ import main

if __name__ == "__main__":
    ready, barrier, *args = sys.argv[1:]
    Path(ready).touch()
    while not Path(barrier).exists():
        time.sleep(0.0005)
    sys.argv = ["dlq", *args]
    main()
