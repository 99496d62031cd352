"""Retry timing: exponential backoff with full jitter, a vendor's Retry-After first."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 2.0      # seconds before the first retry, before jitter
    cap: float = 600.0     # backoff never waits longer than this between tries
    hint_cap: float = 3600.0  # a vendor's own wait is honoured up to this (e.g. credits reset)

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**(attempt-1))]."""
        ceiling = min(self.cap, self.base * 2 ** max(attempt - 1, 0))
        return (rng or random).uniform(0, ceiling)

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float:
        """A vendor's hint wins (capped); otherwise jittered backoff."""
        if retry_after is not None:
            return min(max(float(retry_after), 0.0), self.hint_cap)
        return self.backoff(attempt, rng)
