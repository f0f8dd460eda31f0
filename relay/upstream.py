"""The upstream seam: the Clips API (or the sandbox), its bearer tokens, and what
each answer means for delivery.

Every answer maps to exactly one ``Outcome``: ``Delivered``, ``Retry`` (after a
delay, honouring Retry-After), ``Permanent`` (dead-letter, with the failureCode) or
``CredentialsRejected`` (our credentials, not the event: pause, never dead-letter).
The transport's errors (``relay/http1.py``) are translated here and go no further.

Undocumented upstream details live here and in the sandbox only (UPSTREAM.md):
``POST /authenticate`` takes ``{"token", "secret"}`` and answers
``{"success": true, "data": {"accessToken": ..., "expiresIn": seconds}}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from relay.clock import Clock
from relay.failures import DISPOSITIONS, Disposition
from relay.http1 import HeaderError, Http1Pool, TransportError

__all__ = [
    "AUTH_PATH",
    "MUSIC_CHECK_PATH",
    "CredentialsRejected",
    "Delivered",
    "Deliverer",
    "Outcome",
    "Permanent",
    "Retry",
    "Tokens",
    "UpstreamClient",
    "classify",
]

log = logging.getLogger(__name__)

AUTH_PATH = "/authenticate"
MUSIC_CHECK_PATH = "/music-check"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Refresh when this share of a token's lifetime has passed, well before it expires.
REFRESH_AT_SHARE = 0.8
_JSON = (("Content-Type", "application/json"),)
_VISIBLE = frozenset(chr(code) for code in range(0x21, 0x7F))  # a token's characters


@dataclass(frozen=True, slots=True)
class Delivered:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Retry:
    reason: str  # "transport", "timeout", "http_503", a failureCode, ...
    status: int | None = None
    retry_after: float | None = None
    overload: bool = False  # a sign to send less: timeouts, 5xx, 429 (AIMD cuts on it)
    retry_after_capped: bool = False  # the upstream asked for longer than the cap


@dataclass(frozen=True, slots=True)
class Permanent:
    code: str
    message: str
    status: int


@dataclass(frozen=True, slots=True)
class CredentialsRejected:
    code: str
    message: str
    status: int


Outcome = Delivered | Retry | Permanent | CredentialsRejected


# Retry-After beyond this (seconds) is cut to it: a day, or infinity, would block the
# credential and freeze its partitions that long (RELAY_RETRY_AFTER_MAX_S).
RETRY_AFTER_MAX_S = 300.0


def _retry_after(headers: Any, most: float) -> tuple[float | None, bool]:
    """The Retry-After in seconds, at most ``most``, and whether it was cut."""
    value = headers.get("Retry-After")
    if value is None:
        return None, False
    try:
        seconds = float(value)
    except ValueError:
        return None, False  # an HTTP date: rare for APIs; the backoff applies instead
    if not math.isfinite(seconds) or seconds > most:
        return most, True
    return max(0.0, seconds), False


def _failure(body: bytes) -> tuple[str | None, str]:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None, body[:200].decode(errors="replace")
    if isinstance(data, dict) and data.get("success") is False:
        code = data.get("failureCode")
        return (str(code) if code is not None else None), str(data.get("message", ""))
    return None, ""


def classify(
    status: int, body: bytes, headers: Any, *, retry_after_max_s: float = RETRY_AFTER_MAX_S
) -> Outcome:
    """Map one HTTP answer to its outcome. Never raises."""
    code, message = _failure(body) if (status >= 400 or body) else (None, "")
    if 200 <= status < 300 and code is None:
        return Delivered(status, body)
    retry_after, capped = _retry_after(headers, retry_after_max_s)
    if status == 429:
        return Retry(
            code or "http_429", status, retry_after, overload=True, retry_after_capped=capped
        )
    disposition = DISPOSITIONS.get(code) if code else None
    if disposition is Disposition.RETRY:
        overload = status >= 500 or code == "SERVICE_UNAVAILABLE"
        return Retry(
            code or f"http_{status}", status, retry_after, overload, retry_after_capped=capped
        )
    if disposition is Disposition.PERMANENT:
        return Permanent(code or f"HTTP_{status}", message, status)
    if disposition is Disposition.REAUTHENTICATE or status == 401:
        return CredentialsRejected(code or "HTTP_401", message, status)
    if status >= 500 or status == 408:
        return Retry(
            f"http_{status}", status, retry_after, status != 501, retry_after_capped=capped
        )
    return Permanent(code or f"HTTP_{status}", message or f"upstream answered {status}", status)


class Tokens:
    """The bearer token of one credential: fetched, refreshed before expiry, and
    refreshed at most once at a time however many requests wait for it."""

    def __init__(
        self,
        pool: Http1Pool,
        token: str,
        secret: str,
        clock: Clock,
        timeout: float,
        on_refresh: Callable[[], None] | None = None,
    ) -> None:
        self._pool = pool
        self._on_refresh = on_refresh  # counts refreshes in a metric; must not block
        self._credentials = orjson.dumps({"token": token, "secret": secret})
        self._clock = clock
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._bearer: str | None = None
        self._refresh_at = 0.0
        self.refreshes = 0

    def current(self) -> str | None:
        """The token while it is not due for a refresh, else None (no coroutine: a
        delivery asks for it every time)."""
        if self._bearer is not None and self._clock.monotonic() < self._refresh_at:
            return self._bearer
        return None

    async def bearer(self) -> str | Outcome:
        """The current token, refreshed first when due; an ``Outcome`` when the
        upstream would not give one (a retry, or our credentials rejected)."""
        return self.current() or await self.refresh(self._bearer)

    async def refresh(self, stale: str | None) -> str | Outcome:
        """Replace ``stale``; when another caller already replaced it, use theirs."""
        async with self._lock:
            if self._bearer is not None and self._bearer != stale:
                return self._bearer
            try:
                answer = await self._pool.post(
                    AUTH_PATH, _JSON, self._credentials, within_s=self._timeout
                )
            except TimeoutError:
                return Retry("auth_timeout", overload=True)
            except TransportError as exc:
                return Retry(f"auth_transport: {exc}")
            outcome = classify(answer.status, answer.body, answer)
            body, status = answer.body, answer.status
            if not isinstance(outcome, Delivered):
                if isinstance(outcome, Permanent):  # refused credentials, in any form
                    return CredentialsRejected(outcome.code, outcome.message, outcome.status)
                return outcome
            try:
                data = orjson.loads(body)["data"]
                bearer, lifetime = str(data["accessToken"]), float(data["expiresIn"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                return Retry("auth_unreadable_answer", status)
            if not bearer or not _VISIBLE.issuperset(bearer):  # it goes into a header line
                return Retry("auth_unreadable_answer", status)
            self._bearer = bearer
            self._refresh_at = self._clock.monotonic() + lifetime * REFRESH_AT_SHARE
            self.refreshes += 1
            if self._on_refresh is not None:
                self._on_refresh()
            log.info("upstream token refreshed", extra={"lifetime_s": lifetime})
            return bearer


class Deliverer(Protocol):
    """What the forwarder needs of an upstream client (the fake in tests has it too)."""

    async def deliver(self, path: str, body: bytes, idempotency_key: str) -> Outcome:
        """Never raises for network or HTTP trouble: answers an ``Outcome``."""
        ...


class UpstreamClient:
    """Posts events for one credential. ``deliver`` never raises for network or
    HTTP trouble: it answers an ``Outcome``."""

    def __init__(
        self,
        pool: Http1Pool,
        tokens: Tokens,
        timeout: float,
        retry_after_max_s: float = RETRY_AFTER_MAX_S,
    ) -> None:
        self._pool = pool
        self._tokens = tokens
        self._timeout = timeout
        self._retry_after_max_s = retry_after_max_s

    @property
    def tokens(self) -> Tokens:
        return self._tokens

    async def deliver(self, path: str, body: bytes, idempotency_key: str) -> Outcome:
        bearer = self._tokens.current() or await self._tokens.bearer()
        if not isinstance(bearer, str):
            return bearer
        outcome = await self._post(path, body, idempotency_key, bearer)
        if isinstance(outcome, CredentialsRejected):
            # Once: the token may have expired early or been revoked upstream.
            bearer = await self._tokens.refresh(bearer)
            if not isinstance(bearer, str):
                return bearer
            outcome = await self._post(path, body, idempotency_key, bearer)
        return outcome

    async def music_check(self, clip_ids: list[int]) -> list[int] | Outcome:
        """The ids among ``clip_ids`` that are NOT playable (``POST /music-check``), or
        the outcome that kept the upstream from answering. The request's field names are
        not documented upstream: ``{"clipIds": [...]}`` in, ``data.notPlayable`` out."""
        body = orjson.dumps({"clipIds": clip_ids})
        # The key names the question: the same clips, the same key; others, another.
        key = "music-check-" + hashlib.sha256(body).hexdigest()[:32]
        outcome = await self.deliver(MUSIC_CHECK_PATH, body, key)
        if not isinstance(outcome, Delivered):
            return outcome
        try:
            return [int(clip) for clip in orjson.loads(outcome.body)["data"]["notPlayable"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return Retry("music_check_unreadable_answer", outcome.status)

    async def _post(self, path: str, body: bytes, idempotency_key: str, bearer: str) -> Outcome:
        headers = (
            ("Authorization", "Bearer " + bearer),
            ("Content-Type", "application/json"),
            (IDEMPOTENCY_HEADER, idempotency_key),
        )
        try:
            answer = await self._pool.post(path, headers, body, self._timeout)
        except TimeoutError:
            return Retry("timeout", overload=True)
        except TransportError as exc:
            return Retry(f"transport: {exc}")
        except HeaderError as exc:  # a key that cannot go into a header: the event's fault
            return Permanent("INVALID_IDEMPOTENCY_KEY", str(exc), 0)
        return classify(
            answer.status, answer.body, answer, retry_after_max_s=self._retry_after_max_s
        )
