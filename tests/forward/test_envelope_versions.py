"""A rollout: envelope v1 and v2 records of the same users on the same partition (an
old ingest and a new one writing at once) are delivered alike, in order, once each."""

from __future__ import annotations

from collections.abc import Callable

from relay.clock import ManualClock
from relay.envelope import DELIVERED_HEADER, Envelope, new_event_id, read
from relay.facts import Facts
from relay.forward.dispatch import Incoming
from relay.forward.learning import Learner
from relay.upstream import Outcome, Permanent
from tests.forward.harness import RECEIVED_AT, Harness, sample


async def test_mixed_versions_of_one_key_keep_their_order_and_their_bodies(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()
    sent: dict[str, list[str]] = {}
    for number in range(300):
        key = f"user-{number % 7}"
        version = 1 + (number // 3) % 2  # runs of each version, interleaved per key
        sent.setdefault(key, []).append(harness.submit(key, number + 1, version=version))
    await harness.settled()
    got: dict[str, list[str]] = {}
    for event_id, body in harness.upstream.delivered:
        got.setdefault(str(body["clientId"]), []).append(event_id)
        assert body == {"clientId": body["clientId"], "clipId": body["clipId"], "method": "Stream"}
    assert got == sent
    assert len(harness.upstream.delivered) == 300


async def test_a_v1_and_a_v2_record_of_one_event_are_delivered_once(
    make_harness: Callable[..., Harness],
) -> None:
    """The same event id written by an old ingest and again by a new one (a client's
    retry across the upgrade) is one event to the dedupe window."""
    harness = make_harness()
    event_id = new_event_id(1_795_000_000_000)
    body = {"clientId": "u", "clipId": 5, "method": "Stream"}
    for offset, version in enumerate((1, 2)):
        envelope = Envelope(event_id, "play", "default", RECEIVED_AT, False, body, version)
        harness.dispatcher.submit(
            harness.partition,
            Incoming(offset, b"u", envelope.encode(), tuple(envelope.headers())),
        )
    harness.next_offset = 2
    await harness.settled()
    assert [delivered[0] for delivered in harness.upstream.delivered] == [event_id]
    assert sample(harness, "relay_forward_duplicates_skipped_total") == 1


async def test_an_event_ingest_delivered_is_recorded_not_sent_in_either_version(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()
    for offset, version in enumerate((1, 2)):
        envelope = Envelope(
            new_event_id(1_795_000_000_000 + offset),
            "app-start",
            "default",
            RECEIVED_AT,
            False,
            {"clientId": "u", "platform": "ios"},
            version,
        )
        harness.dispatcher.submit(
            harness.partition,
            Incoming(offset, b"u", envelope.encode(), (*envelope.headers(), DELIVERED_HEADER)),
        )
    harness.next_offset = 2
    await harness.settled()
    assert harness.upstream.delivered == []
    assert (
        harness.registry.get_sample_value(
            "relay_forward_deliveries_total",
            {"tenant": "default", "type": "app-start", "outcome": "already_delivered"},
        )
        == 2
    )


async def test_rights_learning_is_told_the_clip_of_either_version(
    make_harness: Callable[..., Harness],
) -> None:
    """v2: from the relay-clip-id header (the body is never parsed); v1: the body."""

    def refuse(_id: str, _body: dict[str, object]) -> Outcome:
        return Permanent("NO_STREAMING_RIGHTS", "no rights", 200)

    harness = make_harness(refuse)
    told: list[tuple[str, str, int | None, str]] = []
    harness.dispatcher.observer = lambda tenant, envelope, outcome: told.append(
        (tenant, envelope.type, envelope.clip_id, type(outcome).__name__)
    )
    harness.submit("u", 4242)
    await harness.settled()
    assert told == [("default", "play", 4242, "Permanent")]


class _Publisher:
    def __init__(self) -> None:
        self.rights_told: list[tuple[object, ...]] = []

    async def rights(self, *args: object) -> None:
        self.rights_told.append(args)


async def test_the_learner_publishes_a_denial_read_from_either_version() -> None:
    publisher = _Publisher()
    learner = Learner(
        Facts(),
        publisher,  # type: ignore[arg-type]
        {"acme": object()},  # type: ignore[dict-item]
        check_every=60.0,
        clock=ManualClock(),
    )
    refused = Permanent("NO_STREAMING_RIGHTS", "no rights", 200)
    for version, clip in ((1, 11), (2, 22)):
        body = {"clientId": "c", "clipId": clip, "method": "Stream"}
        envelope = Envelope("id", "play", "acme", RECEIVED_AT, False, body, version)
        learner.observe("acme", read(envelope.encode(), envelope.headers()), refused)
    await learner.drain()
    assert sorted(publisher.rights_told) == [
        ("acme", 11, False, "NO_STREAMING_RIGHTS", "no rights"),
        ("acme", 22, False, "NO_STREAMING_RIGHTS", "no rights"),
    ]
