"""Fail on an item's first try, succeed on every later one.

    python fail_once.py STATE_DIR

Whether the item (``DLQ_ITEM_ID``) was tried before is kept in a file of
its own under STATE_DIR.
"""

import hashlib
import os
import sys
from pathlib import Path


def main() -> None:
    item_id = os.environ["DLQ_ITEM_ID"]
    state = Path(sys.argv[1]) / hashlib.sha256(item_id.encode()).hexdigest()
    if not state.exists():
        state.touch()
        raise ConnectionError(f"first try of {item_id} fails")


if __name__ == "__main__":
    main()
