from __future__ import annotations

from relay.dlq import DeadLetterGuard


def test_consecutive_limit_is_exact() -> None:
    guard = DeadLetterGuard(max_consecutive=3, max_ratio=1.0, window=100)
    assert [guard.allow() for _ in range(4)] == [True, True, True, False]
    guard.delivered()
    assert guard.allow()


def test_ratio_limit_applies_once_the_window_is_full() -> None:
    guard = DeadLetterGuard(max_consecutive=1000, max_ratio=0.5, window=10)
    for _ in range(5):
        assert guard.allow()
        guard.delivered()
    # window full (10 outcomes, 5 dead): one more dead letter would make 6/10 > 0.5
    assert not guard.allow()
    guard.delivered()  # 5 dead of the last 10 becomes 4 of 10 once the oldest dead one leaves
    assert guard.allow()


def test_ratio_is_not_judged_on_a_partial_window() -> None:
    guard = DeadLetterGuard(max_consecutive=1000, max_ratio=0.1, window=50)
    assert all(guard.allow() for _ in range(50))  # judged only once 50 outcomes were seen
    assert not guard.allow()


def test_reset_forgets_the_past() -> None:
    guard = DeadLetterGuard(max_consecutive=2, max_ratio=1.0, window=10)
    guard.allow()
    guard.allow()
    assert not guard.allow()
    guard.reset()
    assert guard.allow()
