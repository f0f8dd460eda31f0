"""Learning a tenant's appId by delivering one /app-start, idempotently, across
ingest processes.

When no appId is configured or known, ingest delivers the /app-start in hand to the
upstream itself (its event id as Idempotency-Key) and answers with the upstream's
answer. The delivery is a task of the tenant's learner, not of the request: a client
whose answer bound (RELAY_UPSTREAM_ANSWER_TIMEOUT_S) ran out gets 503, and the
delivery goes on. Once the upstream accepted it, the event is written to Kafka
marked delivered (forward skips it) whether or not its client still waits, and what
was delivered (the event's id, the fingerprint of its body, the answer, the time) is
kept in the facts and published on the facts topic (``appStart:<tenant>``, then the
``appId:<tenant>`` it taught; relay/facts.py). For RELAY_APP_ID_LEARNING_WINDOW_S
after that time, every ingest process that has read the fact answers a retry of the
event (the same event id, as an Idempotency-Key gives, or the same body as the
client sent it, ignoring a timestamp the relay stamped) with the same answer and the
first event's id, and delivers and writes nothing.

An upstream answer without an appId is relayed as it is (200, the upstream's body):
the event was accepted and is recorded. It is published alike, and for the window
every process writes the tenant's other /app-starts for forward to deliver and
answers them alike, instead of delivering each; after it, the next one asks again.

The limit: the fact travels through Kafka (A's produce, then B's next fetch of the
facts topic: well under a second on a healthy broker). A retry that reaches process
B before the fact does, and while B knows no appId, starts B's own learning: B
delivers it again, so the upstream receives the event twice (with an
Idempotency-Key both carry the same id, which the upstream is not documented to
dedupe). Both deliveries are written marked delivered, so forward delivers neither
again; the client gets B's answer; and every process keeps the later learning's
fact (the newest ``learnedAt``), whose event id later retries are answered with. The
same holds when A's
publish of the fact failed (logged "fact not published"). So: no second delivery for
a retry that arrives after the fact was read, which a client honouring Retry-After
(RELAY_RETRY_AFTER_S) meets by a wide margin unless the facts topic lags.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from relay.clock import Clock
from relay.config import Settings
from relay.envelope import DELIVERED_HEADER, Envelope
from relay.errors import KafkaUnavailable
from relay.facts import AppStart, FactPublisher, Facts
from relay.failures import failure_response
from relay.ingest.idempotency import digest
from relay.ingest.upstream_budget import UpstreamRate
from relay.kafka.producer import Producer, Record
from relay.metrics import IngestMetrics
from relay.upstream import Delivered, Permanent, UpstreamClient

__all__ = ["AppIdLearner", "AppStartAnswer"]

log = logging.getLogger("relay.ingest")


@dataclass(frozen=True, slots=True)
class AppStartAnswer:
    body: bytes  # the JSON the client gets with 200
    # The event this answer stands for, already delivered and written (the one that
    # taught it, or its first attempt); None: write the event in hand, then answer.
    event_id: str | None


def fingerprint(envelope: Envelope) -> str:
    """The event as its client sent it: a timestamp the relay stamped differs on
    every retry, so it is left out. A digest: it travels in a fact."""
    body: dict[str, Any] = dict(envelope.body)
    if envelope.timestamp_stamped:
        body.pop("timestamp", None)
    return digest(body).hex()


class AppIdLearner:
    def __init__(
        self,
        settings: Settings,
        facts: Facts,
        upstream: Mapping[str, UpstreamClient],
        rates: Mapping[str, UpstreamRate],
        publisher: FactPublisher | None,
        producer: Producer,
        metrics: IngestMetrics,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._facts = facts
        self._upstream = upstream
        self._rates = rates
        self._publisher = publisher
        self._producer = producer
        self._calls = metrics.upstream_calls
        self._clock = clock
        # One learning per tenant at a time in this process.
        self._learning: dict[str, asyncio.Task[AppStart | web.Response]] = {}
        self._background: set[asyncio.Task[Any]] = set()

    def app_id(self, configured: int | None, tenant: str) -> int | None:
        return configured if configured is not None else self._facts.app_id(tenant)

    async def answer(
        self, configured: int | None, tenant: str, path: str, envelope: Envelope, topic: str
    ) -> AppStartAnswer | web.Response:
        """The answer to this /app-start, delivering it to learn the appId if need be."""
        mark = fingerprint(envelope)
        deadline = self._clock.monotonic() + self._settings.upstream_answer_timeout_s
        while True:
            taught = self._recent(tenant)
            if taught is not None and (
                taught.event_id == envelope.id or taught.fingerprint == mark
            ):
                return AppStartAnswer(taught.answer, taught.event_id)  # a retry
            known = self.app_id(configured, tenant)
            if known is not None:
                return AppStartAnswer(orjson.dumps({"appId": known}), None)
            if taught is not None:  # the upstream names no appId: answer as it did
                return AppStartAnswer(taught.answer, None)
            learning = self._learning.get(tenant)
            mine = learning is None
            if learning is None:
                learning = self._learning[tenant] = self._spawn(
                    self._learn(tenant, path, envelope, mark, topic)
                )
                learning.add_done_callback(lambda _: self._learning.pop(tenant, None))
            try:
                async with asyncio.timeout(max(0.0, deadline - self._clock.monotonic())):
                    outcome = await asyncio.shield(learning)
            except TimeoutError:
                return _unavailable(self._settings)
            if mine:
                if isinstance(outcome, web.Response):
                    return outcome
                return AppStartAnswer(outcome.answer, outcome.event_id)
            # Another event's learning ended: look again (known now, or learn with this one).

    def _recent(self, tenant: str) -> AppStart | None:
        """What a learning delivered, here or in another process, within the window
        (wall clock: the time comes from whichever process learned it)."""
        taught = self._facts.app_start(tenant)
        window = self._settings.app_id_learning_window_s
        if taught is None or self._clock.wall() - taught.learned_at > window:
            return None
        return taught

    async def _learn(
        self, tenant: str, path: str, envelope: Envelope, mark: str, topic: str
    ) -> AppStart | web.Response:
        client = self._upstream.get(tenant)
        rate = self._rates.get(tenant)
        wait = rate.reserve(self._settings.upstream_answer_timeout_s / 2) if rate else None
        if client is None or wait is None:
            self._calls.labels("app_start", "throttled").inc()
            return _unavailable(self._settings)
        await self._clock.sleep(wait)
        outcome = await client.deliver(path, orjson.dumps(envelope.body), envelope.id)
        if isinstance(outcome, Permanent):
            self._calls.labels("app_start", "refused").inc()
            return failure_response(400, outcome.code, outcome.message or "the upstream refused it")
        if not isinstance(outcome, Delivered):
            self._calls.labels("app_start", "failed").inc()
            return _unavailable(self._settings)
        self._calls.labels("app_start", "ok").inc()
        app_id: int | None = None
        with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            app_id = int(orjson.loads(outcome.body)["appId"])
        answer = orjson.dumps({"appId": app_id}) if app_id is not None else outcome.body
        taught = AppStart(envelope.id, mark, answer, app_id, self._clock.wall())
        self._facts.learn_app_start(tenant, taught)  # here at once, elsewhere by the topic
        if self._publisher is not None:  # aside: a slow publish delays no answer
            self._spawn(self._publisher.app_start(tenant, taught))
        headers = (*envelope.headers(), DELIVERED_HEADER)
        try:
            await self._producer.send(
                Record(topic, envelope.key, envelope.encode(), headers),
                self._settings.produce_timeout_s,
            )
        except KafkaUnavailable:  # it reached the upstream, which is what a 2xx promises
            log.warning(
                "an app-start delivered upstream is not on Kafka", extra={"id": envelope.id}
            )
        return taught

    def _spawn(self, work: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


def _unavailable(settings: Settings) -> web.Response:
    return failure_response(
        503,
        "SERVICE_UNAVAILABLE",
        "the relay does not know this app's appId yet and could not ask the upstream "
        "in time; retry later",
        retry_after=settings.retry_after_s,
    )
