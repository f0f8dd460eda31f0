"""POSTs to a fixed path skip aiohttp's router (relay.ingest.fast_routes): the same
requests answer the same through the front door's runner and through a plain one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from relay.config import Settings
from relay.events import BATCH_PATH, EVENT_TYPES
from relay.ingest.app import make_app
from relay.ingest.fast_routes import fixed_posts, request_handler
from relay.ingest.handler import EVENT_ID_HEADER
from relay.ingest.slow_clients import GuardedAppRunner
from relay.kafka.memory import MemoryProducer
from tests.stack import free_port
from tests.test_events import VALID

Answer = tuple[int, dict[str, str], bytes]
Send = Callable[..., Awaitable[Answer]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application, bool], Awaitable[Send]]]:
    """``await serve(app, fast)``: the app on a port, on the front door's runner
    (``fast``) or on aiohttp's own; returns ``send(method, path, body, headers)``."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application, fast: bool) -> Send:
        runner = (
            GuardedAppRunner(app, head_timeout=10.0, auto_decompress=False)
            if fast
            else web.AppRunner(app, auto_decompress=False)
        )
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()

        async def send(
            method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> Answer:
            async with (
                aiohttp.ClientSession() as session,
                session.request(
                    method, f"http://127.0.0.1:{port}{path}", data=body, headers=headers
                ) as answer,
            ):
                return answer.status, dict(answer.headers), await answer.read()

        return send

    yield start
    for runner in runners:
        await runner.cleanup()


def _front_door(settings: Settings) -> tuple[web.Application, MemoryProducer]:
    producer = MemoryProducer()
    return make_app(settings, producer, registry=CollectorRegistry()), producer


JSON = {"Content-Type": "application/json"}
PLAY = orjson.dumps(VALID["play"])

# (method, path, body, headers): what a client may send the event paths' neighbourhood.
REQUESTS: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("POST", "/play", PLAY, JSON),
    ("POST", "/play", b"{not json", JSON),
    ("POST", "/play", PLAY, {"Content-Type": "text/html"}),
    ("POST", "/play", PLAY, {**JSON, "Expect": "100-continue"}),
    ("POST", "/pl%61y", PLAY, JSON),  # the router decodes the path too
    ("POST", "/play/", PLAY, JSON),
    ("POST", "/PLAY", PLAY, JSON),
    ("POST", "/play?x=1", PLAY, JSON),
    ("GET", "/play", b"", {}),
    ("PUT", "/play", PLAY, JSON),
    ("POST", "/nowhere", PLAY, JSON),
    ("POST", "/healthz", b"", {}),
    ("POST", "/batch", orjson.dumps({"events": [{"type": "play", "body": VALID["play"]}]}), JSON),
]


def _comparable(answer: Answer) -> tuple[Any, ...]:
    status, headers, body = answer
    shown = (status, headers.get("Allow"), headers.get("Content-Type"), headers.get("Connection"))
    if status == 204:
        return *shown, EVENT_ID_HEADER in headers
    if headers.get("Content-Type", "").startswith("application/json"):
        parsed = orjson.loads(body)
        if isinstance(parsed, dict) and "results" in parsed:  # /batch: ids differ
            return *shown, [sorted(result) for result in parsed["results"]]
        return *shown, parsed
    return *shown, body


async def test_the_front_doors_answers_are_the_routers(
    serve: Callable[[web.Application, bool], Awaitable[Send]], settings: Settings
) -> None:
    routed_app, routed_producer = _front_door(settings)
    fast_app, fast_producer = _front_door(settings)
    routed, fast = await serve(routed_app, False), await serve(fast_app, True)
    for method, path, body, headers in REQUESTS:
        expected = _comparable(await routed(method, path, body, headers))
        assert _comparable(await fast(method, path, body, headers)) == expected, (method, path)
    written = {topic: len(records) for topic, records in routed_producer.records.items()}
    assert {topic: len(records) for topic, records in fast_producer.records.items()} == written
    assert sum(written.values()) == 5  # /play four ways (plain, Expect, %61, ?x=1), /batch once


def _echo_app(seen: list[web.Request]) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        seen.append(request)
        return web.Response(text=request.match_info.route.resource.canonical)  # type: ignore[union-attr]

    async def stamp(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Prepared"] = "yes"

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_route("*", "/any", echo)
    app.router.add_get("/only-get", echo)
    app.router.add_route("*", "/{tail:.*}", echo)
    app.on_response_prepare.append(stamp)
    return app


async def test_a_fixed_post_shares_one_frozen_match_info_with_the_app_and_its_signals(
    serve: Callable[[web.Application, bool], Awaitable[Send]],
) -> None:
    seen: list[web.Request] = []
    app = _echo_app(seen)
    send = await serve(app, True)
    for _ in range(2):
        status, headers, body = await send("POST", "/echo")
        assert (status, body, headers["X-Prepared"]) == (200, b"/echo", "yes")
    first, second = seen
    # Resolved once at start: the router would build a new one for each request.
    assert first.match_info is second.match_info
    assert first.app is app
    with pytest.raises(RuntimeError, match="freeze"):
        first.match_info.add_app(web.Application())
    # Shared, so it takes no writes: one request's would be the next one's.
    with pytest.raises(TypeError, match="shared"):
        first.match_info["user"] = "a"
    with pytest.raises(TypeError, match="shared"):
        first.match_info.current_app = web.Application()
    assert dict(first.match_info) == {}
    # An any-method route is what the router gives a POST there too, also shared.
    seen.clear()
    assert (await send("POST", "/any"))[2] == b"/any"
    assert (await send("POST", "/any"))[2] == b"/any"
    assert seen[0].match_info is seen[1].match_info
    # No POST route on the path: the router's choice (the pattern), not a shortcut.
    seen.clear()
    assert (await send("POST", "/only-get"))[2] == b"/{tail}"
    assert (await send("POST", "/only-get"))[2] == b"/{tail}"
    assert seen[0].match_info is not seen[1].match_info


async def test_an_app_with_middleware_is_routed_as_aiohttp_does(
    serve: Callable[[web.Application, bool], Awaitable[Send]],
) -> None:
    calls: list[str] = []

    @web.middleware
    async def count(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        calls.append(request.path)
        return await handler(request)

    app = _echo_app([])
    app.middlewares.append(count)
    send = await serve(app, True)
    assert (await send("POST", "/echo"))[0] == 200
    assert calls == ["/echo"]
    assert request_handler(app) == app._handle


async def test_a_post_with_expect_gets_100_continue_from_the_router(
    serve: Callable[[web.Application, bool], Awaitable[Send]],
) -> None:
    seen: list[web.Request] = []
    send = await serve(_echo_app(seen), True)
    for _ in range(2):
        assert (await send("POST", "/echo", b"x", {"Expect": "100-continue"}))[2] == b"/echo"
    assert seen[0].match_info is not seen[1].match_info  # each resolved by the router


async def test_every_event_path_and_the_batch_path_are_fixed(settings: Settings) -> None:
    app, _producer = _front_door(settings)
    with pytest.raises(RuntimeError, match="frozen"):  # middleware may still be added
        request_handler(app)
    app.freeze()
    expected = {event_type.path for event_type in EVENT_TYPES} | {BATCH_PATH}
    assert set(fixed_posts(app)) == expected


async def test_a_domain_matched_sub_application_leaves_every_path_to_the_router(
    serve: Callable[[web.Application, bool], Awaitable[Send]],
) -> None:
    seen: list[web.Request] = []
    app = _echo_app([])
    app.add_domain("example.com", _echo_app(seen))
    send = await serve(app, True)
    assert fixed_posts(app) == {}
    assert (await send("POST", "/echo", b"", {"Host": "example.com"}))[0] == 200
    assert len(seen) == 1  # the sub-application's handler, as the router decides
