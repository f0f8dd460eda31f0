"""A worker's place in an ingest process group, and how the group's processes talk.

The supervisor and its workers share a private run directory (mode 0700): each
worker serves its own registry's exposition at ``worker-<slot>.sock``, the supervisor
serves the group's merged exposition at ``group.sock``. Unix sockets, not loopback
ports: nothing outside the host (or another user) can read or collide with them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

__all__ = ["WorkerSeat", "exposition_app", "fetch_exposition", "group_socket", "worker_socket"]

SCRAPE_TIMEOUT_S = 5.0


def worker_socket(run_dir: Path, slot: int) -> Path:
    return run_dir / f"worker-{slot}.sock"


def group_socket(run_dir: Path) -> Path:
    return run_dir / "group.sock"


@dataclass(frozen=True, slots=True)
class WorkerSeat:
    """Which worker this process is: its slot (0..count-1, kept by its replacement),
    how many workers the group has, and the group's run directory."""

    slot: int
    count: int
    run_dir: Path

    @property
    def share(self) -> float:
        """This worker's part of a bound that holds for the whole group."""
        return 1.0 / self.count


def exposition_app(exposition: Callable[[], Awaitable[bytes]]) -> web.Application:
    """GET /metrics answering ``exposition()``."""

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=await exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def fetch_exposition(socket: Path) -> str:
    """The exposition served at ``socket``. Raises ``aiohttp.ClientError`` or
    ``TimeoutError`` when nothing answers in time."""
    connector = aiohttp.UnixConnector(path=str(socket))
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        session.get("http://group/metrics") as response,
    ):
        response.raise_for_status()
        return await response.text()
