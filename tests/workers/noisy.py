"""Print megabytes on stdout and on stderr, then fail.

    python noisy.py MEGABYTES

Each stream gets MEGABYTES of numbered lines; the last stdout line is
"stdout ends here", the last stderr line "OSError: disk full after output".
Exits with 2.
"""

import sys


def main() -> None:
    megabytes = int(sys.argv[1])
    line = "%08d " + "x" * 90 + "\n"
    lines = megabytes * 1024 * 1024 // 100
    for stream in (sys.stdout, sys.stderr):
        stream.write("".join(line % number for number in range(lines)))
    sys.stdout.write("stdout ends here\n")
    sys.stderr.write("OSError: disk full after output\n")
    sys.exit(2)


if __name__ == "__main__":
    main()
