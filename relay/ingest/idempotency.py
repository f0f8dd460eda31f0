"""Client idempotency keys: a retry carries the same event id, and gets the same answer.

A client may send ``Idempotency-Key`` (1 to 128 visible ASCII characters, 0x21-0x7E:
UUIDs, base64 and hex all fit; spaces and control characters do not). The event id
is then a name-based UUID (uuid5 under ``NAMESPACE``) of the tenant, event type,
``clientId`` and key, so that every retry, on any ingest replica, carries the same
id. ``clientId`` is part of the name because it is the record's Kafka key: one id
then always lands on one partition, where forward's window (relay/forward/dedupe.py)
delivers it once, whatever body came with it. Such ids are not time-ordered.

Each ingest process also remembers, for RELAY_IDEMPOTENCY_WINDOW_S and at most
RELAY_IDEMPOTENCY_MAX_KEYS keys, each key's body digest and, once Kafka acknowledged
it, its answer:
- the same key with another body: 409, nothing written (the first body may be on
  Kafka already, even after a 503: a late write lands);
- a retry of an acknowledged key: the remembered answer, nothing written (the event
  is durable; a second record would only be one more duplicate for forward to skip);
- a retry of a key never acknowledged here (the earlier attempt got a 503, or is
  still waiting for Kafka): written again, with the same id; forward delivers it once.
A replica that did not see the first body cannot answer 409: it writes the second
body under the same id, and forward delivers the first record of that id and counts
the other as a skipped duplicate.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from multidict import CIMultiDictProxy

from relay.clock import Clock

__all__ = [
    "BATCH_FIELD",
    "HEADER",
    "MAX_KEY_LENGTH",
    "NAMESPACE",
    "Accepted",
    "Conflict",
    "Idempotency",
    "InvalidKey",
    "digest",
    "event_id",
    "parse_key",
    "valid_key",
]

HEADER = "Idempotency-Key"
BATCH_FIELD = "idempotencyKey"  # the same key on an item of POST /batch
MAX_KEY_LENGTH = 128
# Ours, fixed forever: changing it changes every derived id, and retries across the
# change would be delivered twice.
NAMESPACE = uuid.UUID("5b0c6a2e-8f3d-4d1e-9a57-2f1c0e7b9d43")
_VISIBLE = frozenset(range(0x21, 0x7F))


class InvalidKey(ValueError):
    """The header is present but not a usable key; the message says why."""


def parse_key(headers: CIMultiDictProxy[str]) -> str | None:
    """The request's key, None without one. Raises ``InvalidKey``."""
    values = headers.getall(HEADER, [])
    if not values:
        return None
    if len(values) > 1:
        raise InvalidKey(f"send one {HEADER} header, not {len(values)}")
    return valid_key(values[0], HEADER)


def valid_key(key: object, name: str) -> str:
    """``key`` when it is a usable key (``name`` says where it came from, for the
    message). Raises ``InvalidKey``."""
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= MAX_KEY_LENGTH
        or not all(ord(c) in _VISIBLE for c in key)
    ):
        raise InvalidKey(
            f"{name} must be 1 to {MAX_KEY_LENGTH} visible ASCII characters (0x21-0x7E)"
        )
    return key


def event_id(tenant: str, event_type: str, client_id: str, key: str) -> str:
    """The event id of every request with this key (uuid5: not time-ordered)."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join((tenant, event_type, client_id, key))))


def digest(body: Any) -> bytes:
    """The body as the client sent it, parsed (key order and spacing do not count;
    the relay's own stamps, such as a receive-time timestamp, are not in it)."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest()


class Accepted(NamedTuple):
    """The answer given once Kafka acknowledged the event: 204, or /app-start's 200 with
    its body (the appId, or the upstream's own answer when it gave none). A named
    tuple: one per request."""

    event_id: str
    app_answer: bytes | None = None


@dataclass(frozen=True, slots=True)
class Conflict:
    """The key came earlier with another body."""

    window_s: float

    def message(self, field: str) -> str:
        """What the client is told (a 409, or a /batch item's result); ``field``
        names where the key came (the header, or the item's field)."""
        return (
            f"this {field} came with another body within the last {self.window_s:g}s; "
            "send a new key for a new event"
        )


@dataclass(slots=True)
class _Entry:
    digest: bytes
    stored_at: float  # monotonic, at the key's first use
    answer: Accepted | None  # None until Kafka acknowledged it here


class Idempotency:
    """One process's memory of keys; bounded in count and age. Never blocks."""

    def __init__(self, window_s: float, max_keys: int, clock: Clock) -> None:
        self._window_s = window_s
        self._max_keys = max_keys
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str, str], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def claim(
        self, tenant: str, event_type: str, key: str, body: bytes
    ) -> Accepted | Conflict | None:
        """For a request whose body digest is ``body``: the remembered answer, a
        conflict, or None (write it: the key is new here, or never acknowledged)."""
        now = self._clock.monotonic()
        self._forget_older_than(now - self._window_s)
        name = (tenant, event_type, key)
        entry = self._entries.get(name)
        if entry is None:
            self._entries[name] = _Entry(body, now, None)
            while len(self._entries) > self._max_keys:
                self._entries.popitem(last=False)
            return None
        if entry.digest != body:
            return Conflict(self._window_s)
        return entry.answer

    def accepted(self, tenant: str, event_type: str, key: str, answer: Accepted) -> None:
        """Kafka acknowledged the event of ``key`` (or /app-start answered it)."""
        entry = self._entries.get((tenant, event_type, key))
        if entry is not None:
            entry.answer = answer

    def _forget_older_than(self, moment: float) -> None:
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if oldest.stored_at > moment:
                return
            entries.popitem(last=False)
