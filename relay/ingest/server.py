"""Running ingest as a process, and stopping it without losing an accepted event.

Shutdown order at SIGTERM or SIGINT:
1. readiness answers 503 at once, so a load balancer (or Kubernetes' endpoints)
   stops sending;
2. for RELAY_SHUTDOWN_GRACE_S the listener still accepts and answers, every answer
   with ``Connection: close``, so that requests already routed here, and kept-alive
   connections, are served rather than refused while the balancer catches up;
3. the listening socket closes (no new connections);
4. requests in flight finish, bounded by RELAY_SHUTDOWN_TIMEOUT_S: each either
   got Kafka's acknowledgement and its 2xx, or its 503;
5. the producer flushes and closes (the app's cleanup context, run last by aiohttp);
6. the admin port (RELAY_ADMIN_PORT, when set) closes, the facts reader stops, the
   fact publisher and the upstream session close;
7. the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import resource
import signal

import aiohttp
from aiohttp import web

from relay.clock import SystemClock
from relay.config import ConfigError, Settings
from relay.errors import KafkaUnavailable
from relay.facts import FactPublisher, Facts, create_facts_topic
from relay.ingest.app import INGEST_METRICS, SHUTTING_DOWN, make_admin_app, make_app
from relay.ingest.facts_reader import FactsReader
from relay.ingest.slow_clients import GuardedAppRunner
from relay.kafka.options import producer_options
from relay.kafka.producer import KafkaProducer
from relay.limits import raise_open_files_limit
from relay.tenants import load_tenants
from relay.topics import create_missing_topics
from relay.upstream import Tokens, UpstreamClient

__all__ = ["runner_for", "serve"]

log = logging.getLogger("relay.ingest")


def runner_for(app: web.Application, settings: Settings) -> web.AppRunner:
    """The runner with the front door's connection bounds: header sizes, the time to
    send a request head, idle keep-alive. Bodies reach the handler as sent: it decodes
    their Content-Encoding itself (``relay.ingest.encodings``)."""
    return GuardedAppRunner(
        app,
        head_timeout=settings.header_timeout_s,
        auto_decompress=False,
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
    if tenants.open and not settings.open_mode and not _loopback(settings.ingest_host):
        raise ConfigError(
            f"refusing to serve {settings.ingest_host} without RELAY_TENANTS_FILE: anyone "
            "could send events; set RELAY_TENANTS_FILE, or RELAY_OPEN_MODE=1 if you mean it"
        )
    _raise_open_files_limit()
    if tenants.open:
        log.warning(
            "no RELAY_TENANTS_FILE: one open tenant, event requests need no key "
            "(fine on a laptop, not in production)",
            extra={"tenant": settings.tenant},
        )
    checked = await create_missing_topics(settings, tenants.topics(settings))
    checked |= await create_facts_topic(settings)
    producer = KafkaProducer(
        producer_options(settings),
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
    facts = Facts.for_settings(settings, clock)
    publisher = FactPublisher(settings, clock)
    await publisher.start()
    app = make_app(
        settings,
        producer,
        clock=clock,
        tenants=tenants,
        facts=facts,
        upstream=upstream,
        publisher=publisher,
        admin_routes=settings.admin_port is None,
        topic_check=checked,
    )
    # Readiness waits for the facts read to their end; a failing reader is reported
    # and read again while ingest serves what it knows (relay/ingest/facts_reader.py).
    stop_facts = asyncio.Event()
    reader = FactsReader(facts, settings, app[INGEST_METRICS], clock)
    follower = asyncio.create_task(reader.run(stop_facts), name="facts")
    runner = runner_for(app, settings)
    admin_runner: web.AppRunner | None = None
    try:
        await runner.setup()
    except KafkaUnavailable:
        await runner.cleanup()
        await _close(follower, stop_facts, publisher, session)
        raise
    # What start made (modules, the producer, tenants, facts) lives as long as the
    # process: out of the collector's generations, full collections under load walk only
    # what requests allocate (meant for the tail latency under many connections).
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    hurry = asyncio.Event()  # a second signal: skip the rest of the grace period

    def on_signal() -> None:
        if stop.is_set():
            hurry.set()
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    try:
        # The admin port first: a public port must not take traffic it cannot report on.
        if settings.admin_port is not None:
            admin_runner = web.AppRunner(make_admin_app(app), handle_signals=False, access_log=None)
            await admin_runner.setup()
            await _listen(
                web.TCPSite(admin_runner, settings.ingest_host, settings.admin_port),
                "RELAY_ADMIN_PORT",
            )
        await _listen(
            web.TCPSite(runner, settings.ingest_host, settings.ingest_port, backlog=4096),
            "RELAY_INGEST_PORT",
        )
        log.info(
            "listening",
            extra={
                "url": f"http://{settings.ingest_host}:{settings.ingest_port}",
                "kafka": settings.kafka_bootstrap,
                "topic_prefix": settings.topic_prefix,
                "admin_port": settings.admin_port,
            },
        )
        await stop.wait()
        app[SHUTTING_DOWN][0] = True
        log.info(
            "stopping: not ready; serving through the grace period, then draining",
            extra={"grace_s": settings.shutdown_grace_s},
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.shutdown_grace_s):
                await hurry.wait()
        log.info("stopping: listener closed; draining in-flight requests, then flushing")
    finally:
        # Signals stay handled until the end: a second one must not kill the drain.
        await runner.cleanup()
        if admin_runner is not None:
            await admin_runner.cleanup()
        await _close(follower, stop_facts, publisher, session)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped")


async def _listen(site: web.TCPSite, variable: str) -> None:
    """Start listening; a port in use (or not ours to take) is the user's to fix."""
    try:
        await site.start()
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {site.name}: {exc.strerror or exc}; set {variable} to a free port"
        ) from exc


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def _raise_open_files_limit() -> None:
    soft = raise_open_files_limit()
    if soft != resource.RLIM_INFINITY and soft < 65536:
        log.warning(
            "few open files allowed: each connection takes one",
            extra={"limit": soft, "advice": "raise the hard nofile limit to 65536 or more"},
        )


async def _close(
    follower: asyncio.Task[None],
    stop_facts: asyncio.Event,
    publisher: FactPublisher,
    session: aiohttp.ClientSession,
) -> None:
    stop_facts.set()
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError, KafkaUnavailable):
        await follower
    await publisher.stop()
    await session.close()
