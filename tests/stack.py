"""The relay's processes as subprocesses on loopback, for end-to-end tests.

Each test gets its own topic prefix, consumer group and ports; every process is
stopped (SIGTERM, then SIGKILL) when the test ends.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from relay.events import BY_NAME

JSON = {"Content-Type": "application/json"}


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_GIVEN: set[int] = set()  # never the same port twice in one run
_PORTS = range(_ephemeral_low() - 4000, _ephemeral_low())


def free_port() -> int:
    """A free port for a server a test starts, below the kernel's ephemeral range: a
    port from that range (what binding port 0 gives) can be taken by any outgoing
    connection (a Kafka client, an HTTP client) between this check and the server's
    own bind, and the server then fails with "address already in use"."""
    for _ in range(1000):
        port = random.choice(_PORTS)
        if port in _GIVEN:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORTS}")


async def wait_http(
    url: str,
    *,
    status: int = 200,
    bound: float = 60.0,
    process: subprocess.Popen[bytes] | None = None,
    died: Callable[[], str] = lambda: "the process exited during start",
    every: float = 0.1,
) -> None:
    """Until GET ``url`` answers ``status``; fails after ``bound``, or at once with
    ``died()`` when ``process`` exits meanwhile."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(bound):
        while True:
            assert process is None or process.poll() is None, died()
            try:
                async with session.get(url) as response:
                    if response.status == status:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(every)


def terminate(popen: subprocess.Popen[bytes] | None, bound: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``bound``: for the servers a test started."""
    if popen is None or popen.poll() is not None:
        return
    popen.terminate()
    try:
        popen.wait(timeout=bound)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


@dataclass
class Process:
    kind: str
    url: str
    popen: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    def kill9(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    async def terminate(self, bound: float = 60.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(asyncio.to_thread(self.popen.wait), timeout=bound)


@dataclass
class Stack:
    bootstrap: str
    prefix: str
    env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    sandbox_url: str = ""

    def base_env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "RELAY_KAFKA_BOOTSTRAP": self.bootstrap,
            "RELAY_TOPIC_PREFIX": self.prefix,
            "RELAY_TOPIC_PARTITIONS": "3",
            "RELAY_CONSUMER_GROUP": f"{self.prefix}-forward",
            "RELAY_APP_ID": "4242",
            "RELAY_LOG_LEVEL": "WARNING",
            # No grace at SIGTERM unless a test is about it: the suite stays fast.
            "RELAY_SHUTDOWN_GRACE_S": "0",
            **self.env,
            **extra,
        }

    async def start(self, kind: str, **extra: str) -> Process:
        port = free_port()
        port_variable = {
            "ingest": "RELAY_INGEST_PORT",
            "forward": "RELAY_FORWARD_PORT",
            "sandbox": "RELAY_SANDBOX_PORT",
        }[kind]
        env = self.base_env(**{port_variable: str(port)}, **extra)
        if kind in ("forward", "ingest") and self.sandbox_url:
            env.setdefault("RELAY_UPSTREAM_URL", self.sandbox_url)
        popen = subprocess.Popen([sys.executable, "-m", "relay", kind], env=env)
        process = Process(kind, f"http://127.0.0.1:{port}", popen, env)
        self.processes.append(process)
        await self.wait_up(process)
        if kind == "sandbox":
            self.sandbox_url = process.url
        return process

    async def restart(self, process: Process) -> None:
        """Start a stopped process again, on the same port with the same settings."""
        assert process.popen.poll() is not None, f"relay {process.kind} is still running"
        process.popen = subprocess.Popen(
            [sys.executable, "-m", "relay", process.kind], env=process.env
        )
        await self.wait_up(process)

    async def wait_up(self, process: Process, bound: float = 60.0) -> None:
        await wait_http(
            process.url + "/healthz",
            bound=bound,
            process=process.popen,
            died=lambda: f"relay {process.kind} exited during start",
        )

    async def stop_all(self) -> None:
        for process in self.processes:
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.wait_for(asyncio.to_thread(process.popen.wait), timeout=30)
            except TimeoutError:
                process.popen.kill()
                process.popen.wait()

    # The sandbox

    async def faults(self, **changes: Any) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.sandbox_url}/_sandbox/faults", json=changes) as response,
        ):
            assert response.status == 200, await response.text()
            return dict(await response.json())

    async def ledger(self, entries: bool = True) -> dict[str, Any]:
        query = "" if entries else "?entries=0"
        url = f"{self.sandbox_url}/_sandbox/ledger{query}"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return dict(orjson.loads(await response.read()))

    async def wait_ledger(self, event_ids: set[str], bound: float) -> dict[str, Any]:
        """The ledger, once every id in ``event_ids`` is in it; fails after ``bound``."""
        async with asyncio.timeout(bound):
            while True:
                try:
                    ledger = await self.ledger()
                except aiohttp.ClientConnectionError:  # an outage that closed the port
                    await asyncio.sleep(0.5)
                    continue
                seen = {entry["idempotencyKey"] for entry in ledger["entries"]}
                if event_ids <= seen:
                    return ledger
                await asyncio.sleep(0.5)

    # Sending events

    async def post_events(
        self, ingest: Process, bodies: list[tuple[str, dict[str, Any]]], concurrency: int = 100
    ) -> list[str]:
        """POST (type, body) pairs through ingest; the event ids answered 2xx."""
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        for item in bodies:
            queue.put_nowait(item)
        accepted: list[str] = []

        async def worker(session: aiohttp.ClientSession) -> None:
            while not queue.empty():
                name, body = queue.get_nowait()
                async with session.post(
                    ingest.url + BY_NAME[name].path, data=orjson.dumps(body), headers=JSON
                ) as response:
                    await response.read()
                    assert response.status in (200, 204), response.status
                    accepted.append(response.headers["X-Relay-Event-Id"])

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return accepted
