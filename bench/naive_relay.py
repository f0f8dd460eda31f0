"""BASELINE, NOT THE RELAY. A minimal relay written the obvious way, kept only so that
`make bench` can report the real relay's throughput against it: one aiohttp handler
that parses the body and awaits one plain producer's acknowledgement (acks=all, as
aiokafka's send_and_wait: the seam's ``Writer``) per request. No validation, no
metrics, no bounds. It compresses as the relay's producer does
(RELAY_KAFKA_COMPRESSION), so that the comparison is like for like."""

from __future__ import annotations

import dataclasses
import json
import sys

import uvloop
from aiohttp import web

from relay.config import Settings
from relay.kafka.options import producer_options
from relay.kafka.producer import Record
from relay.kafka.writer import Writer

PRODUCER = web.AppKey("producer", Writer)


async def play(request: web.Request) -> web.Response:
    body = json.loads(await request.read())
    await request.app[PRODUCER].send(
        Record("naive.play", str(body["clientId"]).encode(), json.dumps(body).encode())
    )
    return web.Response(status=204)


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def producer(app: web.Application):  # type: ignore[no-untyped-def]
    settings = dataclasses.replace(Settings.from_env(), kafka_bootstrap=app["bootstrap"])
    app[PRODUCER] = Writer(producer_options(settings), client_id="naive-relay")
    await app[PRODUCER].start()
    yield
    await app[PRODUCER].stop()


def main() -> None:
    port, bootstrap = int(sys.argv[1]), sys.argv[2]
    app = web.Application()
    app["bootstrap"] = bootstrap
    app.cleanup_ctx.append(producer)
    app.router.add_post("/play", play)
    app.router.add_get("/healthz", healthz)
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop()
    )


if __name__ == "__main__":
    main()
