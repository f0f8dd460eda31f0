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
   fact publisher and the upstream connections close;
7. the process exits 0.

As a worker of a group (``relay ingest --workers N``, ``relay.ingest.workers``) the
same order runs in every worker when the supervisor relays the signal; a worker also
listens with SO_REUSEPORT, admits its share of each key's inbound limit, serves its
own registry to the supervisor on a unix socket (closed last, so the drain is
counted) and answers /metrics with the group's merged exposition.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import os
import resource
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from relay.clock import SystemClock
from relay.config import ConfigError, Settings
from relay.errors import KafkaUnavailable
from relay.facts import FactPublisher, Facts, create_facts_topic
from relay.http1 import Http1Pool
from relay.ingest.app import (
    INGEST_METRICS,
    SHUTTING_DOWN,
    make_admin_app,
    make_app,
    make_local_app,
)
from relay.ingest.facts_reader import FactsReader
from relay.ingest.listener import GreedyTCPSite
from relay.ingest.seat import (
    WorkerSeat,
    fetch_exposition,
    group_socket,
    group_unready,
    worker_socket,
)
from relay.ingest.slow_clients import GuardedAppRunner
from relay.kafka.memory import MemoryProducer
from relay.kafka.options import producer_options
from relay.kafka.producer import KafkaProducer, Producer, Record
from relay.limits import raise_open_files_limit, settle_collector
from relay.metrics import WorkerGroupMetrics
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


async def serve(settings: Settings, seat: WorkerSeat | None = None) -> None:
    """Run until SIGTERM/SIGINT (as the worker ``seat`` of a group, when given). Raises
    ``KafkaUnavailable`` if Kafka is down at start."""
    if seat is not None:
        _die_with_parent()
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
    producer = _producer(settings)
    clock = SystemClock()
    registry = CollectorRegistry()
    if seat is None:  # a group's supervisor reports these for its workers
        WorkerGroupMetrics.create(registry, 1).workers.set(1)
    upstream_pool = Http1Pool(settings.upstream_url, limit=64, clock=clock)
    upstream = {
        name: UpstreamClient(
            upstream_pool,
            Tokens(
                upstream_pool,
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
        registry=registry,
        inbound_share=seat.share if seat is not None else 1.0,
        exposition=_group_exposition(seat) if seat is not None else None,
        group_unready=_group_unready(seat) if seat is not None else None,
    )
    # Readiness waits for the facts read to their end; a failing reader is reported
    # and read again while ingest serves what it knows (relay/ingest/facts_reader.py).
    stop_facts = asyncio.Event()
    reader = FactsReader(facts, settings, app[INGEST_METRICS], clock)
    follower = asyncio.create_task(reader.run(stop_facts), name="facts")
    runner = runner_for(app, settings)
    admin_runner: web.AppRunner | None = None
    own_runner: web.AppRunner | None = None
    reuse_port = seat is not None
    try:
        await runner.setup()
    except KafkaUnavailable:
        await runner.cleanup()
        await _close(follower, stop_facts, publisher, upstream_pool)
        raise
    # Meant for the tail latency under many connections, and the CPU per request.
    settle_collector(settings.gc_young_threshold)
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
                web.TCPSite(
                    admin_runner, settings.ingest_host, settings.admin_port, reuse_port=reuse_port
                ),
                "RELAY_ADMIN_PORT",
            )
        await _listen(
            GreedyTCPSite(
                runner,
                settings.ingest_host,
                settings.ingest_port,
                backlog=4096,
                reuse_port=reuse_port,
            ),
            "RELAY_INGEST_PORT",
        )
        if seat is not None:  # the socket's existence tells the supervisor "listening"
            own_runner = web.AppRunner(make_local_app(app), access_log=None)
            await own_runner.setup()
            await web.UnixSite(own_runner, str(worker_socket(seat.run_dir, seat.slot))).start()
        log.info(
            "listening",
            extra={
                "url": f"http://{settings.ingest_host}:{settings.ingest_port}",
                "kafka": settings.kafka_bootstrap,
                "topic_prefix": settings.topic_prefix,
                "admin_port": settings.admin_port,
                "worker": seat.slot if seat is not None else None,
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
        await _close(follower, stop_facts, publisher, upstream_pool)
        if own_runner is not None:
            await own_runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped")


def _producer(settings: Settings) -> Producer:
    if settings.ingest_producer == "memory":
        if not _loopback(settings.ingest_host):
            raise ConfigError(
                "RELAY_INGEST_PRODUCER=memory loses every event: only on a loopback address"
            )
        log.warning("RELAY_INGEST_PRODUCER=memory: events are not written anywhere (benchmarks)")
        return _Discarding()
    return KafkaProducer(
        producer_options(settings),
        linger_ms=settings.kafka_linger_ms,
        queued_records=settings.kafka_queued_records,
        probe_interval=settings.kafka_probe_interval_s,
    )


class _Discarding(MemoryProducer):
    """The in-memory producer keeping nothing: a benchmark of the front door alone
    must not grow its memory with every event."""

    async def send(self, record: Record, ack_timeout: float) -> None:
        await super().send(record, ack_timeout)
        self.records.clear()


def _group_exposition(seat: WorkerSeat) -> Callable[[], Awaitable[bytes]]:
    """The group's metrics, merged by the supervisor, whichever worker is scraped."""

    async def exposition() -> bytes:
        return (await fetch_exposition(group_socket(seat.run_dir))).encode()

    return exposition


def _group_unready(seat: WorkerSeat) -> Callable[[], Awaitable[str | None]]:
    """Why the group is not ready (None: it is), as the supervisor last found it: the
    kernel may hand the next connection to any listening worker."""

    async def unready() -> str | None:
        return group_unready(seat.run_dir)

    return unready


def _die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the supervisor dies (even by kill -9): a worker
    must not hold the port alone, unsupervised. Linux only (prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


async def _listen(site: web.BaseSite, variable: str) -> None:
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
    upstream_pool: Http1Pool,
) -> None:
    stop_facts.set()
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError, KafkaUnavailable):
        await follower
    await publisher.stop()
    await upstream_pool.close()
