"""What to do with an event after the upstream answered: one pure function.

``decide`` reads the answer and the event's situation and returns an ``Action``;
the dispatcher carries it out. Nothing here waits, counts or writes, so every rule
is a row in a table test (tests/forward/test_decide.py).

The rules, in words:
- Delivered: done; a probe that got through ends its tenant's pause.
- Our credentials refused after a refresh: park the event and pause the tenant.
- A transient failure: try again after the backoff (Retry-After is a floor), until
  the attempts run out (RELAY_RETRY_MAX_ATTEMPTS) or the event has been stuck for
  RELAY_RETRY_MAX_AGE_S: then it is dead-lettered (``retries_exhausted``,
  ``expired``). Stuck time is failing time during which the credential was otherwise
  healthy (the dispatcher adds it up: see ``Credential.healthy_for``), so an outage
  of the whole upstream or credential expires nothing, not even at its end; and a
  429 never expires anything (the upstream asks to slow down, not to give up).
- A permanent refusal: dead-lettered. Rights refusals are expected (a clip without
  streaming rights) and never count towards the dead-letter limit; every other dead
  letter does, and past the limit the event is parked and the tenant paused.
- A probe (one parked event sent while paused): a transient failure keeps the pause
  (the event goes to the back of the line, so the next probe is another one); a
  refusal about the event shows the upstream and our credentials work, so the event
  is dead-lettered and the pause ends. Paused for the dead-letter limit, that resume
  does not forgive the limit's count (only a delivery does): if the stream is still
  refused, the next refusal pauses again, one dead letter per probe interval.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.failures import EXPECTED_REFUSALS
from relay.retry import RetryPolicy
from relay.upstream import CredentialsRejected, Delivered, Outcome, Permanent, Retry

__all__ = [
    "CREDENTIALS_REJECTED",
    "DLQ_LIMIT",
    "Action",
    "DeadLetter",
    "Done",
    "Park",
    "RetryLater",
    "Situation",
    "decide",
]

CREDENTIALS_REJECTED = "credentials_rejected"  # pause reasons
DLQ_LIMIT = "dlq_limit"


@dataclass(frozen=True, slots=True)
class Situation:
    """What ``decide`` needs to know besides the answer."""

    attempts: int  # failed attempts so far, this answer included when it failed
    probe: bool  # sent while its tenant is paused, to test whether the pause is over
    paused: str | None  # the tenant's pause reason, if paused
    stuck_for_s: float  # failing while the credential was otherwise healthy
    dlq_room: bool  # the dead-letter limit allows one more counted dead letter


@dataclass(frozen=True, slots=True)
class Done:
    resume: bool = False  # end the tenant's pause


@dataclass(frozen=True, slots=True)
class RetryLater:
    delay_s: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str  # "permanent", "retries_exhausted", "expired"
    code: str
    status: int | None
    counted: bool  # towards the dead-letter limit
    resume: bool = False


@dataclass(frozen=True, slots=True)
class Park:
    pause: str | None  # pause the tenant for this reason; None: it already is


Action = Done | RetryLater | DeadLetter | Park


def decide(outcome: Outcome, situation: Situation, policy: RetryPolicy, max_age_s: float) -> Action:
    """``max_age_s``: RELAY_RETRY_MAX_AGE_S (0: transient failures never expire)."""
    if isinstance(outcome, Delivered):
        return Done(resume=situation.probe and situation.paused is not None)
    if isinstance(outcome, CredentialsRejected):
        return Park(CREDENTIALS_REJECTED)
    if isinstance(outcome, Retry):
        return _transient(outcome, situation, policy, max_age_s)
    return _refused(outcome, situation)


def _transient(outcome: Retry, s: Situation, policy: RetryPolicy, max_age_s: float) -> Action:
    if s.probe and s.paused is not None:
        return Park(None)  # still failing: the pause goes on
    if policy.exhausted(s.attempts):
        reason = "retries_exhausted"
    elif max_age_s > 0 and s.stuck_for_s >= max_age_s and outcome.status != 429:
        reason = "expired"
    else:
        return RetryLater(policy.delay(s.attempts, outcome.retry_after))
    if s.paused is None and s.dlq_room:
        return DeadLetter(reason, outcome.reason, outcome.status, counted=True)
    return Park(DLQ_LIMIT if s.paused is None else None)


def _refused(outcome: Permanent, s: Situation) -> Action:
    expected = outcome.code in EXPECTED_REFUSALS
    if s.probe and s.paused is not None:
        return DeadLetter("permanent", outcome.code, outcome.status, counted=False, resume=True)
    if expected:
        return DeadLetter("permanent", outcome.code, outcome.status, counted=False)
    if s.paused is None and s.dlq_room:
        return DeadLetter("permanent", outcome.code, outcome.status, counted=True)
    return Park(DLQ_LIMIT if s.paused is None else None)
