"""The spike benchmark's arithmetic: the load generator's answers and the sandbox's
arrivals turned into per-second series, the drain rate and the exactly-once count.

Pure functions of what was recorded, so that the figures and the chart can be
checked without running the stack (tests/test_spike_timeline.py).
"""

from __future__ import annotations

import base64
import csv
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "Answer",
    "Delivery",
    "Timeline",
    "backlog_seconds",
    "drain_rate",
    "exactly_once",
    "parse_vegeta_csv",
    "per_second",
    "percentile_ms",
    "percentile_ms_per_second",
    "quantile_bound_ms",
]

_EVENT_ID_HEADER = b"x-relay-event-id:"


@dataclass(frozen=True, slots=True)
class Answer:
    """One request of the load generator: when it was sent and answered (Unix
    seconds), its status (0: no answer) and the event id the relay gave it."""

    sent_at: float
    answered_at: float
    status: int
    event_id: str | None

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def latency_ms(self) -> float:
        return (self.answered_at - self.sent_at) * 1000


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request the sandbox accepted: its Idempotency-Key (the event id) and when."""

    key: str | None
    at: float


def parse_vegeta_csv(lines: Iterable[str]) -> list[Answer]:
    """Answers from ``vegeta encode --to csv`` (columns: timestamp ns, code, latency ns,
    bytes out, bytes in, error, body, attack, seq, method, URL, headers; the headers
    are the base64 of the response's header block). The row without a URL that a lazy
    attack ends with ("no targets to attack") is no request and is left out."""
    answers = []
    for row in csv.reader(lines):
        if not row or not row[10]:
            continue
        sent = int(row[0]) / 1e9
        event_id = None
        for line in base64.b64decode(row[11]).split(b"\r\n"):
            if line.lower().startswith(_EVENT_ID_HEADER):
                event_id = line[len(_EVENT_ID_HEADER) :].strip().decode()
                break
        answers.append(Answer(sent, sent + int(row[2]) / 1e9, int(row[1]), event_id))
    return answers


def percentile_ms(answers: Iterable[Answer], share: float) -> float:
    """The ``share`` percentile of the answers' latencies (nearest rank), in ms."""
    ordered = sorted(answer.latency_ms for answer in answers)
    if not ordered:
        return math.nan
    return round(ordered[max(0, math.ceil(share * len(ordered)) - 1)], 2)


def percentile_ms_per_second(answers: Iterable[Answer], share: float) -> list[float]:
    """The ``share`` percentile of the latencies of the requests sent in each whole
    second from the first one: a steady overload and a few stalls read differently."""
    sent = list(answers)
    if not sent:
        return []
    first = min(answer.sent_at for answer in sent)
    seconds: dict[int, list[Answer]] = {}
    for answer in sent:
        seconds.setdefault(math.floor(answer.sent_at - first), []).append(answer)
    return [percentile_ms(seconds.get(n, []), share) for n in range(max(seconds) + 1)]


@dataclass(frozen=True, slots=True)
class Timeline:
    """Per-second series from ``start`` (Unix seconds): events accepted (answered 2xx)
    and delivered in each second, and the lag (accepted, not yet delivered) at the
    end of each second."""

    start: float
    accepted: list[int]
    delivered: list[int]
    lag: list[int]

    @property
    def seconds(self) -> int:
        return len(self.accepted)


def per_second(answers: Iterable[Answer], deliveries: Iterable[Delivery], start: float) -> Timeline:
    """Bin acceptances (by answer time) and deliveries (by arrival) into whole seconds
    from ``start`` until the last of either; what happened before ``start`` counts
    in the lag from the first second on."""
    accepted_at = [a.answered_at for a in answers if a.accepted]
    delivered_at = [d.at for d in deliveries]
    end = max([start, *accepted_at, *delivered_at])
    length = math.floor(end - start) + 1
    accepted, delivered = [0] * length, [0] * length
    carried = 0
    for times, counts, sign in ((accepted_at, accepted, 1), (delivered_at, delivered, -1)):
        for at in times:
            second = math.floor(at - start)  # int() would fold [-1, 0) into second 0
            if second < 0:
                carried += sign
            else:
                counts[second] += 1
    lag, level = [], carried
    for came, went in zip(accepted, delivered, strict=True):
        level += came - went
        lag.append(level)
    return Timeline(start, accepted, delivered, lag)


def backlog_seconds(timeline: Timeline, budget: float, first: int = 0) -> list[int]:
    """Deliveries in each second (from second ``first`` on) that began with at least
    ``budget`` events waiting: fewer, and forward may lack work rather than budget.
    The first such second is left out (the backlog may have formed during it), and so
    is the last of the timeline (it ends with the last event: partial)."""
    return [
        timeline.delivered[second]
        for second in range(max(2, first), timeline.seconds - 1)
        if timeline.lag[second - 1] >= budget and timeline.lag[second - 2] >= budget
    ]


def drain_rate(timeline: Timeline, budget: float, first: int = 0) -> tuple[float, int]:
    """Deliveries/s while a backlog held forward at its budget (the mean over
    ``backlog_seconds``), and over how many seconds; NaN without such seconds."""
    waiting = backlog_seconds(timeline, budget, first)
    if not waiting:
        return math.nan, 0
    return sum(waiting) / len(waiting), len(waiting)


def exactly_once(
    accepted_ids: Iterable[str], delivered_keys: Iterable[str | None]
) -> dict[str, int]:
    """How the accepted event ids and the keys the upstream received match:
    ``lost`` accepted ids never delivered, ``duplicates`` deliveries beyond the first
    of an id, ``unexpected`` deliveries of ids that were never accepted (a 503 whose
    event was written after all, or a delivery without a key)."""
    accepted = set(accepted_ids)
    received = Counter(delivered_keys)
    return {
        "lost": sum(1 for event_id in accepted if event_id not in received),
        "duplicates": sum(count - 1 for count in received.values() if count > 1),
        "unexpected": sum(count for key, count in received.items() if key not in accepted),
    }


def quantile_bound_ms(
    before: Mapping[float, float], after: Mapping[float, float], share: float
) -> float:
    """What ingest's own histogram says of a phase: the upper bound (ms) of the first
    bucket that holds the ``share`` quantile of the observations made between two
    scrapes, ``before`` and ``after`` (cumulative counts by bucket bound, +Inf
    included, as Prometheus exposes them). The quantile is at most that; inf when it
    lies beyond the last finite bound, nan when nothing was observed. Set against the
    load generator's percentile it says whether the time went inside the handler."""
    bounds = sorted(after)
    counts = [after[bound] - before.get(bound, 0.0) for bound in bounds]
    if not counts or counts[-1] <= 0:
        return math.nan
    needed = share * counts[-1]
    for bound, count in zip(bounds, counts, strict=True):
        if count >= needed:
            return bound * 1000
    return math.inf
