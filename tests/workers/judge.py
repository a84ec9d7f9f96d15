"""Succeed or fail as the item's payload, read from stdin, says.

    python judge.py

A payload with ``"fail": true`` raises ``RuntimeError: told to fail``; any
other payload succeeds.
"""

import json
import sys


def main() -> None:
    payload = json.loads(sys.stdin.read())
    if isinstance(payload, dict) and payload.get("fail"):
        raise RuntimeError("told to fail")


if __name__ == "__main__":
    main()
