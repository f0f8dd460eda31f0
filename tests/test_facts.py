"""The facts a process keeps: ordered by the time they were learned, bounded in number
and in age (relay/facts.py)."""

from __future__ import annotations

import time

import orjson

from relay.clock import ManualClock
from relay.facts import Facts


def rights(playable: bool, learned_at: float) -> bytes:
    return orjson.dumps(
        {
            "playable": playable,
            "failureCode": None if playable else "NO_STREAMING_RIGHTS",
            "message": None,
            "learnedAt": learned_at,
        }
    )


def test_a_late_older_denial_does_not_override_a_newer_restoration() -> None:
    now = time.time()
    facts = Facts()  # the system clock: what production runs
    facts.apply(b"rights:t:5", rights(True, now - 10))  # rights came back
    facts.apply(b"rights:t:5", rights(False, now - 20))  # an earlier denial, arriving late
    known = facts.rights("t", 5)
    assert known is not None
    assert known.playable
    facts.apply(b"rights:t:5", rights(False, now - 5))  # a newer denial does override
    known = facts.rights("t", 5)
    assert known is not None
    assert not known.playable


def test_facts_older_than_the_max_age_are_ignored_and_expire() -> None:
    clock = ManualClock(wall=100_000.0)
    facts = Facts(max_age_s=3600.0, clock=clock)
    facts.apply(b"rights:t:1", rights(False, 100_000.0 - 7200))  # too old when read
    assert facts.rights("t", 1) is None
    facts.apply(b"rights:t:2", rights(False, 100_000.0 - 60))
    assert facts.rights("t", 2) is not None
    clock.advance(3600)
    assert facts.rights("t", 2) is None  # expired: asked again
    assert facts.size() == 0


def test_the_rights_cache_never_holds_more_than_its_bound() -> None:
    clock = ManualClock(wall=10_000.0)
    facts = Facts(max_rights=100, clock=clock)
    for clip in range(500):
        facts.apply(f"rights:t:{clip}".encode(), rights(True, 9000.0 + clip))
        assert facts.size() <= 100
    assert facts.size() == 100
    assert facts.rights("t", 0) is None  # the oldest learned went first
    assert facts.rights("t", 499) is not None


def test_a_tombstone_removes_a_fact() -> None:
    facts = Facts(clock=ManualClock(wall=1000.0))
    facts.apply(b"rights:t:5", rights(False, 900.0))
    facts.apply(b"rights:t:5", None)
    assert facts.rights("t", 5) is None
