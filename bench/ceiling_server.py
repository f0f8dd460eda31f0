"""The ceiling for ingest: the same aiohttp server, same loop (uvloop), same route
table shape, with a handler that reads the body and answers 204. Nothing the relay
could do is cheaper than this; the relay's throughput is reported as a ratio to it."""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web


async def empty(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=204)


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8180
    app = web.Application()
    app.router.add_post("/play", empty)
    app.router.add_get("/healthz", healthz)
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop()
    )


if __name__ == "__main__":
    main()
