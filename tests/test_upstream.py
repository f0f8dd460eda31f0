"""The upstream client: every answer maps to one outcome; one token refresh at a time."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.clock import ManualClock
from relay.failures import FAILURE_CODES
from relay.http1 import Http1Pool
from relay.upstream import (
    CredentialsRejected,
    Delivered,
    Outcome,
    Permanent,
    Retry,
    Tokens,
    UpstreamClient,
    classify,
)
from tests.conftest import Client
from tests.test_events import VALID


def failure(code: str) -> bytes:
    return orjson.dumps({"success": False, "failureCode": code, "message": "m"})


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (204, b"", {}, Delivered),
        (200, b'{"appId": 1}', {}, Delivered),
        (200, failure("NO_STREAMING_RIGHTS"), {}, Permanent),
        (400, failure("VALIDATION_ERROR"), {}, Permanent),
        (400, failure("INVALID_PARAMETERS"), {}, Permanent),
        (404, failure("CLIP_NOT_FOUND"), {}, Permanent),
        (404, failure("TRACK_NOT_FOUND"), {}, Permanent),
        (500, failure("INTERNAL_ERROR"), {}, Retry),
        (503, failure("SERVICE_UNAVAILABLE"), {}, Retry),
        (502, failure("NETWORK_ERROR"), {}, Retry),
        (503, b"<html>bad gateway</html>", {}, Retry),
        (500, b"", {}, Retry),
        (429, b"", {"Retry-After": "3"}, Retry),
        (401, failure("AUTHENTICATION_FAILED"), {}, CredentialsRejected),
        (401, failure("MISSING_HEADERS"), {}, CredentialsRejected),
        (401, b"", {}, CredentialsRejected),
        (403, b"", {}, Permanent),
        (408, b"", {}, Retry),
    ],
)
def test_classify(status: int, body: bytes, headers: dict[str, str], expected: type) -> None:
    assert isinstance(classify(status, body, headers), expected)


def test_every_failure_code_has_a_disposition() -> None:
    for code in FAILURE_CODES:
        outcome = classify(400, failure(code), {})
        assert not isinstance(outcome, Delivered), code


def test_retry_after_and_overload_are_read() -> None:
    outcome = classify(429, b"", {"Retry-After": "3"})
    assert isinstance(outcome, Retry)
    assert (outcome.retry_after, outcome.overload) == (3.0, True)
    unavailable = classify(503, failure("SERVICE_UNAVAILABLE"), {"Retry-After": "7"})
    assert isinstance(unavailable, Retry)
    assert unavailable.retry_after == 7.0
    assert unavailable.overload


def test_permanent_keeps_code_and_message() -> None:
    outcome = classify(400, failure("VALIDATION_ERROR"), {})
    assert outcome == Permanent("VALIDATION_ERROR", "m", 400)


def pool_for(sandbox: Client) -> Http1Pool:
    return Http1Pool(str(sandbox.make_url("")))


async def client_for(sandbox: Client, pool: Http1Pool, **kw: Any) -> UpstreamClient:
    tokens = Tokens(pool, kw.get("token", "tok"), kw.get("secret", "sec"), kw["clock"], 5.0)
    return UpstreamClient(pool, tokens, 5.0)


async def test_many_waiters_share_one_refresh(sandbox: Client, sandbox_clock: ManualClock) -> None:
    async with pool_for(sandbox) as pool:
        client = await client_for(sandbox, pool, clock=sandbox_clock)
        body = orjson.dumps(VALID["play"])
        outcomes = await asyncio.gather(
            *(client.deliver("/play", body, f"id-{n}") for n in range(50))
        )
        assert all(isinstance(outcome, Delivered) for outcome in outcomes)
        assert client.tokens.refreshes == 1

        await sandbox.post("/_sandbox/faults", json={"expire_tokens": True})
        outcomes = await asyncio.gather(
            *(client.deliver("/play", body, f"id2-{n}") for n in range(50))
        )
        assert all(isinstance(outcome, Delivered) for outcome in outcomes)
        assert client.tokens.refreshes == 2  # one refresh for 50 requests refused at once
        ledger = await (await sandbox.get("/_sandbox/ledger?entries=0")).json()
        assert ledger["authentications"] == 2
        assert ledger["total"] == 100


async def test_token_is_refreshed_before_it_expires(
    sandbox: Client, sandbox_clock: ManualClock
) -> None:
    async with pool_for(sandbox) as pool:
        client = await client_for(sandbox, pool, clock=sandbox_clock)
        body = orjson.dumps(VALID["play"])
        assert isinstance(await client.deliver("/play", body, "a"), Delivered)
        sandbox_clock.advance(60 * 0.85)  # past 80% of the 60 s lifetime, before expiry
        assert isinstance(await client.deliver("/play", body, "b"), Delivered)
        assert client.tokens.refreshes == 2
        refused = (await (await sandbox.get("/_sandbox/ledger")).json())["refusedTotal"]
        assert refused == 0  # never sent with a stale token


async def test_revoked_credentials_are_rejected_after_one_refresh(
    sandbox: Client, sandbox_clock: ManualClock
) -> None:
    async with pool_for(sandbox) as pool:
        client = await client_for(sandbox, pool, clock=sandbox_clock)
        body = orjson.dumps(VALID["play"])
        assert isinstance(await client.deliver("/play", body, "a"), Delivered)
        await sandbox.post("/_sandbox/faults", json={"revoked": True})
        outcome = await client.deliver("/play", body, "b")
        assert isinstance(outcome, CredentialsRejected)
        assert outcome.code == "AUTHENTICATION_FAILED"


async def test_idempotency_key_and_bearer_are_sent(
    sandbox: Client, sandbox_clock: ManualClock
) -> None:
    async with pool_for(sandbox) as pool:
        client = await client_for(sandbox, pool, clock=sandbox_clock)
        await client.deliver("/add", orjson.dumps(VALID["add"]), "event-1")
        entry = (await (await sandbox.get("/_sandbox/ledger")).json())["entries"][0]
        assert entry["idempotencyKey"] == "event-1"
        assert entry["credential"] == "tok"


async def test_transport_errors_and_timeouts_are_retries(sandbox_clock: ManualClock) -> None:
    async with Http1Pool("http://127.0.0.1:1") as pool:
        tokens = Tokens(pool, "tok", "sec", sandbox_clock, 1.0)
        client = UpstreamClient(pool, tokens, 1.0)
        outcome = await client.deliver("/play", b"{}", "x")
        assert isinstance(outcome, Retry)
        assert outcome.reason.startswith("auth_transport")


async def test_music_check_keys_are_derived_from_the_body(sandbox_clock: ManualClock) -> None:
    """An upstream that honours Idempotency-Key must never answer one check with
    another's rights: different bodies get different keys, a resend the same."""
    keys: list[str] = []

    class Recording(UpstreamClient):
        async def deliver(self, path: str, body: bytes, idempotency_key: str) -> Outcome:
            keys.append(idempotency_key)
            return Delivered(200, b'{"data": {"notPlayable": []}}')

    async with Http1Pool("http://127.0.0.1:1") as pool:
        tokens = Tokens(pool, "tok", "sec", sandbox_clock, 1.0)
        client = Recording(pool, tokens, 1.0)
        for clips in ([1, 2], [3, 4], [1, 2]):
            assert await client.music_check(clips) == []
    assert keys[0] != keys[1]  # same length, different clips
    assert keys[0] == keys[2]


@pytest.mark.parametrize("header", ["inf", "1e12", "86400", "nan"])
def test_retry_after_is_capped_and_says_so(header: str) -> None:
    """A Retry-After of a day (or infinity) would block the credential and freeze its
    partitions that long: it is capped (RELAY_RETRY_AFTER_MAX_S), and marked."""
    outcome = classify(429, b"", {"Retry-After": header}, retry_after_max_s=300.0)
    assert isinstance(outcome, Retry)
    assert outcome.retry_after is not None
    assert 0.0 <= outcome.retry_after <= 300.0
    assert outcome.retry_after_capped


def test_a_retry_after_within_the_cap_is_kept() -> None:
    outcome = classify(503, failure("SERVICE_UNAVAILABLE"), {"Retry-After": "300"})
    assert isinstance(outcome, Retry)
    assert (outcome.retry_after, outcome.retry_after_capped) == (300.0, False)


async def test_a_token_that_would_split_a_header_line_is_not_used(
    sandbox_clock: ManualClock,
) -> None:
    """The bearer goes into a header line: one holding a line break (or nothing) is an
    unreadable answer, retried, never sent."""
    tokens = iter(["bad\r\nX-Injected: 1", ""])

    async def authenticate(request: web.Request) -> web.Response:
        return web.json_response({"data": {"accessToken": next(tokens), "expiresIn": 60}})

    app = web.Application()
    app.router.add_post("/authenticate", authenticate)
    async with TestServer(app) as server, Http1Pool(str(server.make_url(""))) as pool:
        client = UpstreamClient(pool, Tokens(pool, "tok", "sec", sandbox_clock, 1.0), 1.0)
        for _ in range(2):
            outcome = await client.deliver("/play", b"{}", "x")
            assert outcome == Retry("auth_unreadable_answer", 200)


async def test_a_key_that_would_split_a_header_line_is_dead_lettered(
    sandbox: Client, sandbox_clock: ManualClock
) -> None:
    async with pool_for(sandbox) as pool:
        client = await client_for(sandbox, pool, clock=sandbox_clock)
        outcome = await client.deliver("/play", orjson.dumps(VALID["play"]), "a\r\nb")
        assert isinstance(outcome, Permanent)
        assert outcome.code == "INVALID_IDEMPOTENCY_KEY"
        ledger = await (await sandbox.get("/_sandbox/ledger?entries=0")).json()
        assert ledger["total"] == 0
