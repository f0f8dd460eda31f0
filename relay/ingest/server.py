"""Running ingest as a process, and stopping it without losing an accepted event.

Shutdown order at SIGTERM or SIGINT:
1. readiness answers 503, so a load balancer stops sending;
2. the listening socket closes (no new connections);
3. requests in flight finish, bounded by RELAY_SHUTDOWN_TIMEOUT_S: each either
   got Kafka's acknowledgement and its 2xx, or its 503;
4. the producer flushes and closes (the app's cleanup context, run last by aiohttp);
5. the facts follower stops, the fact publisher and the upstream session close;
6. the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import aiohttp
from aiohttp import web
from aiokafka.errors import KafkaError

from relay.clock import SystemClock
from relay.config import Settings
from relay.errors import KafkaUnavailable
from relay.facts import FactPublisher, Facts, create_facts_topic
from relay.ingest.app import SHUTTING_DOWN, make_app
from relay.ingest.slow_clients import GuardedAppRunner
from relay.producer import KafkaProducer
from relay.tenants import load_tenants
from relay.topics import create_missing_topics
from relay.upstream import Tokens, UpstreamClient

__all__ = ["runner_for", "serve"]

log = logging.getLogger("relay.ingest")


def runner_for(app: web.Application, settings: Settings) -> web.AppRunner:
    """The runner with the front door's connection bounds: header sizes, the time to
    send a request head, idle keep-alive."""
    return GuardedAppRunner(
        app,
        head_timeout=settings.header_timeout_s,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout_s,
        keepalive_timeout=settings.keepalive_timeout_s,
        max_line_size=settings.max_header_bytes,
        max_field_size=settings.max_header_bytes,
    )


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT. Raises ``KafkaUnavailable`` if Kafka is down at start."""
    tenants = load_tenants(settings)
    if tenants.open:
        log.warning(
            "no RELAY_TENANTS_FILE: one open tenant, event requests need no key "
            "(fine on a laptop, not in production)",
            extra={"tenant": settings.tenant},
        )
    await create_missing_topics(settings, tenants.topics(settings))
    await create_facts_topic(settings)
    producer = KafkaProducer(
        settings.kafka_bootstrap,
        linger_ms=settings.kafka_linger_ms,
        probe_interval=settings.kafka_probe_interval_s,
    )
    clock = SystemClock()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
    upstream = {
        name: UpstreamClient(
            session,
            settings.upstream_url,
            Tokens(
                session,
                settings.upstream_url,
                tenant.upstream_token,
                tenant.upstream_secret,
                clock,
                settings.upstream_answer_timeout_s,
            ),
            settings.upstream_answer_timeout_s,
        )
        for name, tenant in tenants.by_name.items()
    }
    facts = Facts()
    publisher = FactPublisher(settings, clock)
    await publisher.start()
    stop_facts = asyncio.Event()
    follower = asyncio.create_task(facts.follow(settings, stop_facts), name="facts")
    app = make_app(
        settings,
        producer,
        clock=clock,
        tenants=tenants,
        facts=facts,
        upstream=upstream,
        publisher=publisher,
    )
    runner = runner_for(app, settings)
    try:
        await runner.setup()
    except KafkaUnavailable:
        await runner.cleanup()
        await _close(follower, stop_facts, publisher, session)
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = web.TCPSite(runner, settings.ingest_host, settings.ingest_port, backlog=4096)
        await site.start()
        log.info(
            "listening",
            extra={
                "url": f"http://{settings.ingest_host}:{settings.ingest_port}",
                "kafka": settings.kafka_bootstrap,
                "topic_prefix": settings.topic_prefix,
            },
        )
        await stop.wait()
        log.info("stopping: draining in-flight requests, then flushing the producer")
        app[SHUTTING_DOWN][0] = True
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()
        await _close(follower, stop_facts, publisher, session)
    log.info("stopped")


async def _close(
    follower: asyncio.Task[None],
    stop_facts: asyncio.Event,
    publisher: FactPublisher,
    session: aiohttp.ClientSession,
) -> None:
    stop_facts.set()
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError, KafkaError):
        await follower
    await publisher.stop()
    await session.close()
