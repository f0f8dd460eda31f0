"""The learner's periodic rights checks: they are upstream calls like any other."""

from __future__ import annotations

from typing import Any

from relay.clock import ManualClock
from relay.envelope import Envelope
from relay.facts import Facts
from relay.forward.learning import CHECK_BATCH, Learner
from relay.ratelimit import Budget
from relay.upstream import Delivered, Outcome


class CountingBudget(Budget):
    def __init__(self, clock: ManualClock) -> None:
        super().__init__(1000.0, clock)
        self.taken = 0

    async def acquire(self) -> float:
        self.taken += 1
        return await super().acquire()


class FakeClient:
    def __init__(self) -> None:
        self.checks = 0

    async def music_check(self, clip_ids: list[int]) -> list[int] | Outcome:
        self.checks += 1
        return []


class NoPublisher:
    async def rights(self, *_args: Any) -> None:
        return None


async def test_rights_checks_take_from_the_credentials_budget() -> None:
    clock = ManualClock()
    budget = CountingBudget(clock)
    client = FakeClient()
    learner = Learner(
        Facts(),
        NoPublisher(),  # type: ignore[arg-type]
        {"acme": client},  # type: ignore[dict-item]
        check_every=60.0,
        clock=clock,
        budgets={"acme": budget},
    )
    for clip in range(1, 2 * CHECK_BATCH + 2):  # three batches of recently played clips
        body = {"clientId": "c", "clipId": clip, "method": "Stream"}
        envelope = Envelope("id", "play", "acme", "2026-11-26T00:00:00Z", False, body)
        learner.observe("acme", envelope, Delivered(204, b""))
    await learner.check_rights("acme")
    assert client.checks == 3
    assert budget.taken == client.checks


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[tuple[Any, ...]] = []

    async def rights(self, *args: Any) -> None:
        self.published.append(args)


async def test_a_denial_still_true_is_said_again_before_readers_drop_it() -> None:
    clock = ManualClock(wall=1_000_000.0)
    facts = Facts(max_age_s=3600.0, clock=clock)
    denied = b'{"playable": false, "failureCode": "NO_STREAMING_RIGHTS", "learnedAt": '
    facts.apply(b"rights:acme:7", denied + str(clock.wall()).encode() + b"}")
    publisher = RecordingPublisher()

    class Denying(FakeClient):
        async def music_check(self, clip_ids: list[int]) -> list[int] | Outcome:
            return [7]

    learner = Learner(
        facts,
        publisher,  # type: ignore[arg-type]
        {"acme": Denying()},  # type: ignore[dict-item]
        check_every=60.0,
        clock=clock,
    )
    await learner.check_rights("acme")
    assert publisher.published == []  # fresh and unchanged: nothing to say
    clock.advance(1801)  # past half the max age
    await learner.check_rights("acme")
    assert publisher.published == [("acme", 7, False, "NO_STREAMING_RIGHTS", None)]
