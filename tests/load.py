"""A bounded, open-loop load generator: /play events at a steady rate, every answer
recorded, until told to stop or its bound (count, time) is reached."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import orjson

from tests.test_events import VALID

JSON = {"Content-Type": "application/json"}


@dataclass
class SteadyLoad:
    url: str  # the front door (a load balancer or one ingest)
    rate: float  # requests per second
    max_seconds: float = 120.0
    max_requests: int = 60_000
    in_flight_limit: int = 200
    headers: dict[str, str] = field(default_factory=dict)  # e.g. a relay key
    accepted: list[str] = field(default_factory=list)
    failed: Counter[int] = field(default_factory=Counter)  # non-2xx answers by status
    # Why: "<status> <failureCode>: <message>" of each non-2xx answer, to tell a
    # refusal at the door from a Kafka timeout when a test fails.
    reasons: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # no answer, by error type
    latencies: list[float] = field(default_factory=list)  # seconds, of every answer
    sent: int = 0
    elapsed: float = 0.0  # seconds from the first request to the last sent
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, timeout=60)

    async def finish(self) -> None:
        """Until the load ends at its own bound (max_requests or max_seconds)."""
        if self._task is not None:
            await asyncio.wait_for(self._task, timeout=self.max_seconds + 60)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.in_flight_limit)
        pending: set[asyncio.Task[None]] = set()
        connector = aiohttp.TCPConnector(limit=self.in_flight_limit)
        async with aiohttp.ClientSession(connector=connector) as session:
            started = loop.time()
            while not self._stop.is_set() and self.sent < self.max_requests:
                if loop.time() - started > self.max_seconds:
                    break
                await slots.acquire()
                task = asyncio.create_task(self._one(session, self.sent, slots))
                pending.add(task)
                task.add_done_callback(pending.discard)
                self.sent += 1
                self.elapsed = loop.time() - started
                # Open loop: the n-th request leaves at n / rate, however answers go.
                delay = started + self.sent / self.rate - loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
            await asyncio.gather(*pending)

    async def _one(
        self, session: aiohttp.ClientSession, number: int, slots: asyncio.Semaphore
    ) -> None:
        body = {**VALID["play"], "clientId": f"load-{number % 997:04d}", "clipId": number + 1}
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with session.post(
                f"{self.url}/play", data=orjson.dumps(body), headers={**JSON, **self.headers}
            ) as response:
                answer = await response.read()
                self.latencies.append(loop.time() - started)
                if response.status in (200, 204):
                    self.accepted.append(response.headers["X-Relay-Event-Id"])
                else:
                    self.failed[response.status] += 1
                    self.reasons[_reason(response.status, answer)] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
        finally:
            slots.release()

    def percentile_ms(self, share: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed else 0.0

    def summary(self) -> str:
        return (
            f"{self.sent} sent in {self.elapsed:.1f}s ({self.achieved_rate:.0f}/s), "
            f"{len(self.accepted)} accepted, "
            f"{sum(self.failed.values())} failed {dict(self.failed)}, "
            f"{sum(self.errors.values())} connection errors {dict(self.errors)}"
            + (f"; why: {dict(self.reasons.most_common(5))}" if self.reasons else "")
        )


def _reason(status: int, answer: bytes) -> str:
    try:
        failure = orjson.loads(answer)
        return f"{status} {failure['failureCode']}: {failure['message']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"{status} {answer[:80]!r}"
