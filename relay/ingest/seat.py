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

__all__ = [
    "WorkerSeat",
    "ask",
    "exposition_app",
    "fetch_exposition",
    "group_socket",
    "group_unready",
    "unready_file",
    "worker_socket",
]

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


def unready_file(run_dir: Path) -> Path:
    """Present, holding the reason, while some listening worker of the group is not
    ready; absent when all are. The supervisor keeps it, every worker's /readyz reads
    it: a probe then costs a file read, not a round of questions through three
    processes (load balancers' health checks have short timeouts)."""
    return run_dir / "unready"


def group_unready(run_dir: Path) -> str | None:
    try:
        return unready_file(run_dir).read_text(encoding="utf-8") or "not ready"
    except FileNotFoundError:
        return None


def exposition_app(exposition: Callable[[], Awaitable[bytes]]) -> web.Application:
    """The supervisor's socket: GET /metrics answering ``exposition()``."""

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=await exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def ask(socket: Path, path: str) -> tuple[int, str]:
    """GET ``path`` over the unix ``socket``: status and text. Raises
    ``aiohttp.ClientError``, ``OSError`` or ``TimeoutError`` when nothing answers in time."""
    connector = aiohttp.UnixConnector(path=str(socket))
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        session.get(f"http://group{path}") as response,
    ):
        return response.status, await response.text()


async def fetch_exposition(socket: Path) -> str:
    """The exposition served at ``socket`` (raises as ``ask``, and on a non-2xx)."""
    status, text = await ask(socket, "/metrics")
    if status != 200:
        raise aiohttp.ClientError(f"{socket}: /metrics answered {status}")
    return text
