"""Print KIB kibibytes of hex that does not compress on stdout and on stderr,
then succeed; what an attempt's output adds to the log is then about the
tail that the replay keeps of each stream.

    python loud.py KIB
"""

import os
import sys


def main() -> int:
    size = int(sys.argv[1]) * 1024
    for stream in (sys.stdout, sys.stderr):
        stream.write(os.urandom(size // 2).hex() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
