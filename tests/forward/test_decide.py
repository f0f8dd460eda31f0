"""decide(): every rule of what follows an upstream answer, as a table."""

from __future__ import annotations

import random

import pytest

from relay.forward.decide import (
    CREDENTIALS_REJECTED,
    DLQ_LIMIT,
    Action,
    DeadLetter,
    Done,
    Park,
    RetryLater,
    Situation,
    decide,
)
from relay.retry import RetryPolicy
from relay.upstream import CredentialsRejected, Delivered, Outcome, Permanent, Retry

POLICY = RetryPolicy(base_s=1.0, cap_s=30.0, max_attempts=5, rng=random.Random(7))
MAX_AGE = 3600.0

OK = Delivered(204, b"")
BUSY = Retry("http_503", 503, overload=True)
LIMITED = Retry("http_429", 429, retry_after=120.0, overload=True)
INVALID = Permanent("VALIDATION_ERROR", "bad", 400)
NO_RIGHTS = Permanent("NO_STREAMING_RIGHTS", "no rights", 403)
REVOKED = CredentialsRejected("AUTHENTICATION_FAILED", "revoked", 401)


def situation(**changes: object) -> Situation:
    base: dict[str, object] = {
        "attempts": 1,
        "probe": False,
        "paused": None,
        "stuck_for_s": 1.0,
        "dlq_room": True,
    }
    return Situation(**{**base, **changes})  # type: ignore[arg-type]


ROWS: list[tuple[str, Outcome, Situation, Action | None]] = [
    ("delivered", OK, situation(attempts=0), Done()),
    ("a probe delivered ends the pause", OK, situation(probe=True, paused=DLQ_LIMIT), Done(True)),
    ("credentials refused pause", REVOKED, situation(), Park(CREDENTIALS_REJECTED)),
    (
        "a refusal is dead-lettered, counted",
        INVALID,
        situation(),
        DeadLetter("permanent", "VALIDATION_ERROR", 400, counted=True),
    ),
    (
        "rights refusals are expected: not counted",
        NO_RIGHTS,
        situation(dlq_room=False),
        DeadLetter("permanent", "NO_STREAMING_RIGHTS", 403, counted=False),
    ),
    ("past the DLQ limit: park and pause", INVALID, situation(dlq_room=False), Park(DLQ_LIMIT)),
    (
        "refused while already paused: park",
        INVALID,
        situation(paused=CREDENTIALS_REJECTED),
        Park(None),
    ),
    (
        "a probe refused while paused for our credentials: dead letter and resume",
        INVALID,
        situation(probe=True, paused=CREDENTIALS_REJECTED),
        DeadLetter("permanent", "VALIDATION_ERROR", 400, counted=False, resume=True),
    ),
    (
        "a probe refused while paused for the DLQ limit: dead letter and resume",
        INVALID,
        situation(probe=True, paused=DLQ_LIMIT),
        DeadLetter("permanent", "VALIDATION_ERROR", 400, counted=False, resume=True),
    ),
    (
        "a probe answered after the pause ended is an ordinary event",
        BUSY,
        situation(probe=True, paused=None, attempts=2),
        None,
    ),
    (
        "a failed probe keeps the pause",
        BUSY,
        situation(probe=True, paused=CREDENTIALS_REJECTED),
        Park(None),
    ),
    (
        "attempts used up: dead letter",
        BUSY,
        situation(attempts=5),
        DeadLetter("retries_exhausted", "http_503", 503, counted=True),
    ),
    (
        "attempts used up past the limit: park and pause",
        BUSY,
        situation(attempts=5, dlq_room=False),
        Park(DLQ_LIMIT),
    ),
    (
        "stuck for the max age: expired",
        BUSY,
        situation(attempts=3, stuck_for_s=MAX_AGE),
        DeadLetter("expired", "http_503", 503, counted=True),
    ),
    (
        "a 429 never expires: the upstream asks to slow down",
        LIMITED,
        situation(attempts=3, stuck_for_s=MAX_AGE),
        RetryLater(120.0),
    ),
    (
        "stuck for less than the max age: retried",
        BUSY,
        situation(attempts=3, stuck_for_s=MAX_AGE - 1),
        None,
    ),
]


@pytest.mark.parametrize(
    ("outcome", "given", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_decide(outcome: Outcome, given: Situation, expected: Action | None) -> None:
    action = decide(outcome, given, POLICY, MAX_AGE)
    if expected is None:  # a retry: its delay is random, within the backoff's bounds
        assert isinstance(action, RetryLater)
        step = min(POLICY.cap_s, POLICY.base_s * 2 ** (given.attempts - 1))
        assert step / 2 <= action.delay_s <= step
    else:
        assert action == expected


def test_retry_after_is_a_floor_of_the_delay() -> None:
    action = decide(LIMITED, situation(), POLICY, MAX_AGE)
    assert action == RetryLater(120.0)


def test_without_a_max_age_nothing_expires() -> None:
    action = decide(BUSY, situation(attempts=3, stuck_for_s=1e9), RetryPolicy(), 0.0)
    assert isinstance(action, RetryLater)
