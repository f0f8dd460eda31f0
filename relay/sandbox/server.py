"""Running the sandbox as a process (``relay sandbox``), with a port it can close."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal

from aiohttp import web

from relay.sandbox.app import Credential, SandboxState, make_sandbox_app

__all__ = ["parse_credentials", "serve_sandbox"]

log = logging.getLogger("relay.sandbox")


def parse_credentials(text: str) -> dict[str, Credential]:
    """``token:secret[:appId],...`` -> credentials by token. Raises ValueError."""
    credentials = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"credential {item!r} is not token:secret[:appId]")
        app_id = int(parts[2]) if len(parts) == 3 else 1
        credentials[parts[0]] = Credential(parts[0], parts[1], app_id)
    if not credentials:
        raise ValueError("at least one credential is needed")
    return credentials


class _Port:
    """The listening port, closable for an outage that refuses connections."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner, self._host, self._port = runner, host, port
        self._site: web.TCPSite | None = None

    async def open(self) -> None:
        self._site = web.TCPSite(self._runner, self._host, self._port, backlog=4096)
        await self._site.start()

    async def close_for(self, state: SandboxState, seconds: float) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None
        log.info("outage: port closed", extra={"seconds": seconds})
        await asyncio.sleep(seconds)
        await self.open()
        state.faults = dataclasses.replace(state.faults, outage="none", outage_seconds=0.0)
        log.info("outage over: port open")


async def serve_sandbox(host: str, port: int, state: SandboxState) -> None:
    runner = web.AppRunner(make_sandbox_app(state), access_log=None, handle_signals=False)
    await runner.setup()
    listener = _Port(runner, host, port)
    state.close_port_for = lambda seconds: listener.close_for(state, seconds)
    await listener.open()
    log.info(
        "sandbox listening",
        extra={"url": f"http://{host}:{port}", "tokens": list(state.credentials)},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        state.ledger.close()
