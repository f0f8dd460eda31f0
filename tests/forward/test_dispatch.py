"""The dispatcher's promises, on a scripted upstream and the in-memory DLQ producer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest

from relay.envelope import Envelope
from relay.forward.dispatch import Incoming
from relay.upstream import CredentialsRejected, Delivered, Outcome, Permanent, Retry
from tests.forward.harness import DLQ, FakeUpstream, Harness, sample


async def test_events_of_one_key_are_delivered_in_order_and_keys_in_parallel(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()
    sent: dict[str, list[str]] = {}
    for number in range(400):
        key = f"user-{number % 13}"
        sent.setdefault(key, []).append(harness.submit(key, number + 1))
    await harness.settled()
    got: dict[str, list[str]] = {}
    for event_id, body in harness.upstream.delivered:
        got.setdefault(str(body["clientId"]), []).append(event_id)
    assert got == sent
    assert harness.dispatcher.held == 0


async def test_a_retrying_event_holds_back_only_its_own_key(
    make_harness: Callable[..., Harness],
) -> None:
    failures = {"left": 5}
    stuck: list[str] = []

    def script(event_id: str, _body: dict[str, object]) -> Outcome:
        if event_id in stuck and failures["left"] > 0:
            failures["left"] -= 1
            return Retry("http_503", 503, overload=True)
        return Delivered(204, b"")

    harness = make_harness(script)
    stuck.append(harness.submit("slow-user", 1))
    behind = harness.submit("slow-user", 2)
    others = [harness.submit(f"user-{n}", n + 10) for n in range(30)]
    assert await harness.dispatcher.wait_for(
        lambda: {e for e, _ in harness.upstream.delivered} >= set(others), 5
    )
    # the others got through while the stuck head was retrying; the commit did not pass it
    assert stuck[0] not in {e for e, _ in harness.upstream.delivered}
    assert harness.partition.offsets.next_commit is None
    await harness.settled()
    order = [e for e, _ in harness.upstream.delivered]
    assert order.index(stuck[0]) < order.index(behind)
    assert sum(1 for _, key in harness.upstream.calls if key == stuck[0]) == 6


async def test_permanent_answers_are_dead_lettered_with_the_reason(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(
        lambda _e, body: (
            Permanent("VALIDATION_ERROR", "bad", 400)
            if body["clipId"] == 2
            else Delivered(204, b"")
        )
    )
    harness.submit("a", 1)
    refused = harness.submit("a", 2)
    harness.submit("a", 3)
    await harness.settled()
    letters = harness.dead_letters()
    assert len(letters) == 1
    assert letters[0]["relay-event-id"] == refused.encode()
    assert letters[0]["relay-dlq-reason"] == b"permanent"
    assert letters[0]["relay-dlq-failure-code"] == b"VALIDATION_ERROR"
    assert letters[0]["relay-dlq-attempts"] == b"1"
    assert letters[0]["relay-dlq-last-status"] == b"400"
    assert letters[0]["relay-dlq-source-topic"] == b"t.play"
    assert letters[0]["relay-dlq-source-offset"] == b"1"
    assert (
        Envelope.decode(harness.dlq.records[DLQ][0].value, harness.dlq.records[DLQ][0].headers).id
        == refused
    )  # value unchanged
    assert len(harness.upstream.delivered) == 2


async def test_retries_are_dead_lettered_after_the_last_attempt(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(lambda _e, _b: Retry("http_500", 500, overload=True), max_attempts=3)
    harness.submit("a", 1)
    await harness.settled()
    letters = harness.dead_letters()
    assert [letter["relay-dlq-reason"] for letter in letters] == [b"retries_exhausted"]
    assert letters[0]["relay-dlq-attempts"] == b"3"
    assert len(harness.upstream.calls) == 3


async def test_the_dlq_limit_pauses_instead_of_burying_the_stream(
    make_harness: Callable[..., Harness],
) -> None:
    healed = {"yes": False}

    def script(_e: str, _b: dict[str, object]) -> Outcome:
        return Delivered(204, b"") if healed["yes"] else Permanent("VALIDATION_ERROR", "x", 400)

    harness = make_harness(script, max_consecutive=3)
    for number in range(10):
        harness.submit(f"user-{number}", number + 1)
    assert await harness.dispatcher.wait_for(lambda: harness.tenant.paused is not None, 5)
    assert len(harness.dead_letters()) == 3
    # Four probe intervals: each refused probe is dead-lettered and resumes, but the
    # limit's count stands, so the next refusal pauses again: one letter per probe.
    await harness.clock.sleep(0.2)
    assert await harness.dispatcher.wait_for(lambda: harness.tenant.paused == "dlq_limit", 1)
    buried = len(harness.dead_letters())
    assert 3 < buried <= 3 + 5
    healed["yes"] = True
    await harness.settled()
    assert harness.tenant.paused is None
    assert len(harness.dead_letters()) == buried
    assert len(harness.upstream.delivered) == 10 - buried


async def test_rejected_credentials_pause_without_dead_letters_until_a_probe_passes(
    make_harness: Callable[..., Harness],
) -> None:
    revoked = {"yes": True}

    def script(_e: str, _b: dict[str, object]) -> Outcome:
        if revoked["yes"]:
            return CredentialsRejected("AUTHENTICATION_FAILED", "no", 401)
        return Delivered(204, b"")

    harness = make_harness(script)
    ids = [harness.submit(f"user-{n % 3}", n + 1) for n in range(20)]
    assert await harness.dispatcher.wait_for(lambda: harness.tenant.paused is not None, 5)
    await harness.clock.sleep(0.2)
    assert harness.tenant.paused == "credentials_rejected"
    assert harness.dead_letters() == []
    assert harness.partition.offsets.next_commit is None
    revoked["yes"] = False
    await harness.settled()
    assert sorted(e for e, _ in harness.upstream.delivered) == sorted(ids)
    assert harness.dead_letters() == []


async def test_undecodable_records_are_dead_lettered(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness()
    harness.dispatcher.submit(harness.partition, Incoming(0, b"k", b"not json", ()))
    harness.next_offset = 1
    harness.submit("a", 1)
    await harness.settled()
    assert [letter["relay-dlq-reason"] for letter in harness.dead_letters()] == [b"undecodable"]


async def test_the_window_counts_what_is_held(make_harness: Callable[..., Harness]) -> None:
    gate = asyncio.Event()

    class Gated(FakeUpstream):
        async def deliver(self, path: str, body: bytes, idempotency_key: str) -> Outcome:
            await gate.wait()
            return await super().deliver(path, body, idempotency_key)

    harness = make_harness(window=10)
    harness.tenant.client = harness.upstream = Gated(harness.clock)
    for number in range(10):
        harness.submit(f"u{number}", number + 1)
    assert harness.dispatcher.room == 0
    gate.set()
    await harness.settled()
    assert harness.dispatcher.room == 10


async def test_a_revoked_partition_is_forgotten(make_harness: Callable[..., Harness]) -> None:
    gate = asyncio.Event()

    class Gated(FakeUpstream):
        async def deliver(self, path: str, body: bytes, idempotency_key: str) -> Outcome:
            await gate.wait()
            return await super().deliver(path, body, idempotency_key)

    harness = make_harness()
    harness.tenant.client = harness.upstream = Gated(harness.clock)
    for number in range(5):
        harness.submit("same-user", number + 1)
    harness.dispatcher.revoke(harness.partition)
    assert harness.dispatcher.held == 0
    gate.set()
    await harness.clock.sleep(0.1)
    assert len(harness.upstream.delivered) <= 1  # at most the one already in flight


async def test_retry_after_holds_every_request_of_the_credential(
    make_harness: Callable[..., Harness],
) -> None:
    answered = {"first": True}

    def script(_e: str, _b: dict[str, object]) -> Outcome:
        if answered["first"]:
            answered["first"] = False
            return Retry("http_429", 429, retry_after=0.3, overload=True)
        return Delivered(204, b"")

    harness = make_harness(script)
    harness.tenant.lanes["play"].limit.limit = 1.0  # one at a time, so the 429 comes first
    for number in range(5):
        harness.submit(f"u{number}", number + 1)
    await harness.settled()
    first = harness.upstream.calls[0][0]
    later = [moment for moment, _ in harness.upstream.calls[1:]]
    assert all(moment >= first + 0.3 for moment in later)


async def test_a_probe_refused_for_good_is_dead_lettered_and_the_tenant_resumes(
    make_harness: Callable[..., Harness],
) -> None:
    """A permanent answer to a probe shows the upstream and our credentials work: the
    event is dead-lettered and delivery resumes (before, the same event was parked
    again and probed for ever, and the tenant stayed paused)."""
    revoked = [True]

    def script(_event_id: str, body: dict[str, object]) -> Outcome:
        if revoked[0]:
            return CredentialsRejected("AUTHENTICATION_FAILED", "revoked", 401)
        if body["clipId"] == 1:
            return Permanent("CLIP_NOT_FOUND", "no such clip", 404)
        return Delivered(204, b"")

    harness = make_harness(script)
    refused = harness.submit("a", 1)
    assert await harness.dispatcher.wait_for(lambda: bool(harness.dispatcher.paused_tenants), 5)
    revoked[0] = False  # credentials fixed; the only parked event is refused for good
    await harness.settled(bound=5.0)
    assert harness.dispatcher.paused_tenants == {}
    assert [letter["relay-event-id"] for letter in harness.dead_letters()] == [refused.encode()]
    harness.submit("b", 2)
    await harness.settled(bound=5.0)
    assert len(harness.upstream.delivered) == 1


@pytest.mark.parametrize(
    "change",
    [{"tenant": ["default"]}, {"tenant": 7}, {"type": {"x": 1}}, {"id": None}, {"body": []}],
)
async def test_an_envelope_with_fields_of_the_wrong_type_is_undecodable_not_a_crash(
    make_harness: Callable[..., Harness], change: dict[str, object]
) -> None:
    harness = make_harness()
    value = {
        "v": 1,
        "id": "01a21619-5638-731a-b4dd-af442c87d71b",
        "type": "play",
        "tenant": "default",
        "receivedAt": "2026-11-26T00:00:00Z",
        "timestampStamped": False,
        "body": {"clientId": "k", "clipId": 1, "method": "Stream"},
        **change,
    }
    harness.dispatcher.submit(harness.partition, Incoming(0, b"k", orjson.dumps(value), ()))
    harness.next_offset = 1
    harness.submit("a", 1)  # and the partition goes on
    await harness.settled()
    assert [letter["relay-dlq-reason"] for letter in harness.dead_letters()] == [b"undecodable"]
    assert len(harness.upstream.delivered) == 1


async def test_an_unexpected_error_in_a_send_is_retried_and_the_sender_lives_on(
    make_harness: Callable[..., Harness],
) -> None:
    failed: list[str] = []

    def script(event_id: str, _body: dict[str, object]) -> Outcome:
        if len(failed) < 3:  # a bug somewhere below deliver(), three times
            failed.append(event_id)
            raise RuntimeError("a bug")
        return Delivered(204, b"")

    harness = make_harness(script)
    ids = [harness.submit(f"user-{number}", number + 1) for number in range(20)]
    await harness.settled(bound=10.0)
    assert sorted(event_id for event_id, _ in harness.upstream.delivered) == sorted(ids)
    assert harness.dead_letters() == []


async def test_stop_never_raises_for_a_task_that_died(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()

    async def bug() -> None:
        raise RuntimeError("a bug in a sender")

    dead = asyncio.create_task(bug())
    await asyncio.sleep(0)
    harness.dispatcher._tasks.append(dead)
    await harness.dispatcher.stop()  # the worker then closes its consumer, whatever happened
    assert dead.done()


@pytest.mark.parametrize(
    "value",
    [
        b"not json",  # undecodable
        orjson.dumps(  # a tenant this forwarder does not know (version or config skew)
            {
                "v": 1,
                "id": "01a21619-5638-731a-b4dd-af442c87d71b",
                "type": "play",
                "tenant": "someone-else",
                "receivedAt": "2026-11-26T00:00:00Z",
                "timestampStamped": False,
                "body": {"clientId": "k", "clipId": 1, "method": "Stream"},
            }
        ),
    ],
)
async def test_the_dlq_limit_counts_records_it_cannot_handle(
    make_harness: Callable[..., Harness], value: bytes
) -> None:
    """A stream of records the forwarder cannot handle is a skew between ingest and
    forward: it must pause the tenant, not bury the stream in the DLQ."""
    harness = make_harness(max_consecutive=3)
    for offset in range(10):
        harness.dispatcher.submit(harness.partition, Incoming(offset, b"k", value, ()))
    assert await harness.dispatcher.wait_for(lambda: harness.tenant.paused is not None, 5)
    await harness.clock.sleep(0.2)
    assert harness.tenant.paused == "dlq_limit"
    assert len(harness.dead_letters()) == 3


async def test_the_dlq_limit_counts_exhausted_retries(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(
        lambda _e, _b: Retry("http_503", 503, overload=True), max_attempts=2, max_consecutive=3
    )
    for number in range(10):
        harness.submit(f"user-{number}", number + 1)
    assert await harness.dispatcher.wait_for(lambda: harness.tenant.paused is not None, 5)
    await harness.clock.sleep(0.2)
    assert harness.tenant.paused == "dlq_limit"
    assert len(harness.dead_letters()) == 3


async def test_an_event_stuck_while_others_are_delivered_expires(
    make_harness: Callable[..., Harness],
) -> None:
    """Defect 1 of issue 10: an event answered 503 for ever, while other events of
    its credential get through, was retried without end and froze its partition's
    commit. It is dead-lettered as ``expired`` after RELAY_RETRY_MAX_AGE_S."""
    stuck: list[str] = []

    def script(event_id: str, _body: dict[str, object]) -> Outcome:
        if event_id in stuck:
            return Retry("http_503", 503, overload=True)
        return Delivered(204, b"")

    harness = make_harness(script, max_age_s=100.0, retry_cap_s=5.0)
    stuck.append(harness.submit("stuck-user", 1))
    started = harness.clock.monotonic()
    for minute in range(4):  # others keep getting through, one now and then
        harness.submit(f"user-{minute}", minute + 10)
        await harness.clock.sleep(40.0)
    await harness.settled()
    letters = harness.dead_letters()
    assert [letter["relay-dlq-reason"] for letter in letters] == [b"expired"]
    assert letters[0]["relay-event-id"] == stuck[0].encode()
    assert harness.clock.monotonic() - started >= 100.0
    assert sample(harness, "relay_forward_dead_letters_total", reason="expired") == 1


async def test_an_outage_of_the_whole_credential_expires_nothing(
    make_harness: Callable[..., Harness],
) -> None:
    down = [True]

    def script(_event_id: str, _body: dict[str, object]) -> Outcome:
        return Retry("http_503", 503, overload=True) if down[0] else Delivered(204, b"")

    harness = make_harness(script, max_age_s=100.0, retry_cap_s=5.0)
    ids = [harness.submit(f"user-{number}", number + 1) for number in range(5)]
    await harness.clock.sleep(1000.0)  # ten times the max age, nothing delivered at all
    assert harness.dead_letters() == []
    down[0] = False
    await harness.settled()
    assert sorted(event_id for event_id, _ in harness.upstream.delivered) == sorted(ids)


async def test_expired_letters_count_towards_the_dlq_limit(
    make_harness: Callable[..., Harness],
) -> None:
    stuck: list[str] = []

    def script(event_id: str, _body: dict[str, object]) -> Outcome:
        if event_id in stuck:
            return Retry("http_503", 503, overload=True)
        return Delivered(204, b"")

    harness = make_harness(script, max_age_s=10.0, max_consecutive=1)
    stuck.extend(harness.submit(f"stuck-{number}", number + 1) for number in range(2))
    for number in range(5):  # delivered at the start: within a minute, "being delivered"
        harness.submit(f"user-{number}", number + 10)
    await harness.clock.sleep(30.0)
    assert len(harness.dead_letters()) == 1
    assert harness.tenant.paused == "dlq_limit"


@pytest.mark.parametrize("wait", ["concurrency", "budget"])
async def test_nothing_is_sent_after_its_partition_began_to_go(
    make_harness: Callable[..., Harness], wait: str
) -> None:
    """Defect 2 of issue 10: events already taken off their queue and waiting for a
    concurrency slot or the budget were sent during the wind-down, after the
    partition went to another worker (which sends them too: a duplicate)."""
    gate = asyncio.Event()

    class Gated(FakeUpstream):
        async def deliver(self, path: str, body: bytes, idempotency_key: str) -> Outcome:
            await gate.wait()
            return await super().deliver(path, body, idempotency_key)

    harness = make_harness(rate=1.0 if wait == "budget" else 0.0)
    harness.tenant.client = harness.upstream = Gated(harness.clock)
    harness.tenant.lanes["play"].limit.limit = 1.0 if wait == "concurrency" else 8.0
    first = harness.submit("a", 1)
    waiting = [harness.submit(f"user-{number}", number + 2) for number in range(3)]
    await harness.clock.settle()
    assert harness.dispatcher.in_flight == 1  # the first is in flight, the others wait
    harness.partition.closing = True  # the worker's wind-down of a revoke begins
    gate.set()
    await harness.clock.sleep(10.0)
    sent = [key for _, key in harness.upstream.calls]
    assert sent == [first]
    assert not set(waiting) & set(sent)
    assert sample(harness, "relay_forward_withdrawn_total") == len(waiting)


async def test_the_end_of_an_outage_longer_than_the_max_age_expires_nothing(
    make_harness: Callable[..., Harness],
) -> None:
    """Found in review: failing time ran from the first failure, so after an outage
    longer than RELAY_RETRY_MAX_AGE_S the first failure after recovery (a 429 of the
    catch-up, a 503) expired the event at once, though the outage was not its fault."""
    down = [True]
    once_more: set[str] = set()

    def script(event_id: str, _body: dict[str, object]) -> Outcome:
        if down[0]:
            return Retry("http_503", 503, overload=True)
        if event_id in once_more:
            once_more.discard(event_id)
            return Retry("http_503", 503, overload=True)
        return Delivered(204, b"")

    harness = make_harness(script, max_age_s=100.0, retry_cap_s=5.0)
    ids = [harness.submit(f"user-{number}", number + 1) for number in range(5)]
    once_more.add(ids[0])
    await harness.clock.sleep(500.0)  # five times the max age, nothing gets through
    down[0] = False
    await harness.settled()
    assert harness.dead_letters() == []
    assert sorted(event_id for event_id, _ in harness.upstream.delivered) == sorted(ids)


async def test_under_a_budget_the_window_holds_seconds_of_it(
    make_harness: Callable[..., Harness],
) -> None:
    """Events beyond what the budget sends in RELAY_FORWARD_WINDOW_S stay in Kafka:
    fetched at once, they cost a spike's first second the CPU ingest needed."""
    harness = make_harness(window=1000)  # the harness's lanes: at most 8 senders
    dispatcher = harness.dispatcher
    assert dispatcher.room == 1000  # no budget known: the configured window
    dispatcher.pace(100.0)
    assert dispatcher.window == 200  # 2 s of 100/s
    harness.submit("u1", 1)
    assert dispatcher.room == 199
    dispatcher.pace(1.0)
    assert dispatcher.window == 8  # never fewer than a lane's senders
    dispatcher.pace(10_000.0)
    assert dispatcher.window == 1000  # never more than configured
    dispatcher.pace(float("inf"))  # a credential without a budget
    assert dispatcher.window == 1000
    await harness.settled()


async def test_waiting_for_room_returns_once_that_many_settled_or_at_its_bound(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(window=10)
    for number in range(10):  # one user's: they settle one at a time
        harness.submit("user-1", number + 1)
    assert harness.dispatcher.room == 0
    began = harness.clock.monotonic()
    await harness.dispatcher.wait_for_room(4, 60.0)
    assert len(harness.upstream.delivered) == 4  # woken by the fourth settle, no sooner
    assert harness.dispatcher.room == 4
    assert harness.clock.monotonic() - began < 1.0
    await harness.settled()
    began = harness.clock.monotonic()
    await harness.dispatcher.wait_for_room(11, 5.0)  # more than the window: never
    assert harness.clock.monotonic() - began == pytest.approx(5.0)
