"""Which dead letters ``relay dlq replay`` sends, decided without the upstream.

A letter is left alone while the relay would refuse it again, for the same answer:

- ``undecodable``: the forwarder cannot read the record (today's ``Envelope.decode``,
  v1 or v2, and event table, as in ``relay/forward/dispatch.py``); replayed, it comes straight
  back to the DLQ.
- ``unknown_tenant``: its tenant is still not configured (same outcome).
- ``permanent`` with a rights code (``EXPECTED_REFUSALS``): the facts topic, which
  forwarders keep current with their periodic rights checks, still denies the clip.
  A clip the facts do not know is replayed: only the upstream can tell.

The first two checks apply to every letter, whatever its reason: a letter refused
for another cause whose tenant was removed since would be dead-lettered again just
the same. Every other reason (``expired``, ``retries_exhausted``, other permanent
codes) only sending can answer, so those letters are replayed.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import orjson

from relay.config import ConfigError, Settings
from relay.envelope import Envelope
from relay.events import BY_NAME
from relay.facts import Facts, facts_topic
from relay.failures import EXPECTED_REFUSALS
from relay.tenants import tenant_names

__all__ = ["Letter", "Triage", "selected_tenants"]


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter as replay sees it: its value, the ``relay-dlq-*`` headers, and
    the record's headers as stored (an envelope v2 keeps its fields there)."""

    reason: str
    failure_code: str
    source_topic: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def from_headers(
        cls,
        headers: Mapping[str, str],
        value: bytes,
        record_headers: tuple[tuple[str, bytes], ...] = (),
    ) -> Letter:
        return cls(
            reason=headers.get("relay-dlq-reason", "?"),
            failure_code=headers.get("relay-dlq-failure-code", "?"),
            source_topic=headers.get("relay-dlq-source-topic", ""),
            value=value,
            headers=record_headers,
        )


def selected_tenants(settings: Settings, names: Collection[str]) -> frozenset[str]:
    """``names``, checked against the configured tenants. Raises ``ConfigError``
    naming the configured tenants when one is unknown."""
    configured = tenant_names(settings)
    unknown = sorted(set(names) - set(configured))
    if unknown:
        raise ConfigError(
            f"no tenant {', '.join(map(repr, unknown))}; "
            f"configured tenants: {', '.join(configured)}"
        )
    return frozenset(names)


def _decode(letter: Letter) -> Envelope:
    """The envelope (v1 or v2), if the forwarder could deliver it. Raises ``ValueError``."""
    envelope = Envelope.decode(letter.value, letter.headers)
    if envelope.type not in BY_NAME:
        raise ValueError(f"unknown event type {envelope.type[:64]!r}")
    return envelope


class Triage:
    """Reads letters against today's code, configuration and facts."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._prefix = settings.topic_prefix + "."
        # Without a tenants file the one tenant's topics are <prefix>.<type>.
        self._open_tenant = None if settings.tenants_file else settings.tenant
        self.facts = Facts()
        self.facts_topic = facts_topic(settings)

    @functools.cached_property
    def _tenants(self) -> frozenset[str]:
        # Read on first use: ``tenant_of`` alone (inspect) needs no tenants file.
        return frozenset(tenant_names(self._settings))

    def tenant_of(self, letter: Letter) -> str | None:
        """The letter's tenant, from its envelope or else its source topic; None when
        neither says. Never raises."""
        try:
            return Envelope.decode(letter.value, letter.headers).tenant
        except (ValueError, TypeError):
            pass
        if not letter.source_topic.startswith(self._prefix):
            return None
        parts = letter.source_topic.removeprefix(self._prefix).split(".")
        if len(parts) == 2:  # <prefix>.<tenant>.<type>
            return parts[0]
        return self._open_tenant if len(parts) == 1 else None

    def still_refused(self, letter: Letter) -> str | None:
        """Why the relay would refuse ``letter`` again, or None when only sending can
        tell. Reads the facts given to ``facts`` beforehand; raises ``ConfigError``
        only when the tenants file cannot be read (``selected_tenants`` reads it first)."""
        try:
            envelope = _decode(letter)
        except (ValueError, TypeError) as exc:
            reason = "not JSON" if isinstance(exc, orjson.JSONDecodeError) else exc
            again = "still" if letter.reason == "undecodable" else "now"
            return f"{again} undecodable: {reason}"
        if envelope.tenant not in self._tenants:
            again = "still not" if letter.reason == "unknown_tenant" else "no longer"
            return f"tenant {envelope.tenant[:64]!r} {again} configured"
        if letter.reason == "permanent" and letter.failure_code in EXPECTED_REFUSALS:
            clip_id = envelope.clip_id
            rights = self.facts.rights(envelope.tenant, clip_id) if clip_id is not None else None
            if rights is not None and not rights.playable:
                return f"{letter.failure_code}: the rights facts still deny the clip"
        return None
