from __future__ import annotations

import random

from relay.retry import RetryPolicy


def test_delays_grow_exponentially_with_jitter_and_are_capped() -> None:
    policy = RetryPolicy(base_s=0.2, cap_s=5.0, rng=random.Random(7))
    for attempt in range(1, 40):
        step = min(5.0, 0.2 * 2 ** (attempt - 1))
        delays = {policy.delay(attempt) for _ in range(50)}
        assert all(step / 2 <= delay <= step for delay in delays)
        assert len(delays) > 1  # jittered


def test_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(base_s=0.2, cap_s=5.0)
    assert policy.delay(1, retry_after=3.0) == 3.0
    assert policy.delay(1, retry_after=0.0) <= 0.2


def test_attempts_are_unbounded_by_default_and_exact_when_set() -> None:
    assert not RetryPolicy().exhausted(10_000)
    policy = RetryPolicy(max_attempts=3)
    assert not policy.exhausted(2)
    assert policy.exhausted(3)
