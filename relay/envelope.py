"""The envelope: one event as it lives on Kafka (format in docs/ENVELOPE.md).

Two versions, read alike by every consumer of the relay (forward, the DLQ tools):

- **v2** (ingest writes it by default, RELAY_ENVELOPE_VERSION): the value is the
  normalised upstream body, the exact bytes forward POSTs; the relay's fields (id,
  type, tenant, receive time, whether the timestamp was stamped, the clipId rights
  learning reads) are record headers. Forward sends the value without parsing it.
- **v1**: the value is one JSON object holding those fields and the body; the headers
  repeat id, type and tenant.

Key: the ``clientId`` (one user's events of one type share a partition, hence
their order).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson

__all__ = [
    "CLIP_FIELD",
    "DELIVERED_HEADER",
    "KEY_FIELD",
    "VERSION",
    "VERSIONS",
    "Envelope",
    "Sendable",
    "clip_of",
    "new_event_id",
    "read",
    "record_key",
    "v2_headers",
    "v2_shared",
    "with_event",
]

VERSION = 1  # what ``Envelope`` encodes unless told (the format every reader knows)
VERSIONS = (1, 2)
# On an envelope the relay already delivered upstream (ingest, to learn an appId):
# forwarders record it and never send it again.
DELIVERED_HEADER = ("relay-delivered", b"upstream")

ID_HEADER = "relay-event-id"
TYPE_HEADER = "relay-event-type"
TENANT_HEADER = "relay-tenant"
VERSION_HEADER = "relay-envelope-version"
RECEIVED_AT_HEADER = "relay-received-at"
STAMPED_HEADER = "relay-timestamp-stamped"
CLIP_ID_HEADER = "relay-clip-id"
REPLAY_HEADER = "relay-replayed-from"  # set by relay/dlq_tools.py on a replay
_V2 = b"2"
_BOOLEANS = {b"true": True, b"false": False}
_BOOLEAN_TEXT = {value: text for text, value in _BOOLEANS.items()}
_VERSION_TEXT = {version: str(version).encode() for version in VERSIONS}


def new_event_id(now_ms: int) -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    Ids sort by receive time to the millisecond; within one millisecond their order
    is random. ``now_ms`` comes from the caller's clock so that tests can fix it.

    The random bits come from ``random`` (seeded from the system's entropy at start,
    and again in every forked child, so processes never share a sequence), not from
    ``os.urandom``, whose system call per id cost more than the rest of this
    function (1.7 us against 0.7 us an id, measured with timeit). Ids must be
    unique, not unguessable: they are not credentials.
    """
    bits = _random_bits(74)
    value = (
        ((now_ms & 0xFFFF_FFFF_FFFF) << 80)
        | _VERSION_AND_VARIANT
        | ((bits >> 62) << 64)  # rand_a: 12 bits
        | (bits & 0x3FFF_FFFF_FFFF_FFFF)  # rand_b: 62 bits
    )
    text = value.to_bytes(16).hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_random_bits = random.getrandbits
_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)


_FIELD_TYPES: dict[str, type] = {
    "id": str,
    "type": str,
    "tenant": str,
    "receivedAt": str,
    "timestampStamped": bool,
    "body": dict,
}

Headers = Iterable[tuple[str, bytes]]


KEY_FIELD = "clientId"  # the body's field that keys the record (one user's partition)
CLIP_FIELD = "clipId"  # the body's field that the clip id header carries


def record_key(body: dict[str, Any]) -> bytes:
    """A record's key: the body's clientId."""
    return str(body[KEY_FIELD]).encode()


def clip_of(body: dict[str, Any]) -> int | None:
    """The clip id a record's header carries: the body's clipId, when an integer."""
    clip_id = body.get(CLIP_FIELD)
    return clip_id if type(clip_id) is int else None


def _epoch(received_at: str) -> float:
    return datetime.fromisoformat(received_at).timestamp()


class Envelope(NamedTuple):
    """One event, parsed whole (ingest builds it; tools read it). A named tuple: as
    frozen as a dataclass, and built in a third of the time (one per request)."""

    id: str
    type: str  # an EventType name
    tenant: str
    received_at: str  # UTC ISO-8601 with Z
    timestamp_stamped: bool
    body: dict[str, Any]
    version: int = VERSION  # the version ``encode`` and ``headers`` write

    @property
    def received_epoch(self) -> float:
        """``received_at`` as seconds since the Unix epoch (ages are measured from it)."""
        return _epoch(self.received_at)

    @property
    def key(self) -> bytes:
        return record_key(self.body)

    @property
    def clip_id(self) -> int | None:
        return clip_of(self.body)

    def headers(self) -> tuple[tuple[str, bytes], ...]:
        if self.version == 2:
            return v2_headers(
                self.id,
                self.type,
                self.tenant,
                self.received_at,
                self.timestamp_stamped,
                self.clip_id,
            )
        return (
            (ID_HEADER, self.id.encode()),
            (TYPE_HEADER, self.type.encode()),
            (TENANT_HEADER, self.tenant.encode()),
            (VERSION_HEADER, _VERSION_TEXT[self.version]),
        )

    def encode(self) -> bytes:
        """The record's value: the body alone (v2) or the whole envelope (v1)."""
        if self.version == 2:
            return orjson.dumps(self.body)
        return orjson.dumps(
            {
                "v": 1,
                "id": self.id,
                "type": self.type,
                "tenant": self.tenant,
                "receivedAt": self.received_at,
                "timestampStamped": self.timestamp_stamped,
                "body": self.body,
            }
        )

    @classmethod
    def decode(cls, value: bytes, headers: Headers = ()) -> Envelope:
        """The envelope of a record of either version (v2 needs the record's headers).
        Raises ``ValueError`` for a record that is not a relay envelope."""
        fields = dict(headers)
        if fields.get(VERSION_HEADER) == _V2:
            sendable = _read_v2(value, fields)
            body = orjson.loads(value)
            if not isinstance(body, dict):
                raise ValueError("envelope v2: the value is not a JSON object")
            return cls(
                sendable.id,
                sendable.type,
                sendable.tenant,
                sendable.received_at,
                sendable.timestamp_stamped,
                body,
                2,
            )
        data = orjson.loads(value)
        if not isinstance(data, dict) or data.get("v") != 1:
            # The message tools print (relay dlq replay): a record with no v2 header is read
            # as v1, so what it lacks is v1's shape.
            raise ValueError("not a version-1 relay envelope")
        # Records come from outside this process (another version, another producer):
        # a field of the wrong type is an undecodable record, not a crash further on.
        for name, kind in _FIELD_TYPES.items():
            if not isinstance(data.get(name), kind):
                raise ValueError(  # noqa: TRY004 (the contract: ValueError, whatever is wrong)
                    f"envelope field {name!r} is not a {kind.__name__}"
                )
        return cls(
            id=data["id"],
            type=data["type"],
            tenant=data["tenant"],
            received_at=data["receivedAt"],
            timestamp_stamped=data["timestampStamped"],
            body=data["body"],
        )


def v2_headers(
    id_: str,
    type_: str,
    tenant: str,
    received_at: str,
    timestamp_stamped: bool,
    clip_id: int | None,
) -> tuple[tuple[str, bytes], ...]:
    """A v2 record's headers: the relay's fields of the event (the value is its body)."""
    return with_event(v2_shared(type_, tenant, received_at, timestamp_stamped), id_, clip_id)


def v2_shared(
    type_: str, tenant: str, received_at: str, timestamp_stamped: bool
) -> tuple[tuple[str, bytes], ...]:
    """The v2 headers that events of one type, tenant and receive time share: made
    once per batch and type by POST /batch, and once per millisecond and tenant by a
    type's single-event handler, both of which build their records without an
    ``Envelope``."""
    return (
        (TYPE_HEADER, type_.encode()),
        (TENANT_HEADER, tenant.encode()),
        (VERSION_HEADER, _V2),
        (RECEIVED_AT_HEADER, received_at.encode()),
        (STAMPED_HEADER, _BOOLEAN_TEXT[timestamp_stamped]),
    )


def with_event(
    shared: tuple[tuple[str, bytes], ...], id_: str, clip_id: int | None
) -> tuple[tuple[str, bytes], ...]:
    """One event's v2 headers: its id, the ``v2_shared`` ones, its clip id if any."""
    if clip_id is None:
        return ((ID_HEADER, id_.encode()), *shared)
    return ((ID_HEADER, id_.encode()), *shared, (CLIP_ID_HEADER, b"%d" % clip_id))


@dataclass(frozen=True, slots=True)
class Sendable:
    """What forward needs of a record: the relay's fields and the body as sent.
    ``body`` is bytes: a v2 value as stored, never parsed here."""

    id: str
    type: str
    tenant: str
    received_at: str
    timestamp_stamped: bool
    clip_id: int | None
    body: bytes
    replayed_from: bytes | None  # the last REPLAY_HEADER, when a replay
    delivered: bool  # DELIVERED_HEADER: ingest delivered it already

    @property
    def received_epoch(self) -> float:
        return _epoch(self.received_at)


def read(value: bytes, headers: Headers) -> Sendable:
    """A record of either version as forward sends it; the body of a v1 record is
    re-encoded, a v2 one is not looked at. Raises ``ValueError`` for a record that is
    not a relay envelope (a v2 value is checked by the upstream, not here)."""
    fields = dict(headers)  # a repeated header: its last value, as replays need
    if fields.get(VERSION_HEADER) == _V2:
        return _read_v2(value, fields)
    envelope = Envelope.decode(value)
    return Sendable(
        envelope.id,
        envelope.type,
        envelope.tenant,
        envelope.received_at,
        envelope.timestamp_stamped,
        envelope.clip_id,
        orjson.dumps(envelope.body),
        fields.get(REPLAY_HEADER),
        fields.get(DELIVERED_HEADER[0]) == DELIVERED_HEADER[1],
    )


def _read_v2(value: bytes, fields: dict[str, bytes]) -> Sendable:
    try:
        clip = fields.get(CLIP_ID_HEADER)
        return Sendable(
            fields[ID_HEADER].decode(),
            fields[TYPE_HEADER].decode(),
            fields[TENANT_HEADER].decode(),
            fields[RECEIVED_AT_HEADER].decode(),
            _BOOLEANS[fields[STAMPED_HEADER]],
            None if clip is None else int(clip),
            value,
            fields.get(REPLAY_HEADER),
            fields.get(DELIVERED_HEADER[0]) == DELIVERED_HEADER[1],
        )
    except (KeyError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        missing = [name for name in _REQUIRED if name not in fields]
        why = f"headers missing: {', '.join(missing)}" if missing else f"a header unreadable: {exc}"
        raise ValueError(f"envelope v2: {why}") from None


_REQUIRED = (ID_HEADER, TYPE_HEADER, TENANT_HEADER, RECEIVED_AT_HEADER, STAMPED_HEADER)
