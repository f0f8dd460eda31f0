"""POST /batch: many events, of any types, in one request.

Body ``{"events": [{"type": "play", "body": {...}, "idempotencyKey": "..."}, ...]}``:
1 to RELAY_BATCH_MAX_EVENTS items, at most RELAY_MAX_BATCH_BYTES as sent and once
decoded (the encodings of single events). The request as a whole is refused (4xx, or
429) before any item is looked at when its key, body or envelope is wrong, or when the
key's inbound limit has fewer tokens left than the batch has events: the limit counts
events, and a batch takes all of its tokens or none (429 + Retry-After, nothing
written; a batch larger than the key's burst could never pass: 413).

Otherwise each item is checked on its own, exactly as its type's endpoint checks a
single event (the event table, rights, Idempotency-Key as ``idempotencyKey``, appId):
a batch whose every item is in the strict form in one compiled pass
(relay/ingest/compiled.py), any other event by event; both feed the same stages,
and the answer is 200 with one result per item, in order: ``{"id": ...}`` (and the
``appId`` for /app-start) for an item durable on Kafka, the failure envelope for one
refused. Items to write go to the producer in their order, so items of one clientId
and type keep it on their partition; each waits for Kafka's acknowledgement, and one
not acknowledged within RELAY_PRODUCE_TIMEOUT_S (or over the in-flight bound) is
answered SERVICE_UNAVAILABLE: send it again (with its idempotencyKey, a retry is the
same event). When every item is answered SERVICE_UNAVAILABLE the batch is 503 +
Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from relay.clock import Clock
from relay.config import Settings
from relay.envelope import (
    Envelope,
    clip_of,
    new_event_id,
    record_key,
    v2_shared,
    with_event,
)
from relay.errors import InvalidEvent, NotWritten
from relay.events import BATCH_PATH, BY_NAME, Answer, EventType, format_timestamp, normalise
from relay.failures import failure_response
from relay.ingest.admission import Admission
from relay.ingest.answers import Answers
from relay.ingest.body import BadBody, parse_json, read_body
from relay.ingest.compiled import CheckedBatch, CompiledCheck
from relay.ingest.gate import Gate, Refused
from relay.ingest.handler import Responder
from relay.ingest.idempotency import BATCH_FIELD as ITEM_KEY
from relay.ingest.idempotency import HEADER as IDEMPOTENCY_HEADER
from relay.ingest.idempotency import (
    Accepted,
    Conflict,
    Idempotency,
    InvalidKey,
    digest,
    event_id,
    valid_key,
)
from relay.kafka.producer import Producer, Record
from relay.metrics import NO_TENANT, IngestMetrics, observe_many
from relay.tenants import Tenant, Tenants

__all__ = ["BatchHandler"]

_ITEM_FIELDS = frozenset({"type", "body", ITEM_KEY})
_OUTCOMES = {
    "VALIDATION_ERROR": "invalid",
    "INVALID_PARAMETERS": "invalid",
    "NO_STREAMING_RIGHTS": "no_rights",
    "SERVICE_UNAVAILABLE": "unavailable",
}

log = logging.getLogger("relay.ingest")

Result = dict[str, Any]


def _failure(code: str, message: str, field: str | None = None) -> Result:
    result: Result = {"success": False, "failureCode": code, "message": message}
    if field is not None:
        result["errorData"] = {"field": field}
    return result


def _from_response(response: web.Response) -> Result:
    """An item's result from the answer the single endpoint would give (a refusal)."""
    body = response.body
    if not isinstance(body, bytes):
        raise TypeError(f"an answer without a JSON body: {body!r}")
    result: Result = orjson.loads(body)
    return result


@dataclass(slots=True)
class _Item:
    """An item still in the running: checked, not yet answered. From either check:
    the compiled one gives no body dict (only what the record needs) and takes no
    item with a key, no /app-start and no batch for envelope v1."""

    index: int
    event_type: EventType
    client_id: bytes  # the record's key
    value: bytes | None  # the record's value, envelope v2 (the normalised body's JSON)
    clip_id: int | None
    timestamp_stamped: bool
    key: str | None = None  # idempotencyKey
    body: dict[str, Any] | None = None  # normalised (the Python check)
    sent: Any = None  # the body as sent, for the key's digest
    id: str | None = None
    envelope: Envelope | None = None  # for envelope v1 and /app-start
    app_answer: bytes | None = None


class BatchHandler:
    def __init__(
        self,
        *,
        settings: Settings,
        producer: Producer,
        metrics: IngestMetrics,
        in_flight: Admission,
        responder: Responder,
        gate: Gate,
        tenants: Tenants,
        answers: Answers,
        clock: Clock,
        idempotency: Idempotency,
        compiled: CompiledCheck | None,
    ) -> None:
        self._settings = settings
        # Envelope v1 needs each body as a dict: only the Python check gives one.
        self._compiled = compiled if settings.envelope_version == 2 else None
        self._producer = producer
        self._metrics = metrics
        self._in_flight = in_flight
        self._responder = responder
        self._gate = gate
        self._answers = answers
        self._clock = clock
        self._idempotency = idempotency
        self._topics = {
            (tenant, event_type.name): tenants.topic(settings, tenant, event_type.name)
            for tenant in tenants.by_name
            for event_type in BY_NAME.values()
        }
        self._outcomes = {
            outcome: metrics.batch_items.labels(outcome)
            for outcome in {*_OUTCOMES.values(), "accepted", "refused"}
        }
        self._checks = {
            True: metrics.batch_checks.labels("compiled"),
            False: metrics.batch_checks.labels("python"),
        }

    async def handle(self, request: web.Request) -> web.Response:
        started = self._clock.monotonic()
        admitted = self._gate.admit(request, events=0)
        if isinstance(admitted, Refused):
            return self._responder.answer(
                admitted.tenant or NO_TENANT, BATCH_PATH, started, _refused(admitted)
            )
        try:
            response = await self._handle(request, admitted)
        except ConnectionResetError:
            raise
        except Exception:  # a bug of ours: answered in the envelope, and counted
            log.exception("unexpected error answering a batch", extra={"path": BATCH_PATH})
            response = failure_response(
                500, "INTERNAL_ERROR", "the relay failed unexpectedly; retry later"
            )
        return self._responder.answer(admitted.name, BATCH_PATH, started, response)

    async def _handle(self, request: web.Request, tenant: Tenant) -> web.Response:
        settings = self._settings
        if IDEMPOTENCY_HEADER in request.headers:
            return failure_response(
                400,
                "INVALID_PARAMETERS",
                f"a batch takes no {IDEMPOTENCY_HEADER} header: give each event its own {ITEM_KEY}",
                field=IDEMPOTENCY_HEADER,
            )
        limit = settings.max_batch_bytes
        raw = await read_body(request.clone(client_max_size=limit), limit, settings.body_timeout_s)
        if isinstance(raw, BadBody):
            return raw.response()
        wall = self._clock.wall()
        received_at = datetime.fromtimestamp(wall, UTC)
        compiled = self._compiled
        checked = None
        if compiled is not None:  # a batch in the strict form, checked in one pass
            checked = compiled.check(raw, settings.batch_max_events, received_at, int(wall * 1000))
        events: list[Any] | CheckedBatch
        if checked is not None:
            events = checked
        else:
            parsed = _events(raw, settings.batch_max_events)
            if isinstance(parsed, web.Response):
                return parsed
            events = parsed
        refused = self._gate.charge(request, len(events))
        if refused is not None:
            return _refused(refused)
        self._metrics.batch_events.observe(len(events))
        self._checks[checked is not None].inc()
        results = await self._results(tenant, events, wall, received_at)
        counted: dict[str, int] = {}
        failures = [result["failureCode"] for result in results if "failureCode" in result]
        if len(failures) < len(results):
            counted["accepted"] = len(results) - len(failures)
        for code in failures:
            outcome = _OUTCOMES.get(code, "refused")
            counted[outcome] = counted.get(outcome, 0) + 1
        for outcome, count in counted.items():  # one locked update per outcome, not per item
            self._outcomes[outcome].inc(count)
        every_one_unavailable = len(failures) == len(results) and all(
            code == "SERVICE_UNAVAILABLE" for code in failures
        )
        if every_one_unavailable:
            return failure_response(
                503,
                "SERVICE_UNAVAILABLE",
                f"no event of the batch could be made durable ({results[0]['message']}); "
                "send it again later",
                retry_after=settings.retry_after_s,
            )
        return web.Response(
            body=orjson.dumps({"results": results}), content_type="application/json"
        )

    async def _results(
        self,
        tenant: Tenant,
        events: list[Any] | CheckedBatch,
        wall: float,
        received_at: datetime,
    ) -> list[Result]:
        """One result per event, in order; the stages in the single handler's order."""
        results: list[Result | None] = [None] * len(events)
        if isinstance(events, CheckedBatch):
            items = self._checked(events)
        else:
            items = []
            for index, event in enumerate(events):
                checked = self._check(index, event, received_at)
                if isinstance(checked, _Item):
                    items.append(checked)
                else:
                    results[index] = checked
        items = await self._rights(tenant, items, results)
        received = format_timestamp(received_at)  # one receive time for the whole batch
        if not isinstance(events, CheckedBatch):  # the compiled check's items have their
            # ids, and neither keys nor /app-starts: nothing to claim or learn for them
            for item in items:  # keys claimed only now: an item refused above claims none
                self._claim(tenant, item, wall, received, results)
            items = [item for item in items if results[item.index] is None]
            items = await self._app_starts(tenant, items, results)
        await self._write(tenant, items, received, results)
        return [result for result in results if result is not None]

    def _checked(self, batch: CheckedBatch) -> list[_Item]:
        """The compiled check's items; its stamped timestamps counted as ``_check``
        counts them, one update per type and reason."""
        stamped: dict[tuple[str, str], int] = {}
        items = []
        columns = zip(
            batch.types,
            batch.keys,
            batch.values,
            batch.clip_ids,
            batch.stamped,
            batch.ids,
            strict=True,
        )
        for index, (event_type, client_id, value, clip_id, because, id_) in enumerate(columns):
            if because is not None:
                reason = (event_type.name, because)
                stamped[reason] = stamped.get(reason, 0) + 1
            # By position (no key, body or body as sent: None): a keyword costs a third more.
            items.append(
                _Item(
                    index,
                    event_type,
                    client_id,
                    value,
                    clip_id,
                    because is not None,
                    None,
                    None,
                    None,
                    id_,
                )
            )
        for (type_name, because), count in stamped.items():
            self._metrics.timestamps_stamped.labels(type_name, because).inc(count)
        return items

    def _check(self, index: int, event: Any, received_at: datetime) -> _Item | Result:
        if not isinstance(event, dict):
            return _failure("INVALID_PARAMETERS", "an event must be a JSON object", "event")
        if not event.keys() <= _ITEM_FIELDS:  # a view's comparison: no set built
            name = sorted(set(event) - _ITEM_FIELDS)[0]
            return _failure(
                "INVALID_PARAMETERS",
                f"unknown field {name!r}; an event holds type, body and {ITEM_KEY}",
                name,
            )
        type_name = event.get("type")
        event_type = BY_NAME.get(type_name) if isinstance(type_name, str) else None
        if event_type is None:
            return _failure(
                "INVALID_PARAMETERS", f"type must be one of {', '.join(BY_NAME)}", "type"
            )
        key = event.get(ITEM_KEY)
        if key is not None:
            try:
                key = valid_key(key, ITEM_KEY)
            except InvalidKey as exc:
                return _failure("INVALID_PARAMETERS", str(exc), ITEM_KEY)
        sent = event.get("body")
        try:
            normal = normalise(
                event_type,
                sent,
                received_at,
                reject_unknown=self._settings.reject_unknown_fields,
            )
        except InvalidEvent as exc:
            return _failure(exc.failure_code, exc.message, exc.field)
        metrics = self._metrics
        if normal.unknown_fields:
            metrics.unknown_fields_dropped.labels(event_type.name).inc(len(normal.unknown_fields))
        if normal.stamped_because is not None:
            metrics.timestamps_stamped.labels(event_type.name, normal.stamped_because).inc()
        body = normal.body
        return _Item(
            index,
            event_type,
            record_key(body),
            orjson.dumps(body) if self._settings.envelope_version == 2 else None,
            clip_of(body),
            normal.timestamp_stamped,
            key,
            body,
            sent,
        )

    async def _rights(
        self, tenant: Tenant, items: list[_Item], results: list[Result | None]
    ) -> list[_Item]:
        """The items that may go on; the others answered as /play answers them. Unknown
        clips (RELAY_RIGHTS_UNKNOWN=deny) are checked together, not one by one."""
        unknown: list[_Item] = []
        passed: list[_Item] = []
        for item in items:
            if not item.event_type.rights_checked:
                passed.append(item)
                continue
            known = self._answers.known_refusal(tenant, _clip(item))
            if known is True:
                passed.append(item)
            elif known is False:
                unknown.append(item)
            else:
                results[item.index] = _from_response(known)
        if not unknown:  # the common case: passed is in the items' order already
            return passed
        checked = await asyncio.gather(
            *(self._answers.check_unknown(tenant, _clip(item)) for item in unknown)
        )
        for item, refusal in zip(unknown, checked, strict=True):
            if refusal is None:
                passed.append(item)
            else:
                results[item.index] = _from_response(refusal)
        passed.sort(key=lambda item: item.index)
        return passed

    def _claim(
        self,
        tenant: Tenant,
        item: _Item,
        wall: float,
        received_at: str,
        results: list[Result | None],
    ) -> None:
        """The item's id (and envelope, where one is needed), or its result when its
        key answers for it."""
        if item.id is not None:  # the compiled check's: no key, no envelope to make
            return
        type_name = item.event_type.name
        if item.key is None:
            id_ = new_event_id(int(wall * 1000))
        else:
            claim = self._idempotency.claim(tenant.name, type_name, item.key, digest(item.sent))
            if isinstance(claim, Conflict):
                results[item.index] = _failure(
                    "INVALID_PARAMETERS",
                    claim.message(ITEM_KEY),
                    ITEM_KEY,
                )
                return
            if claim is not None:  # acknowledged before: the same answer, nothing written
                results[item.index] = _accepted(claim)
                return
            id_ = event_id(tenant.name, type_name, item.client_id.decode(), item.key)
        item.id = id_
        version = self._settings.envelope_version
        if version == 1 or item.event_type.answer is Answer.APP_ID:
            if item.body is None:  # the compiled check takes neither
                raise RuntimeError(f"event {item.index} needs an envelope and has no body")
            item.envelope = Envelope(  # by position: a named tuple's keywords cost twice
                id_, type_name, tenant.name, received_at, item.timestamp_stamped, item.body, version
            )

    async def _app_starts(
        self, tenant: Tenant, items: list[_Item], results: list[Result | None]
    ) -> list[_Item]:
        """The items left to write; /app-starts get their answer (the appId) first."""
        starts = [item for item in items if item.event_type.answer is Answer.APP_ID]
        answered = await asyncio.gather(
            *(
                self._answers.app_start(
                    tenant,
                    item.event_type.path,
                    _envelope(item),
                    self._topics[tenant.name, item.event_type.name],
                )
                for item in starts
            )
        )
        for item, answer in zip(starts, answered, strict=True):
            if isinstance(answer, web.Response):
                results[item.index] = _from_response(answer)
            elif answer.event_id is not None:  # delivered to learn the appId, and written
                self._remember(tenant, item, Accepted(answer.event_id, answer.body))
                results[item.index] = _accepted(Accepted(answer.event_id, answer.body))
            else:
                item.app_answer = answer.body
        return [item for item in items if results[item.index] is None]

    async def _write(
        self, tenant: Tenant, items: list[_Item], received_at: str, results: list[Result | None]
    ) -> None:
        """Hands the items to Kafka in their order, each within the in-flight bound."""
        entered = self._in_flight.try_enter_many(len(items))  # the rest are refused
        for item in items[entered:]:
            results[item.index] = _failure(
                "SERVICE_UNAVAILABLE", "the relay is at its in-flight limit; retry later"
            )
        sending = items[:entered]
        topics, tenant_name = self._topics, tenant.name
        records = []
        shared: dict[tuple[str, bool], tuple[tuple[str, bytes], ...]] = {}  # by type, stamped
        for item in sending:
            type_name = item.event_type.name
            topic = topics[tenant_name, type_name]
            if item.value is None:  # envelope v1: the whole envelope is the value
                envelope = _envelope(item)
                records.append(Record(topic, envelope.key, envelope.encode(), envelope.headers()))
                continue
            stamped = item.timestamp_stamped
            common = shared.get((type_name, stamped))
            if common is None:
                common = v2_shared(type_name, tenant_name, received_at, stamped)
                shared[type_name, stamped] = common
            headers = with_event(common, _id(item), item.clip_id)
            records.append(Record(topic, item.client_id, item.value, headers))
        started = self._clock.monotonic()
        try:
            outcomes = await self._producer.send_all(records, self._settings.produce_timeout_s)
        finally:
            self._in_flight.leave_many(len(sending))
        took = self._clock.monotonic() - started
        failed: dict[str, int] = {}
        ambiguous: dict[str, int] = {}  # failed, but Kafka had the record: may be written
        acknowledged: dict[str, int] = {}
        for item, failure in zip(sending, outcomes, strict=True):
            type_name = item.event_type.name
            if failure is not None:
                failed[type_name] = failed.get(type_name, 0) + 1
                if not isinstance(failure, NotWritten):
                    ambiguous[type_name] = ambiguous.get(type_name, 0) + 1
                results[item.index] = _failure(
                    "SERVICE_UNAVAILABLE",
                    f"the event could not be made durable: {failure}; retry later",
                )
                continue
            acknowledged[type_name] = acknowledged.get(type_name, 0) + 1
            if item.key is None and item.app_answer is None:  # nothing to remember
                results[item.index] = {"id": _id(item)}  # as _accepted would give it
                continue
            accepted = Accepted(_id(item), item.app_answer)
            self._remember(tenant, item, accepted)
            results[item.index] = _accepted(accepted)
        metrics = self._metrics
        for type_name, count in failed.items():
            metrics.produce_failures.labels(type_name).inc(count)
        for type_name, count in ambiguous.items():
            metrics.ambiguous_answers.labels(type_name).inc(count)
        for type_name, count in acknowledged.items():
            # Each of them waited ``took`` for its acknowledgement: observed once per event,
            # as the single endpoint does, in one update per batch and type.
            observe_many(metrics.produce_seconds.labels(type_name), took, count)

    def _remember(self, tenant: Tenant, item: _Item, accepted: Accepted) -> None:
        if item.key is not None:
            self._idempotency.accepted(tenant.name, item.event_type.name, item.key, accepted)


def _envelope(item: _Item) -> Envelope:
    if item.envelope is None:  # _claim gives one to every item that needs one
        raise RuntimeError(f"event {item.index} reached Kafka without an envelope")
    return item.envelope


def _id(item: _Item) -> str:
    if item.id is None:  # _claim gives one to every item it leaves in the running
        raise RuntimeError(f"event {item.index} reached Kafka without an id")
    return item.id


def _clip(item: _Item) -> int:
    if item.clip_id is None:  # the table makes clipId a required integer where rights apply
        raise RuntimeError(f"a {item.event_type.name} event without a clip id")
    return item.clip_id


def _events(raw: bytes, max_events: int) -> list[Any] | web.Response:
    """The body's events, or the answer refusing the whole batch."""
    body = parse_json(raw)
    if isinstance(body, BadBody):
        return body.response()
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list) or set(body) != {"events"}:
        return failure_response(
            400,
            "INVALID_PARAMETERS",
            'the body must be {"events": [...]}, a JSON object with that one field',
            field="events",
        )
    if not 1 <= len(events) <= max_events:
        return failure_response(
            413 if events else 400,
            "INVALID_PARAMETERS",
            f"a batch holds 1 to {max_events} events, not {len(events)}",
            field="events",
        )
    return events


def _accepted(answer: Accepted) -> Result:
    result: Result = {"id": answer.event_id}
    if answer.app_answer is not None:
        app = orjson.loads(answer.app_answer)
        if isinstance(app, dict) and "appId" in app:
            result["appId"] = app["appId"]
        else:  # the upstream named no appId: its own answer, as the single endpoint gives it
            result["answer"] = app
    return result


def _refused(refused: Refused) -> web.Response:
    return failure_response(
        refused.status,
        refused.code,
        refused.message,
        field=refused.field,
        retry_after=refused.retry_after,
    )
