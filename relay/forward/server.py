"""Running the forwarders as a process (``relay forward``).

Serves /metrics, /healthz and /readyz on RELAY_ADMIN_PORT when set, else
RELAY_FORWARD_PORT, and POST /resume?tenant=NAME (with ``Authorization: Bearer
<RELAY_ADMIN_TOKEN>``; disabled without a token) to resume a paused tenant by hand.

/readyz means "consuming and able to deliver": 503 before the group assigned
partitions and while stopping. A paused tenant is a business state (metrics and the
RelayTenantPaused alert), not unreadiness: it must not block a rollout or a drain.
Shutdown order: see relay/forward/worker.py; the HTTP port closes last so the final
state can be scraped during the drain.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from relay.clock import Clock, SystemClock
from relay.config import Settings
from relay.dlq import DeadLetterGuard, DeadLetters
from relay.facts import FactPublisher, Facts, create_facts_topic
from relay.forward.backlog import BacklogProbe
from relay.forward.credential import Credential, ingest_reserve
from relay.forward.dedupe import SettledIds
from relay.forward.dispatch import Dispatcher, LaneLimits, Tenant
from relay.forward.learning import Learner
from relay.forward.worker import ForwardWorker
from relay.http1 import Http1Pool
from relay.kafka.admin import partition_counts
from relay.kafka.consumer import KafkaConsumer
from relay.kafka.options import client_options, producer_options
from relay.kafka.producer import KafkaProducer
from relay.limits import settle_collector
from relay.metrics import ForwardMetrics
from relay.retry import RetryPolicy
from relay.tenants import Tenants, load_tenants
from relay.topics import create_missing_topics
from relay.upstream import Tokens, UpstreamClient

__all__ = ["Forwarder", "serve_forward"]

log = logging.getLogger("relay.forward")


class Forwarder:
    """Everything one ``relay forward`` process runs, built from settings."""

    def __init__(
        self,
        settings: Settings,
        pool: Http1Pool,
        clock: Clock,
        tenants: Tenants | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop if stop is not None else asyncio.Event()  # set at SIGTERM
        self.configured = tenants if tenants is not None else load_tenants(settings)
        self.registry = CollectorRegistry()
        self.metrics = ForwardMetrics.create(
            self.registry,
            list(self.configured.by_name),
            upstream_timeout_s=settings.upstream_timeout_s,
        )
        self.dlq_producer = KafkaProducer(producer_options(settings), client_id="relay-dlq")
        self.tenants: dict[str, Tenant] = {}
        self.clients: dict[str, UpstreamClient] = {}
        credentials: dict[str, Credential] = {}  # by upstream token: tenants may share one
        for name, configured in self.configured.by_name.items():
            tokens = Tokens(
                pool,
                configured.upstream_token,
                configured.upstream_secret,
                clock,
                settings.upstream_timeout_s,
                on_refresh=self.metrics.token_refreshes.labels(name).inc,
            )
            client = UpstreamClient(
                pool,
                tokens,
                settings.upstream_timeout_s,
                retry_after_max_s=settings.retry_after_max_s,
            )
            self.clients[name] = client
            credential = credentials.setdefault(
                configured.upstream_token,
                Credential(name, configured.upstream_budget_rps, clock, ingest_reserve(settings)),
            )
            credential.tenants.append(name)
            self.tenants[name] = Tenant(
                name,
                client,
                credential,  # its budget's rate is this worker's share, set on assignment
                DeadLetterGuard(
                    settings.dlq_max_consecutive, settings.dlq_max_ratio, settings.dlq_ratio_window
                ),
            )
        self.dispatcher = Dispatcher(
            self.tenants,
            DeadLetters(self.dlq_producer, settings.dlq_topic, clock, settings.produce_timeout_s),
            retry=RetryPolicy(
                settings.retry_base_s, settings.retry_cap_s, settings.retry_max_attempts
            ),
            lane_limits=LaneLimits(
                initial=settings.concurrency_initial, maximum=settings.concurrency_max
            ),
            window=settings.forward_window,
            window_s=settings.forward_window_s,
            probe_s=settings.pause_probe_s,
            metrics=self.metrics,
            clock=clock,
            max_age_s=settings.retry_max_age_s,
            settled_ids=SettledIds(settings.dedupe_window_s, settings.dedupe_max_ids),
        )
        self.facts = Facts.for_settings(settings, clock)
        self.publisher = FactPublisher(settings, clock)
        self.learner = Learner(
            self.facts,
            self.publisher,
            self.clients,
            settings.rights_check_s,
            clock=clock,
            budgets={name: tenant.credential.budget for name, tenant in self.tenants.items()},
        )
        self.dispatcher.observer = self.learner.observe
        options = client_options(settings)
        self.worker = ForwardWorker(
            settings,
            self.dispatcher,
            self.tenants,
            self.configured,
            self.metrics,
            clock,
            consumer=KafkaConsumer(
                settings,
                group_id=settings.consumer_group,
                lookup_timeout_s=settings.backlog_probe_s,
            ),
            partition_counts=lambda topics: partition_counts(options, topics),
            backlog=BacklogProbe(options, clock),
        )

    def ready(self) -> tuple[bool, str]:
        if self.stop.is_set():
            return False, "stopping"
        if not self.worker.assigned:
            return False, "no partitions assigned yet"
        paused = self.dispatcher.paused_tenants
        if paused:  # ready all the same: shown here and by relay_forward_paused
            return True, "ok; paused: " + ", ".join(f"{t} ({why})" for t, why in paused.items())
        return True, "ok"

    def _admin_refusal(self, request: web.Request) -> web.Response | None:
        token = self.settings.admin_token
        if not token:
            return web.json_response(
                {"error": "POST /resume is disabled: set RELAY_ADMIN_TOKEN to enable it"},
                status=403,
            )
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        valid = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "surrogateescape"), token.encode()
        )
        if not valid:
            return web.json_response(
                {"error": "send Authorization: Bearer <RELAY_ADMIN_TOKEN>"}, status=401
            )
        return None

    def http_app(self) -> web.Application:
        app = web.Application()

        async def metrics(_request: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        async def healthz(_request: web.Request) -> web.Response:
            return web.json_response({"status": "alive"})

        async def readyz(_request: web.Request) -> web.Response:
            ready, reason = self.ready()
            return web.json_response(
                {"ready": ready, "reason": reason}, status=200 if ready else 503
            )

        async def resume(request: web.Request) -> web.Response:
            refusal = self._admin_refusal(request)
            if refusal is not None:
                return refusal
            tenant = request.query.get("tenant", "")
            if tenant not in self.tenants:
                return web.json_response({"error": f"unknown tenant {tenant!r}"}, status=404)
            return web.json_response({"resumed": self.dispatcher.resume(tenant)})

        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_post("/resume", resume)
        return app


@asynccontextmanager
async def _http(app: web.Application, host: str, port: int) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield
    finally:
        await runner.cleanup()


async def serve_forward(settings: Settings, clock: Clock | None = None) -> None:
    """Run until SIGTERM/SIGINT. Raises ``KafkaUnavailable`` if Kafka is down at start."""
    clock = clock or SystemClock()
    tenants = load_tenants(settings)
    checked = await create_missing_topics(settings, [*tenants.topics(settings), settings.dlq_topic])
    checked |= await create_facts_topic(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # As many connections as deliveries in flight (RELAY_CONCURRENCY_MAX bounds them).
    async with Http1Pool(settings.upstream_url, idle_timeout_s=30, clock=clock) as pool:
        forwarder = Forwarder(settings, pool, clock, tenants, stop)
        checked.record(forwarder.metrics.topic_under_replicated)
        await forwarder.dlq_producer.start()
        await forwarder.publisher.start()
        stop_facts = asyncio.Event()
        aside = [
            asyncio.create_task(forwarder.facts.follow(settings, stop_facts), name="facts"),
            asyncio.create_task(forwarder.learner.check_rights_forever(), name="rights-check"),
        ]
        try:
            port = settings.admin_port if settings.admin_port is not None else settings.forward_port
            async with _http(forwarder.http_app(), settings.forward_host, port):
                log.info(
                    "forwarding",
                    extra={
                        "upstream": settings.upstream_url,
                        "group": settings.consumer_group,
                        "budget_rps": settings.upstream_budget_rps,
                        "metrics": f"http://{settings.forward_host}:{settings.forward_port}/metrics",
                    },
                )
                # A draining worker (a window of held events, much garbage per request)
                # would otherwise collect several times a second, each full collection
                # scanning all that start-up made.
                settle_collector()
                await forwarder.worker.run(stop)
        finally:
            stop_facts.set()
            for task in aside:
                task.cancel()
            await asyncio.gather(*aside, return_exceptions=True)
            await forwarder.learner.drain()
            await forwarder.publisher.stop()
            await forwarder.dlq_producer.stop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
