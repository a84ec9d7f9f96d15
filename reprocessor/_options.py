"""What a replay is asked to do: which items, how, and how hard to try."""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from reprocessor._errors import ReplayUsageError

Backoff = Literal["none", "fixed", "exponential"]


@dataclass(frozen=True, slots=True)
class Selection:
    """Which items a replay takes: pending ones, narrowed by these."""

    item_ids: tuple[str, ...] = ()
    job_id: str | None = None
    where: str | None = None
    signature: str | None = None  # the error signature of the last failure
    limit: int | None = None
    force: bool = False  # also take quarantined items


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How a replay runs its items."""

    command: tuple[str, ...] = ()
    shell: bool = False
    parallel: int = field(default_factory=lambda: os.cpu_count() or 1)
    timeout: float | None = None
    grace: float = 5.0
    attempts: int = 1
    backoff: Backoff = "exponential"
    delay: float = 1.0
    max_attempts: int = 10
    rate: float | None = None
    canary: int | None = None
    min_success: float = 1.0

    def check(self) -> None:
        """Raises ReplayUsageError naming the first option that cannot work."""
        if self.parallel < 1:
            raise ReplayUsageError("--parallel must be at least 1")
        if self.timeout is not None and self.timeout <= 0:
            raise ReplayUsageError("--timeout must be more than 0 seconds")
        if self.attempts < 1:
            raise ReplayUsageError("--attempts must be at least 1")
        if self.max_attempts < 1:
            raise ReplayUsageError("--max-attempts must be at least 1")
        if self.delay < 0:
            raise ReplayUsageError("--delay must not be negative")
        if self.backoff not in ("none", "fixed", "exponential"):
            raise ReplayUsageError("--backoff must be none, fixed or exponential")
        if self.rate is not None and self.rate <= 0:
            raise ReplayUsageError("--rate must be more than 0 starts per second")
        if self.canary is not None and self.canary < 1:
            raise ReplayUsageError("--canary must be at least 1 item")
        if not 0.0 <= self.min_success <= 1.0:
            raise ReplayUsageError("--min-success must be a fraction from 0 to 1")

    def backoff_delay(self, failed_tries: int, rng: random.Random) -> float:
        """Seconds to wait before the next try, after ``failed_tries`` failures."""
        if self.backoff == "none" or self.delay == 0:
            return 0.0
        if self.backoff == "fixed":
            return self.delay
        # Exponential with full jitter: spreads retries of many items apart.
        ceiling = self.delay * 2 ** (failed_tries - 1)
        return rng.uniform(ceiling / 2, ceiling)

    def as_record(self) -> dict[str, Any]:
        """The options as ``run_started`` records them."""
        return asdict(self)
