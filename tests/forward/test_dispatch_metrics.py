"""What the dispatcher tells Prometheus, labelled by tenant and event type."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from relay.forward.dispatch import Incoming
from relay.upstream import Delivered, Permanent, Retry
from tests.forward.harness import PLAY, RECEIVED_AT, Harness, sample


async def test_deliveries_count_answers_and_the_age_of_events(
    make_harness: Callable[..., Harness],
) -> None:
    first: set[str] = set()

    def script(event_id: str, _body: dict[str, object]) -> Delivered | Retry:
        if event_id not in first:  # each event times out once, then passes
            first.add(event_id)
            return Retry("timeout", overload=True)
        return Delivered(204, b"")

    harness = make_harness(script)
    before = harness.clock.wall()
    for number in range(5):
        harness.submit(f"user-{number}", number + 1)
    await harness.settled()
    after = harness.clock.wall()
    name = "relay_forward_deliveries_total"
    assert sample(harness, name, outcome="delivered") == 5
    assert sample(harness, name, outcome="retry") == 5
    assert sample(harness, name, outcome="dead_letter") == 0  # initialised, not absent
    answers = "relay_forward_upstream_responses_total"
    assert sample(harness, answers, status_class="2xx") == 5
    assert sample(harness, answers, status_class="timeout") == 5
    assert sample(harness, answers, status_class="5xx") == 0
    assert sample(harness, "relay_forward_upstream_seconds_count") == 10
    # Each age is now - received_at, taken between the first submit and the last settle.
    received = datetime.fromisoformat(RECEIVED_AT).timestamp()
    assert sample(harness, "relay_forward_event_age_seconds_count") == 5
    age_sum = sample(harness, "relay_forward_event_age_seconds_sum")
    assert age_sum is not None
    assert 5 * (before - received) <= age_sum <= 5 * (after - received)
    assert sample(harness, "relay_forward_retries_total", reason="timeout") == 5


async def test_dead_letters_are_counted_by_reason_and_refusals_by_code(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness(lambda _e, _body: Permanent("CLIP_NOT_FOUND", "no such clip", 404))
    harness.dispatcher.submit(harness.partition, Incoming(0, b"k", b"not json", ()))
    harness.next_offset = 1
    harness.submit("a", 1)
    await harness.settled()
    name = "relay_forward_dead_letters_total"
    assert sample(harness, name, reason="permanent") == 1
    # An undecodable record is labelled by the topic it came from, not by its content.
    assert sample(harness, name, reason="undecodable") == 1
    assert sample(harness, name, reason="retries_exhausted") == 0
    assert sample(harness, "relay_forward_refusals_total", code="CLIP_NOT_FOUND") == 1
    assert sample(harness, "relay_forward_upstream_responses_total", status_class="4xx") == 1
    assert sample(harness, "relay_forward_deliveries_total", outcome="dead_letter") == 1


async def test_label_values_stay_bounded_whatever_the_upstream_says(
    make_harness: Callable[..., Harness],
) -> None:
    def script(_event_id: str, body: dict[str, object]) -> Permanent | Retry | Delivered:
        if body["clipId"] == 1:
            return Permanent("A_CODE_NOBODY_DOCUMENTED", "?", 400)
        if body["clipId"] == 2 and not retried:
            retried.append(True)
            return Retry("transport: ClientOSError (errno 104) at 10.0.0.7")
        return Delivered(204, b"")

    retried: list[bool] = []
    harness = make_harness(script)
    harness.submit("a", 1)
    harness.submit("b", 2)
    await harness.settled()
    assert sample(harness, "relay_forward_refusals_total", code="other") == 1
    assert sample(harness, "relay_forward_retries_total", reason="transport") == 1
    text = harness.registry.get_sample_value
    assert (
        text("relay_forward_refusals_total", {**PLAY, "code": "A_CODE_NOBODY_DOCUMENTED"}) is None
    )


async def test_an_unreadable_receive_time_costs_the_age_metric_not_the_event(
    make_harness: Callable[..., Harness],
) -> None:
    harness = make_harness()
    harness.submit("a", 1, received_at="yesterday-ish")
    await harness.settled()
    assert len(harness.upstream.delivered) == 1
    assert harness.dead_letters() == []
    assert sample(harness, "relay_forward_event_age_seconds_count") == 0


async def test_a_capped_retry_after_is_counted(make_harness: Callable[..., Harness]) -> None:
    answered: list[str] = []

    def script(event_id: str, _body: dict[str, object]) -> Retry | Delivered:
        if event_id not in answered:  # once: "come back in a day", cut to the cap
            answered.append(event_id)
            return Retry("SERVICE_UNAVAILABLE", 503, 0.01, True, retry_after_capped=True)
        return Delivered(204, b"")

    harness = make_harness(script)
    harness.submit("a", 1)
    await harness.settled()
    value = harness.registry.get_sample_value
    assert value("relay_forward_retry_after_capped_total", {"tenant": "default"}) == 1
