"""The sandbox upstream: a stand-in for the Clips API with fault controls and a ledger.

Order of checks on an event request, as a real service would apply them: outage,
bearer token, rate limit, added latency, injected error, validation (the same event
table the relay uses, strict), rights; then the ledger records the acceptance.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from relay.clock import Clock, SystemClock
from relay.errors import InvalidEvent
from relay.events import EVENT_TYPES, Answer, EventType, normalise
from relay.failures import failure_response
from relay.sandbox.faults import Faults, FaultsError
from relay.sandbox.ledger import Ledger
from relay.upstream import AUTH_PATH, IDEMPOTENCY_HEADER, MUSIC_CHECK_PATH

__all__ = ["Credential", "SandboxState", "make_sandbox_app"]


@dataclass(frozen=True, slots=True)
class Credential:
    token: str
    secret: str
    app_id: int = 1


@dataclass
class _Bucket:
    """Per-credential rate limit: a one-second window, as simple upstreams count."""

    window: int = -1
    used: int = 0


@dataclass
class SandboxState:
    credentials: dict[str, Credential]
    token_lifetime_s: float = 3600.0
    faults: Faults = field(default_factory=Faults)
    ledger: Ledger = field(default_factory=Ledger)
    bearers: dict[str, tuple[str, float]] = field(default_factory=dict)  # bearer -> (token, expiry)
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    authentications: int = 0
    # Called with a number of seconds to close the listening port for (outage "refuse").
    close_port_for: Callable[[float], Coroutine[Any, Any, None]] | None = None
    outage: asyncio.Task[None] | None = None


_STATE = web.AppKey("sandbox", SandboxState)
_CLOCK = web.AppKey("clock", Clock)


def make_sandbox_app(state: SandboxState, clock: Clock | None = None) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[_STATE] = state
    app[_CLOCK] = clock if clock is not None else SystemClock()
    app.router.add_post(AUTH_PATH, _authenticate)
    for event_type in EVENT_TYPES:
        app.router.add_post(event_type.path, _event_handler(event_type))
    app.router.add_post(MUSIC_CHECK_PATH, _music_check)
    app.router.add_post("/_sandbox/faults", _set_faults)
    app.router.add_get("/_sandbox/faults", _get_faults)
    app.router.add_post("/_sandbox/reset", _reset)
    app.router.add_get("/_sandbox/ledger", _ledger)
    app.router.add_get("/healthz", _healthz)
    return app


def _outage(request: web.Request) -> web.Response | None:
    """The answer during an outage, for every upstream endpoint (controls excepted)."""
    faults = request.app[_STATE].faults
    if faults.outage == "refuse" and request.transport is not None:
        request.transport.close()  # a connection opened before the port closed
        return web.Response(status=503)  # never reaches the caller
    if faults.outage == "unavailable":
        return failure_response(503, "SERVICE_UNAVAILABLE", "the service is unavailable")
    return None


async def _authenticate(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    down = _outage(request)
    if down is not None:
        return down
    try:
        body = orjson.loads(await request.read())
        token, secret = body["token"], body["secret"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return failure_response(400, "VALIDATION_ERROR", "token and secret are required")
    credential = state.credentials.get(token)
    if (
        state.faults.revoked
        or credential is None
        or not secrets.compare_digest(credential.secret.encode(), str(secret).encode())
    ):
        return failure_response(401, "AUTHENTICATION_FAILED", "unknown token or wrong secret")
    bearer = secrets.token_urlsafe(24)
    state.bearers[bearer] = (token, request.app[_CLOCK].monotonic() + state.token_lifetime_s)
    state.authentications += 1
    return web.json_response(
        {"success": True, "data": {"accessToken": bearer, "expiresIn": state.token_lifetime_s}}
    )


def _credential_of(request: web.Request) -> str | web.Response:
    """The token of the caller's credential, or the 401 to answer."""
    state = request.app[_STATE]
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:]:
        return failure_response(401, "MISSING_HEADERS", "Authorization: Bearer <token> is required")
    known = state.bearers.get(header[7:])
    if (
        state.faults.revoked
        or known is None
        or known[0] in state.faults.revoked_credentials
        or known[1] <= request.app[_CLOCK].monotonic()
    ):
        return failure_response(
            401, "AUTHENTICATION_FAILED", "the bearer token is invalid or expired"
        )
    return known[0]


def _over_rate(state: SandboxState, credential: str, now: float) -> bool:
    limit = state.faults.rate_limit
    if limit <= 0:
        return False
    bucket = state.buckets.setdefault(credential, _Bucket())
    window = int(now)
    if window != bucket.window:
        bucket.window, bucket.used = window, 0
    bucket.used += 1
    return bucket.used > limit


def _event_handler(event_type: EventType) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[_STATE]
        clock = request.app[_CLOCK]
        faults = state.faults
        key = request.headers.get(IDEMPOTENCY_HEADER)
        path = event_type.path

        def refuse(
            status: int,
            code: str,
            message: str,
            credential: str | None,
            *,
            field: str | None = None,
            retry_after: int | None = None,
        ) -> web.Response:
            state.ledger.refuse(path, status, code, key, credential, clock.wall())
            return failure_response(status, code, message, field=field, retry_after=retry_after)

        down = _outage(request)
        if down is not None:
            state.ledger.refuse(path, down.status, "outage", key, None, clock.wall())
            return down
        credential = _credential_of(request)
        if isinstance(credential, web.Response):
            state.ledger.refuse(path, credential.status, "auth", key, None, clock.wall())
            return credential
        if _over_rate(state, credential, clock.monotonic()):
            return refuse(
                429,
                "SERVICE_UNAVAILABLE",
                "rate limit exceeded",
                credential,
                retry_after=faults.retry_after_s,
            )
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if (
            faults.error_rate
            and (not faults.error_paths or path in faults.error_paths)
            and random.random() < faults.error_rate  # noqa: S311 - fault injection, not security
        ):
            message = f"injected {faults.error_code}"
            return refuse(faults.error_status, faults.error_code, message, credential)
        try:
            raw = orjson.loads(await request.read())
            body = normalise(
                event_type, raw, datetime.fromtimestamp(clock.wall(), UTC), reject_unknown=True
            ).body
        except orjson.JSONDecodeError:
            return refuse(400, "INVALID_PARAMETERS", "malformed JSON", credential)
        except InvalidEvent as exc:
            return refuse(400, exc.failure_code, exc.message, credential, field=exc.field)
        if event_type.name == "play" and body["clipId"] in faults.no_rights_clips:
            state.ledger.refuse(path, 200, "NO_STREAMING_RIGHTS", key, credential, clock.wall())
            return web.json_response(
                {
                    "success": False,
                    "failureCode": "NO_STREAMING_RIGHTS",
                    "message": f"clip {body['clipId']} has no streaming rights",
                }
            )
        state.ledger.accept(path, raw, key, credential, clock.wall())
        if event_type.answer is Answer.APP_ID:
            if faults.no_app_id:
                return web.json_response({})
            return web.json_response({"appId": state.credentials[credential].app_id})
        return web.Response(status=204)

    return handle


async def _music_check(request: web.Request) -> web.Response:
    """Clip ids in (``{"clipIds": [...]}``), those that are not playable out."""
    down = _outage(request)
    if down is not None:
        return down
    credential = _credential_of(request)
    if isinstance(credential, web.Response):
        return credential
    try:
        clip_ids = orjson.loads(await request.read())["clipIds"]
        if not isinstance(clip_ids, list):
            raise TypeError
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return failure_response(400, "VALIDATION_ERROR", "clipIds must be a list", field="clipIds")
    denied = set(request.app[_STATE].faults.no_rights_clips)
    return web.json_response(
        {"success": True, "data": {"notPlayable": [c for c in clip_ids if c in denied]}}
    )


async def _set_faults(request: web.Request) -> web.Response:
    """Merge faults; two actions ride along: ``expire_tokens: true`` expires every
    bearer now, ``token_lifetime_s`` sets the lifetime of tokens issued from now on."""
    state = request.app[_STATE]
    try:
        changes: Any = orjson.loads(await request.read())
        if not isinstance(changes, dict):
            raise FaultsError("the body must be a JSON object of faults")
        expire = changes.pop("expire_tokens", False) is True
        lifetime = changes.pop("token_lifetime_s", None)
        if lifetime is not None and (not isinstance(lifetime, int | float) or lifetime <= 0):
            raise FaultsError("token_lifetime_s must be a positive number")
        faults = state.faults.merged(changes)
    except (orjson.JSONDecodeError, FaultsError) as exc:
        return failure_response(400, "VALIDATION_ERROR", str(exc))
    state.faults = faults
    if expire:
        state.bearers.clear()
    if lifetime is not None:
        state.token_lifetime_s = float(lifetime)
    if faults.outage == "refuse" and state.close_port_for is not None:
        # The port reopens by itself after outage_seconds, and faults go back to normal.
        state.outage = asyncio.create_task(state.close_port_for(faults.outage_seconds))
    return web.json_response(faults.as_json())


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STATE].faults.as_json())


async def _reset(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    state.faults = Faults()
    state.ledger.clear()
    state.buckets.clear()
    return web.json_response({"reset": True})


async def _ledger(request: web.Request) -> web.Response:
    """``?offset=&limit=`` pages the entries; ``?entries=0`` answers counts only."""
    query = request.query
    try:
        offset = int(query.get("offset", "0"))
        limit = int(query.get("limit", "1000000"))
    except ValueError:
        return failure_response(400, "INVALID_PARAMETERS", "offset and limit must be integers")
    page = request.app[_STATE].ledger.page(offset, limit, query.get("entries", "1") != "0")
    page["authentications"] = request.app[_STATE].authentications
    return web.Response(body=orjson.dumps(page), content_type="application/json")


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})
