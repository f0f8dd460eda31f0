"""The ingest application: routes from the event table, health, readiness, metrics.

Built by a factory so that tests choose the producer, clock and registry. No
middleware sits on the hot path: unknown paths and wrong methods are routes of
their own that answer with the failure envelope.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

# The module, not the function: relay.openapi reads constants from relay.ingest, whose
# package imports this module, so ``openapi`` may not be defined yet at import time.
from relay import openapi as _document
from relay.clock import Clock, SystemClock
from relay.config import Settings
from relay.deadlines import Deadlines
from relay.events import BATCH_PATH, EVENT_TYPES
from relay.facts import FactPublisher, Facts
from relay.failures import failure_response
from relay.ingest.admission import Admission
from relay.ingest.answers import Answers
from relay.ingest.batch import BatchHandler
from relay.ingest.compiled import CompiledCheck
from relay.ingest.cors import Cors
from relay.ingest.gate import Gate
from relay.ingest.handler import EventHandler, Responder
from relay.ingest.idempotency import Idempotency
from relay.ingest.upstream_budget import rates_by_tenant
from relay.kafka.producer import Producer
from relay.metrics import NO_TENANT, IngestMetrics
from relay.tenants import Tenants, load_tenants
from relay.topics import TopicCheck
from relay.upstream import UpstreamClient

__all__ = [
    "FACTS",
    "INGEST_METRICS",
    "PRODUCER",
    "SHUTTING_DOWN",
    "make_admin_app",
    "make_app",
    "make_local_app",
]

PRODUCER = web.AppKey("producer", Producer)
FACTS = web.AppKey("facts", Facts)
SHUTTING_DOWN = web.AppKey("shutting_down", list[bool])
_REGISTRY = web.AppKey("registry", CollectorRegistry)
INGEST_METRICS = web.AppKey("ingest_metrics", IngestMetrics)
_EXPOSITION: web.AppKey[Callable[[], Awaitable[bytes]]] = web.AppKey("exposition")
# A worker of a group: None when every worker of the group is ready, else why not.
_GROUP_UNREADY: web.AppKey[Callable[[], Awaitable[str | None]]] = web.AppKey("group_unready")


def make_app(
    settings: Settings,
    producer: Producer,
    *,
    registry: CollectorRegistry | None = None,
    clock: Clock | None = None,
    manage_producer: bool = True,
    tenants: Tenants | None = None,
    facts: Facts | None = None,
    upstream: Mapping[str, UpstreamClient] | None = None,
    publisher: FactPublisher | None = None,
    admin_routes: bool = True,
    topic_check: TopicCheck | None = None,
    inbound_share: float = 1.0,
    exposition: Callable[[], Awaitable[bytes]] | None = None,
    group_unready: Callable[[], Awaitable[str | None]] | None = None,
) -> web.Application:
    """The front door. With ``manage_producer`` the app starts and stops the producer
    (after in-flight requests finished: aiohttp runs cleanup contexts last). Without
    ``admin_routes``, /metrics and health are left to ``make_admin_app`` (another port)
    and the public port serves the event endpoints and /openapi.json only.
    ``inbound_share``: this process's part of each key's inbound limit (a worker of a
    group: ``relay.ingest.gate``). ``exposition``: what /metrics answers (a worker's:
    its group's); the registry's own by default."""
    registry = registry if registry is not None else CollectorRegistry()
    clock = clock if clock is not None else SystemClock()
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[PRODUCER] = producer
    app[SHUTTING_DOWN] = [False]
    app[_REGISTRY] = registry
    app[_EXPOSITION] = exposition if exposition is not None else _own(registry)
    if group_unready is not None:
        app[_GROUP_UNREADY] = group_unready
    tenants = tenants if tenants is not None else load_tenants(settings)
    metrics = IngestMetrics.create(registry, list(tenants.by_name))
    app[INGEST_METRICS] = metrics
    metrics.kafka_ready.set_function(lambda: 1.0 if producer.ready else 0.0)
    if topic_check is not None:
        topic_check.record(metrics.topic_under_replicated)
    gate = Gate(tenants, clock, inbound_share)
    if facts is None:  # nothing to read (tests, mostly): configured appIds only
        facts = Facts.for_settings(settings, clock)
        facts.loaded = True
    app[FACTS] = facts
    metrics.rights_cache_size.set_function(lambda: float(facts.size()))
    rates = rates_by_tenant(tenants.by_name, settings.ingest_upstream_rps, clock)
    answers = Answers(settings, facts, upstream or {}, rates, publisher, producer, metrics, clock)
    admission = Admission(settings.max_in_flight, settings.max_waiting, metrics, clock)
    deadlines = Deadlines(clock)
    idempotency = Idempotency(settings.idempotency_window_s, settings.idempotency_max_keys, clock)
    compiled = CompiledCheck()  # the event table's, for single events and batches alike
    responder = Responder(metrics, clock, closing=app[SHUTTING_DOWN])
    paths = [event_type.path for event_type in EVENT_TYPES]
    cors = Cors(tenants, settings.cors_max_age_s, paths, _method_not_allowed)
    if cors.any_origin_allowed:  # else the hook adds nothing: spare every answer its call
        app.on_response_prepare.append(cors.on_response_prepare)
    for event_type in EVENT_TYPES:
        handler = EventHandler(
            event_type,
            settings=settings,
            producer=producer,
            metrics=metrics,
            admission=admission,
            deadlines=deadlines,
            responder=responder,
            gate=gate,
            tenants=tenants,
            answers=answers,
            clock=clock,
            idempotency=idempotency,
            compiled=compiled,
        )
        app.router.add_post(event_type.path, handler.handle)
        app.router.add_route(
            "OPTIONS", event_type.path, _counted(responder, clock, cors.preflight, event_type.path)
        )
        app.router.add_route(
            "*", event_type.path, _counted(responder, clock, _method_not_allowed, event_type.path)
        )
    batch = BatchHandler(
        settings=settings,
        producer=producer,
        metrics=metrics,
        in_flight=admission,
        responder=responder,
        gate=gate,
        tenants=tenants,
        answers=answers,
        clock=clock,
        idempotency=idempotency,
        compiled=compiled,
    )
    app.router.add_post(BATCH_PATH, batch.handle)
    app.router.add_route(
        "*", BATCH_PATH, _counted(responder, clock, _method_not_allowed, BATCH_PATH)
    )
    if admin_routes:
        _add_admin_routes(app)
    app.router.add_get("/openapi.json", _openapi(settings))
    app.router.add_route("*", "/{tail:.*}", _counted(responder, clock, _not_found, "other"))

    if manage_producer:
        app.cleanup_ctx.append(_producer_lifecycle)
    return app


def make_admin_app(front_door: web.Application) -> web.Application:
    """/metrics, /healthz and /readyz of ``front_door``, for a port of their own
    (RELAY_ADMIN_PORT): the same registry, producer and shutdown flag."""
    admin = web.Application()
    admin[PRODUCER] = front_door[PRODUCER]
    admin[SHUTTING_DOWN] = front_door[SHUTTING_DOWN]
    admin[_REGISTRY] = front_door[_REGISTRY]
    admin[_EXPOSITION] = front_door[_EXPOSITION]
    admin[FACTS] = front_door[FACTS]
    if _GROUP_UNREADY in front_door:
        admin[_GROUP_UNREADY] = front_door[_GROUP_UNREADY]
    _add_admin_routes(admin)
    return admin


def make_local_app(front_door: web.Application) -> web.Application:
    """What a worker tells its supervisor: /metrics of its own registry and /readyz of
    itself alone (the admin routes without the group's view)."""
    local = web.Application()
    local[PRODUCER] = front_door[PRODUCER]
    local[SHUTTING_DOWN] = front_door[SHUTTING_DOWN]
    local[_REGISTRY] = front_door[_REGISTRY]
    local[FACTS] = front_door[FACTS]
    local[_EXPOSITION] = _own(front_door[_REGISTRY])
    _add_admin_routes(local)
    return local


def _add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)


async def _producer_lifecycle(app: web.Application) -> AsyncIterator[None]:
    producer = app[PRODUCER]
    await producer.start()
    yield
    await producer.stop()


def _counted(
    responder: Responder,
    clock: Clock,
    handler: Callable[[web.Request], Awaitable[web.Response]],
    path: str,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``handler`` with its answers counted under ``path`` (a route's, or "other" for
    unknown paths, so that clients cannot create label values)."""

    async def counted(request: web.Request) -> web.Response:
        started = clock.monotonic()
        return responder.answer(NO_TENANT, path, started, await handler(request))

    return counted


async def _method_not_allowed(request: web.Request) -> web.Response:
    response = failure_response(
        405, "INVALID_PARAMETERS", f"{request.method} is not allowed on {request.path}; use POST"
    )
    response.headers["Allow"] = "POST"
    return response


async def _not_found(request: web.Request) -> web.Response:
    return failure_response(404, "INVALID_PARAMETERS", f"no endpoint {request.path}; {_PATHS}")


_PATHS = (
    "events are POSTed to "
    + ", ".join(event_type.path for event_type in EVENT_TYPES)
    + f", or many at once to {BATCH_PATH}; GET /openapi.json describes them"
)


def _openapi(settings: Settings) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def document(request: web.Request) -> web.Response:
        return web.json_response(
            _document.openapi(
                f"{request.scheme}://{request.host}",
                reject_unknown=settings.reject_unknown_fields,
                batch_max_events=settings.batch_max_events,
            )
        )

    return document


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    reason = _unready(request.app)
    if reason is None and (group := request.app.get(_GROUP_UNREADY)) is not None:
        reason = await group()
    if reason is not None:
        return web.json_response({"ready": False, "reason": reason}, status=503)
    return web.json_response({"ready": True})


def _unready(app: web.Application) -> str | None:
    if app[SHUTTING_DOWN][0]:
        return "shutting down"
    if not app[PRODUCER].ready:
        return "Kafka unreachable"
    if not app[FACTS].loaded:  # /play would answer without the rights known
        return "facts not read yet"
    return None


def _own(registry: CollectorRegistry) -> Callable[[], Awaitable[bytes]]:
    async def exposition() -> bytes:
        return generate_latest(registry)

    return exposition


async def _metrics(request: web.Request) -> web.Response:
    body = await request.app[_EXPOSITION]()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
