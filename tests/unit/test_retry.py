"""Retry timing: full jitter under a cap; a vendor's own wait wins, capped too."""

from __future__ import annotations

import random

import pytest

from app.core.retry import RetryPolicy

pytestmark = pytest.mark.unit


def test_backoff__full_jitter_stays_within_the_doubling_ceiling() -> None:
    policy, rng = RetryPolicy(base=2, cap=600), random.Random(7)
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (9, 512), (10, 600), (30, 600)]:
        samples = [policy.backoff(attempt, rng) for _ in range(500)]
        assert min(samples) >= 0 and max(samples) <= ceiling
        assert max(samples) > ceiling * 0.9  # jitter spreads over the whole range, not a fixed wait


def test_delay__retry_after_wins_and_is_capped() -> None:
    policy = RetryPolicy(hint_cap=3600)
    assert policy.delay(5, 12.5) == 12.5
    assert policy.delay(1, 10_000) == 3600
    assert policy.delay(1, -3) == 0.0
