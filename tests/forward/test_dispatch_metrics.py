"""What the dispatcher tells Prometheus, labelled by tenant and event type."""

from __future__ import annotations

from collections.abc import Callable

from relay.forward.dispatch import Incoming
from relay.upstream import Delivered, Permanent, Retry
from tests.forward.harness import Harness

PLAY = {"tenant": "default", "type": "play"}


def sample(harness: Harness, name: str, **labels: str) -> float | None:
    return harness.registry.get_sample_value(name, {**PLAY, **labels})


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
    for number in range(5):
        harness.submit(f"user-{number}", number + 1)
    await harness.settled()
    name = "relay_forward_deliveries_total"
    assert sample(harness, name, outcome="delivered") == 5
    assert sample(harness, name, outcome="retry") == 5
    assert sample(harness, name, outcome="dead_letter") == 0  # initialised, not absent
    answers = "relay_forward_upstream_responses_total"
    assert sample(harness, answers, status_class="2xx") == 5
    assert sample(harness, answers, status_class="timeout") == 5
    assert sample(harness, answers, status_class="5xx") == 0
    assert sample(harness, "relay_forward_upstream_seconds_count") == 10
    # The harness stamps every event received at 2026-11-26T00:00:00Z; the system clock
    # is later, so each observed age is at least the time since then.
    assert sample(harness, "relay_forward_event_age_seconds_count") == 5
    age_sum = sample(harness, "relay_forward_event_age_seconds_sum")
    assert age_sum is not None
    assert age_sum > 0
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
