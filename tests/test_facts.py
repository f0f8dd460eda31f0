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


def app_start(event_id: str, app_id: int | None, learned_at: float) -> bytes:
    answer = orjson.dumps({"appId": app_id}) if app_id is not None else b"{}"
    return orjson.dumps(
        {
            "eventId": event_id,
            "fingerprint": f"fp-{event_id}",
            "answer": answer.decode(),
            "appId": app_id,
            "learnedAt": learned_at,
        }
    )


def test_an_app_start_fact_is_read_with_its_app_id_and_an_older_one_never_overrides() -> None:
    facts = Facts(clock=ManualClock(wall=1000.0))
    facts.apply(b"appStart:t", app_start("e2", 77, 900.0))
    facts.apply(b"appStart:t", app_start("e1", 66, 800.0))  # an earlier learning, late
    facts.apply(b"appId:t", orjson.dumps({"appId": 66, "learnedAt": 850.0}))  # late too
    known = facts.app_start("t")
    assert known is not None
    assert (known.event_id, known.fingerprint, known.answer) == ("e2", "fp-e2", b'{"appId":77}')
    assert (known.app_id, known.learned_at) == (77, 900.0)
    assert facts.app_id("t") == 77
    facts.apply(b"appId:t", orjson.dumps({"appId": 88, "learnedAt": 950.0}))  # newer: kept
    assert facts.app_id("t") == 88
    facts.apply(b"appStart:t", app_start("e3", None, 990.0))  # the upstream named none
    known = facts.app_start("t")
    assert known is not None
    assert (known.event_id, known.app_id, known.answer) == ("e3", None, b"{}")
    assert facts.app_id("t") == 88  # an answer without an appId forgets none


def test_an_app_id_fact_without_a_time_is_the_oldest() -> None:
    facts = Facts(clock=ManualClock(wall=1000.0))
    facts.apply(b"appId:t", orjson.dumps({"appId": 77, "learnedAt": 900.0}))
    facts.apply(b"appId:t", orjson.dumps({"appId": 66}))  # published before facts had times
    assert facts.app_id("t") == 77
    facts.apply(b"appId:u", orjson.dumps({"appId": 66}))
    assert facts.app_id("u") == 66
