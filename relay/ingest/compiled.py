"""Events in the strict form, checked in one compiled pass (native/): POST /batch's
items, and single events (``CompiledCheck.event``, which also makes the event's id
and its record's headers).

A batch's own Python work per item (checks, normalising, its dict, its id, its
envelope) was about half of its CPU, and what kept /batch at 5-8x the single-request
events/s where 10x was the aim (docs/PERFORMANCE.md, twelfth session).
``CompiledCheck`` hands the batch's bytes to the Rust checker built from the event
table, which takes the batch only when every item is in the strict form: ids as JSON
integers, booleans as JSON booleans, methods as the table spells them, text of
printable ASCII, timestamps in UTC with ``Z`` and no fraction or three digits (or
none, or from a wrong clock: stamped), no unknown field, no ``idempotencyKey``, no
/app-start. Then it gives what each item's record needs, exactly what ``normalise``
would make of it (tests/ingest/test_compiled.py compares the two on generated
bodies), and the items' ids. Any other batch, valid or not, takes the Python path
whole, which checks anything and words every refusal.

A single event's body goes through the same check as one item (its type fixed by
its endpoint): the single handler's own Python for it (parse, ``normalise``, the
body's JSON) took about 6.5 us in-process, the checker's call 1.7
(docs/PERFORMANCE.md, thirteenth session).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

try:
    from relay_native import Checker
except ImportError as exc:  # a venv made without make: say how to build it
    raise ImportError(
        "relay_native (native/, the compiled check of events) is not built: run make venv "
        "(it needs Rust's cargo) or pip install ./native"
    ) from exc

from relay.envelope import CLIP_FIELD, CLIP_ID_HEADER, ID_HEADER, KEY_FIELD
from relay.events import (
    EARLIEST_TIMESTAMP,
    EVENT_TYPES,
    MAX_CLOCK_AHEAD,
    MAX_ID,
    METHOD_NEEDING_TIMESTAMP,
    METHODS,
    STAMPED_IMPLAUSIBLE,
    STAMPED_MISSING,
    Answer,
    EventType,
    format_timestamp,
)

__all__ = ["CheckedBatch", "CheckedEvent", "CompiledCheck", "Headers", "micros"]

Headers = tuple[tuple[str, bytes], ...]  # a record's

if not hasattr(Checker, "check_record"):  # built from an older native/: refuse to start,
    # rather than answer every strict single event 500
    raise ImportError(
        "relay_native is older than native/ (no check_record): run make venv or pip install "
        "./native"
    )

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_random_bits = random.getrandbits
_MICROSECOND = timedelta(microseconds=1)
_STAMPED = (None, STAMPED_MISSING, STAMPED_IMPLAUSIBLE)  # the checker's 0, 1, 2


@dataclass(frozen=True, slots=True)
class CheckedBatch:
    """A batch the checker took: one entry per item, in the batch's order."""

    types: list[EventType]
    keys: list[bytes]  # the clientId, the record's key
    values: list[bytes]  # the normalised body, as ``orjson.dumps`` writes it
    clip_ids: list[int | None]
    stamped: list[str | None]  # why the timestamp is the receive time (STAMPED_REASONS)
    ids: list[str]  # UUIDv7s, as relay.envelope.new_event_id makes them

    def __len__(self) -> int:
        return len(self.types)


class CheckedEvent(NamedTuple):
    """A single event the checker took: its record's parts, and its id. A named tuple:
    one per request, made in a third of a dataclass's time."""

    key: bytes  # the clientId
    value: bytes  # the normalised body, as ``orjson.dumps`` writes it
    headers: Headers  # envelope v2's: relay.envelope.with_event's, in its order
    event_id: str  # a UUIDv7, as relay.envelope.new_event_id makes them
    clip_id: int | None
    stamped: str | None  # why the timestamp is the receive time (STAMPED_REASONS)


def micros(moment: datetime | timedelta) -> int:
    """Microseconds since the epoch (of a timezone-aware ``datetime``), or of a span."""
    return (moment - _EPOCH if isinstance(moment, datetime) else moment) // _MICROSECOND


class CompiledCheck:
    """The event table's checker, for whole batches and single events."""

    def __init__(self, event_types: Sequence[EventType] = EVENT_TYPES) -> None:
        self._types = list(event_types)
        # By name: an EventType's own hash walks all its fields.
        self._indexes = {event_type.name: index for index, event_type in enumerate(self._types)}
        self._checker = Checker(
            [
                (
                    event_type.name,
                    event_type.answer is not Answer.APP_ID,  # its answer is the upstream's
                    [
                        (f.name, f.kind.value, f.required, f.min_length, f.max_length)
                        for f in event_type.fields
                    ],
                )
                for event_type in self._types
            ],
            list(METHODS),
            METHOD_NEEDING_TIMESTAMP,
            KEY_FIELD,
            CLIP_FIELD,
            MAX_ID,
            micros(EARLIEST_TIMESTAMP),
            micros(MAX_CLOCK_AHEAD),
            (ID_HEADER, CLIP_ID_HEADER),
        )

    def check(
        self, body: bytes, max_events: int, received_at: datetime, now_ms: int
    ) -> CheckedBatch | None:
        """The batch's items, or None: the Python path takes it. ``received_at`` is the
        receive time the Python path would normalise with (timezone-aware), ``now_ms``
        the milliseconds of the events' ids."""
        checked = self._checker.check(
            body,
            max_events,
            micros(received_at),
            format_timestamp(received_at),
            now_ms,
            # The ids' random bits: a new seed per batch from ``random``, which every
            # forked worker reseeds (relay.envelope.new_event_id's reasoning).
            _random_bits(64),
        )
        if checked is None:
            return None
        types, keys, values, clip_ids, stamped, ids = checked
        by_index = self._types
        return CheckedBatch(
            [by_index[index] for index in types],
            keys,
            values,
            clip_ids,
            [_STAMPED[reason] for reason in stamped],
            ids,
        )

    def event(
        self,
        event_type: EventType,
        body: bytes,
        received_us: int,
        received_text: str,
        shared: tuple[Headers, Headers],
    ) -> CheckedEvent | None:
        """A single event's body, sent to ``event_type``'s endpoint, or None: the Python
        path takes it. ``received_us`` is the receive time (``micros``) the Python path
        would normalise with, ``received_text`` it formatted (``format_timestamp``);
        its millisecond is the id's. ``shared``: ``relay.envelope.v2_shared``'s headers
        for the event's type, tenant and receive time, with the timestamp kept and
        stamped."""
        index = self._indexes.get(event_type.name)
        if index is None:
            return None
        checked = self._checker.check_record(
            index,
            body,
            received_us,
            received_text,
            received_us // 1000,
            _random_bits(64),  # the id's random bits (new_event_id's reasoning)
            shared,
        )
        if checked is None:
            return None
        key, value, headers, event_id, clip_id, reason = checked
        return CheckedEvent(key, value, headers, event_id, clip_id, _STAMPED[reason])
