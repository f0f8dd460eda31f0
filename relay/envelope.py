"""The envelope: one event as it lives on Kafka (format in docs/ENVELOPE.md).

Value: one JSON object, versioned, holding the relay's stamps and the normalised
upstream body. Key: the ``clientId`` (one user's events of one type share a
partition, hence their order). Headers repeat id, type and tenant so that tools can
route without parsing the value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

__all__ = ["DELIVERED_HEADER", "VERSION", "Envelope", "new_event_id"]

VERSION = 1
# On an envelope the relay already delivered upstream (ingest, to learn an appId):
# forwarders record it and never send it again.
DELIVERED_HEADER = ("relay-delivered", b"upstream")


def new_event_id(now_ms: int) -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    Ids sort by receive time to the millisecond; within one millisecond their order
    is random. ``now_ms`` comes from the caller's clock so that tests can fix it.
    """
    random = int.from_bytes(os.urandom(10), "big")
    value = (
        ((now_ms & 0xFFFF_FFFF_FFFF) << 80)
        | (0x7 << 76)
        | ((random >> 62) & 0xFFF) << 64
        | (0b10 << 62)
        | (random & 0x3FFF_FFFF_FFFF_FFFF)
    )
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_FIELD_TYPES: dict[str, type] = {
    "id": str,
    "type": str,
    "tenant": str,
    "receivedAt": str,
    "timestampStamped": bool,
    "body": dict,
}


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    type: str  # an EventType name
    tenant: str
    received_at: str  # UTC ISO-8601 with Z
    timestamp_stamped: bool
    body: dict[str, Any]

    @property
    def received_epoch(self) -> float:
        """``received_at`` as seconds since the Unix epoch (ages are measured from it)."""
        return datetime.fromisoformat(self.received_at).timestamp()

    @property
    def key(self) -> bytes:
        return str(self.body["clientId"]).encode()

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("relay-event-id", self.id.encode()),
            ("relay-event-type", self.type.encode()),
            ("relay-tenant", self.tenant.encode()),
            ("relay-envelope-version", b"1"),
        ]

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "v": VERSION,
                "id": self.id,
                "type": self.type,
                "tenant": self.tenant,
                "receivedAt": self.received_at,
                "timestampStamped": self.timestamp_stamped,
                "body": self.body,
            }
        )

    @classmethod
    def decode(cls, value: bytes) -> Envelope:
        """Raises ``ValueError`` for a value that is not a version-1 envelope."""
        data = orjson.loads(value)
        if not isinstance(data, dict) or data.get("v") != VERSION:
            raise ValueError(f"not a version-{VERSION} relay envelope")
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
