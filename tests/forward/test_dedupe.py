"""Forward delivers an event id once within RELAY_DEDUPE_WINDOW_S, across restarts and
rebalances (the window is read back from the log), on the worker rig of
test_worker.py (in-memory log, virtual clock). The same on real Kafka with real
processes: tests/test_idempotent_retries.py."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from relay.clock import VirtualClock
from relay.envelope import DELIVERED_HEADER
from relay.forward.dedupe import REPLAY_HEADER, SettledIds, dedupe_key
from relay.forward.refill import Refill
from relay.kafka.consumer import TopicPartition
from relay.kafka.memory import MemoryConsumer, MemoryLog
from relay.metrics import ForwardMetrics
from relay.upstream import Delivered, Outcome, Permanent
from tests.forward.test_worker import Member, Rig, make_rig

__all__ = ["make_rig"]  # the fixture, used here


def skipped(member: Member) -> float:
    return member.sample("relay_forward_duplicates_skipped_total", {"tenant": "a", "type": "play"})


async def test_a_second_record_of_an_id_is_skipped_counted_and_committed(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    first = rig.publish("a", "user-1")
    rig.publish("a", "user-1", event_id=first)  # e.g. a retry on another ingest replica
    rig.publish("a", "user-1", event_id=first)
    other = rig.publish("a", "user-1")
    member = await rig.run(rig.member())
    await rig.until(rig.committed_to_end)
    assert rig.delivered() == [first, other]
    # the first record's body, not the later ones'
    assert member.upstreams["a"].delivered[0][1]["clipId"] == 1
    assert skipped(member) == 2


async def test_a_duplicate_is_skipped_after_a_restart(make_rig: Callable[..., Rig]) -> None:
    """A new worker reads the window back from the log: without it, the duplicate of
    an event its predecessor delivered is delivered again."""
    rig = make_rig()
    delivered = rig.publish("a", "user-1")
    first = await rig.run(rig.member())
    await rig.until(rig.committed_to_end)
    first.stop.set()
    assert first.task is not None
    await first.task
    rig.publish("a", "user-1", event_id=delivered)  # a client's late retry
    fresh = rig.publish("a", "user-2")
    second = await rig.run(rig.member())
    await rig.until(rig.committed_to_end)
    assert rig.delivered() == [delivered, fresh]
    assert skipped(second) == 1


async def test_a_duplicate_is_skipped_by_the_partition_s_new_owner(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    tp = TopicPartition(rig.topic("a"), 0)
    first = await rig.run(rig.member())
    second = await rig.run(rig.member())
    await rig.log.rebalance({first.consumer: {tp}, second.consumer: set()})
    delivered = rig.publish("a", "user-1")
    await rig.until(rig.committed_to_end)
    await rig.log.rebalance({first.consumer: set(), second.consumer: {tp}})
    rig.publish("a", "user-1", event_id=delivered)
    await rig.until(rig.committed_to_end)
    assert rig.delivered() == [delivered]
    assert skipped(second) == 1


async def test_a_dead_lettered_event_s_replay_is_delivered_once(
    make_rig: Callable[..., Rig],
) -> None:
    """The read-back cannot tell a dead-lettered record from a delivered one: the
    replay's generation (the dead letter's position) makes it another key."""
    refuse = {"yes": True}

    def script(event_id: str, _body: dict[str, object]) -> Outcome:
        if refuse["yes"]:
            return Permanent("CLIP_NOT_FOUND", "no such clip", 404)
        return Delivered(204, b"")

    rig = make_rig()
    letter = rig.publish("a", "user-1")
    first = await rig.run(rig.member({"a": script}))
    await rig.until(rig.committed_to_end)
    assert rig.delivered() == []
    first.stop.set()
    assert first.task is not None
    await first.task
    refuse["yes"] = False
    marker = (REPLAY_HEADER, b"0:17")
    rig.publish("a", "user-1", event_id=letter, headers=(marker,))  # relay dlq replay
    rig.publish("a", "user-1", event_id=letter, headers=(marker,))  # ... written twice
    rig.publish("a", "user-1", event_id=letter)  # a client's retry of the original
    second = await rig.run(rig.member({"a": script}))
    await rig.until(rig.committed_to_end)
    assert rig.delivered() == [letter]
    assert skipped(second) == 2


async def test_what_ingest_delivered_counts_as_delivered_live_and_read_back(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    learned = rig.publish("a", "user-1", headers=(DELIVERED_HEADER,))
    first = await rig.run(rig.member())
    rig.publish("a", "user-1", event_id=learned)
    await rig.until(rig.committed_to_end)
    assert rig.delivered() == []
    assert skipped(first) == 1
    first.stop.set()
    assert first.task is not None
    await first.task
    rig.publish("a", "user-1", event_id=learned)
    second = await rig.run(rig.member())
    await rig.until(rig.committed_to_end)
    assert rig.delivered() == []
    assert skipped(second) == 1


async def test_the_window_is_stated_in_time(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(dedupe_window_s=60.0)
    event = rig.publish("a", "user-1")
    member = await rig.run(rig.member())
    await rig.until(rig.committed_to_end)
    await rig.clock.sleep(61.0)
    rig.publish("a", "user-1", event_id=event)  # past the window: a new delivery
    await rig.until(rig.committed_to_end)
    assert rig.delivered() == [event, event]
    assert skipped(member) == 0


async def test_the_read_back_holds_at_most_max_ids_records(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(dedupe_max_ids=2)
    ids = [rig.publish("a", f"user-{n}") for n in range(5)]
    first = await rig.run(rig.member())
    await rig.until(rig.committed_to_end)
    first.stop.set()
    assert first.task is not None
    await first.task
    rig.publish("a", "user-4", event_id=ids[4])  # within the last two: skipped
    rig.publish("a", "user-0", event_id=ids[0])  # older than the bound: delivered again
    second = await rig.run(rig.member())
    await rig.until(rig.committed_to_end)
    assert sorted(rig.delivered()) == sorted([*ids, ids[0]])
    assert skipped(second) == 1


async def test_a_read_back_past_its_bound_is_cut_and_delivery_starts() -> None:
    clock = VirtualClock()
    log = MemoryLog({"t.play": 1}, clock)
    tp = TopicPartition("t.play", 0)
    for number in range(3):
        log.append("t.play", 0, b"{}", b"k", (("relay-event-id", b"id-%d" % number),))
    log.committed[tp] = 3
    consumer = MemoryConsumer(log, clock)
    consumer.owned.add(tp)
    registry = CollectorRegistry()
    metrics = ForwardMetrics.create(registry, ["a"])
    ids = SettledIds(900.0, 100)
    refill = Refill(consumer, ids, clock, metrics, {"t.play": ("a", "play")}, max_s=5.0)
    await refill.begin([tp])
    assert refill.reading == {tp}
    await clock.advance(5.0)  # nothing fetched for RELAY_DEDUPE_REFILL_MAX_S
    refill.cut_overdue()
    assert refill.reading == set()
    assert consumer._position[tp] == 3  # delivery starts at the committed offset
    labels = {"tenant": "a", "type": "play"}
    assert registry.get_sample_value("relay_forward_dedupe_refill_incomplete_total", labels) == 1


def test_the_key_is_the_id_and_the_last_replay_generation() -> None:
    assert dedupe_key(b"e", ()) == b"e"
    assert dedupe_key(None, (("relay-event-id", b"e"),)) == b"e"
    assert dedupe_key(None, ()) is None
    twice = ((REPLAY_HEADER, b"0:1"), (REPLAY_HEADER, b"0:9"))
    assert dedupe_key(b"e", twice) == b"e\x000:9"


def test_the_window_is_bounded_in_count_and_age() -> None:
    ids = SettledIds(window_s=10.0, max_ids=2)
    ids.add(b"a", 100.0, 100.0)
    ids.add(b"b", 101.0, 101.0)
    ids.add(b"c", 102.0, 102.0)
    assert (ids.seen(b"a", 102.0), ids.seen(b"b", 102.0), ids.seen(b"c", 102.0)) == (
        False,
        True,
        True,
    )
    assert not ids.seen(b"b", 111.0)  # older than the window
    ids.add(b"d", 112.5, 112.5)
    assert len(ids) == 1
    ids.add(b"old", 90.0, 112.5)  # read back, but already out of the window
    assert not ids.seen(b"old", 112.5)


def test_the_replay_header_is_the_one_the_replay_tool_sets() -> None:
    from relay.dlq_tools import REPLAYED_HEADER

    assert REPLAY_HEADER == REPLAYED_HEADER
