"""Figures, how they are judged, and the table they end in."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

PASS = "PASS"
MISS = "MISS"
INFO = "info"

_HEADERS = ("benchmark", "measured", "reference (same run)", "ratio", "target", "")


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure beside its reference, and its verdict.

    ``verdict`` is :data:`PASS` or :data:`MISS` when the figure has a target,
    and :data:`INFO` when it is context with nothing to meet.
    """

    benchmark: str
    measured: str
    reference: str
    ratio: str
    target: str
    verdict: str

    def cells(self) -> tuple[str, ...]:
        return (
            self.benchmark,
            self.measured,
            self.reference,
            self.ratio,
            self.target,
            self.verdict,
        )


def judge(ok: bool) -> str:
    """The verdict of a figure that has a target."""
    return PASS if ok else MISS


def say(text: str) -> None:
    """Report progress and detail on stderr while a benchmark runs."""
    print(text, file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return statistics.median(values)


def per_second(count: float, seconds: float) -> float:
    """A rate, guarding against a zero duration on a coarse clock."""
    return count / max(seconds, 1e-9)


def count(value: float) -> str:
    """A whole number with thousands separators: ``1,000,000``."""
    return f"{value:,.0f}"


def rate(value: float, unit: str = "/s") -> str:
    """A rate with three significant figures: ``4,310/s``, ``312,000 items/s``."""
    rounded = float(f"{value:.3g}") if value >= 1000 else value
    return f"{rounded:,.0f} {unit}".replace(" /", "/")


def seconds(value: float) -> str:
    """A duration: milliseconds below one second, else seconds."""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def mebibytes(value: float) -> str:
    """A size in bytes, shown in MiB."""
    return f"{value / 2**20:,.0f} MiB"


def ratio(value: float) -> str:
    """A ratio between a figure and its reference: ``0.93x``."""
    return f"{value:.2f}x"


def percent(value: float) -> str:
    """A fraction shown as a percentage: ``93%``."""
    return f"{value * 100:.0f}%"


def table(figures: Sequence[Figure]) -> str:
    """The final table, one row per figure, columns padded to line up."""
    rows = [_HEADERS, *(figure.cells() for figure in figures)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
