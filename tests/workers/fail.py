"""Fail the way a real program does: some output, then a traceback.

    python fail.py

Prints a line on stdout, then raises, so Python prints a traceback on stderr
ending with ``ValueError: cannot process <item id>`` and exits with 1.
"""

import os
import sys


def process(item_id: str) -> None:
    raise ValueError(f"cannot process {item_id}")


def main() -> None:
    sys.stdin.read()
    print(f"processing {os.environ['DLQ_ITEM_ID']}", flush=True)
    process(os.environ["DLQ_ITEM_ID"])


if __name__ == "__main__":
    main()
