"""Jittered exponential backoff with a cap (reconnects, retries, worker restarts)."""

from __future__ import annotations

import random

__all__ = ["Backoff", "jittered_delay"]


def jittered_delay(initial_s: float, cap_s: float, failures: int, rng: random.Random) -> float:
    """`initial · 2^failures`, capped, scaled by a random factor in [0.5, 1]."""
    delay = min(cap_s, initial_s * 2.0 ** min(failures, 32))
    return delay * (0.5 + rng.random() / 2)


class Backoff:
    """Delays `initial · 2^n`, capped, each scaled by a random factor in [0.5, 1]."""

    def __init__(self, initial_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        self._initial = initial_s
        self._cap = cap_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.failures = 0
        """Consecutive failures since the last reset."""

    def next(self) -> float:
        """The delay before the next attempt; counts a failure."""
        delay = jittered_delay(self._initial, self._cap, self.failures, self._rng)
        self.failures += 1
        return delay

    def reset(self) -> None:
        """Back to the initial delay (after a success)."""
        self.failures = 0
