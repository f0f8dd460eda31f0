"""The front door described as OpenAPI 3.1, generated from the event table.

Nothing here names a field or an event type: adding a row to relay/events.py adds
its path, body schema and answers to ``GET /openapi.json``. The body schemas say
exactly what ``relay.events.normalise`` takes, in both directions (anything the
schema accepts, the relay accepts, and nothing else): tests/test_openapi.py holds
them together rule by rule, tests/ingest/test_schemathesis.py against the live door.

Two tables describe what every event operation shares: ``_HEADERS`` (request header
parameters besides the key) and ``_FAILURES`` (every status the front door answers
with the failure envelope). A new header or answer is one entry in each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay import __version__
from relay.events import (
    BATCH_PATH,
    EVENT_TYPES,
    MAX_ID,
    MAX_ID_DIGITS,
    MAX_TIMESTAMP_LENGTH,
    METHOD_NEEDING_TIMESTAMP,
    METHODS,
    TEXT_REFUSED_CHARACTERS,
    TIMESTAMP_PATTERN,
    Answer,
    EventType,
    Field,
    Kind,
)
from relay.failures import FAILURE_CODES
from relay.ingest.idempotency import BATCH_FIELD, MAX_KEY_LENGTH
from relay.ingest.idempotency import HEADER as IDEMPOTENCY_KEY

__all__ = ["openapi"]

EVENT_ID_HEADER = "X-Relay-Event-Id"  # relay.ingest.handler sets it; no import cycle here
_FAILURE = {"$ref": "#/components/schemas/Failure"}
_RETRY_AFTER = {
    "Retry-After": {
        "required": True,
        "description": "Seconds to wait before sending the same request again.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


@dataclass(frozen=True, slots=True)
class _Header:
    """A request header every event operation takes (``components.parameters``)."""

    name: str
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True, slots=True)
class _Failure:
    """A status answered with the failure envelope (``components.responses``)."""

    status: int
    description: str
    headers: dict[str, Any] | None = None
    on_event_paths: bool = True  # False: answered elsewhere (other paths, other methods)
    on_batch: bool = True  # False: POST /batch answers it per item instead


# Request headers besides the key (which the security schemes describe).
_KEY_SCHEMA = {
    "type": "string",
    "pattern": f"^[!-~]{{1,{MAX_KEY_LENGTH}}}$",
    "maxLength": MAX_KEY_LENGTH,
}
_HEADERS: tuple[_Header, ...] = (
    _Header(
        IDEMPOTENCY_KEY,
        _KEY_SCHEMA,
        "Makes retries of one event safe: every request with the same key (and the same "
        "clientId) is the same event, with the same X-Relay-Event-Id, delivered upstream "
        "once. 1 to 128 visible ASCII characters; one per event, reused only to retry it "
        "with the same body.",
    ),
)

_FAILURES: tuple[_Failure, ...] = (
    _Failure(
        400,
        "VALIDATION_ERROR (a field is wrong) or INVALID_PARAMETERS (not an event: not JSON, "
        "not an object, an unknown field under RELAY_REJECT_UNKNOWN_FIELDS, or a body that "
        "is not what its Content-Encoding says); errorData.field names the part.",
    ),
    _Failure(
        401,
        "MISSING_HEADERS (no key) or AUTHENTICATION_FAILED (an unknown or revoked key, or "
        "two different credentials in Authorization and X-Relay-Key).",
    ),
    _Failure(
        403,
        "AUTHENTICATION_FAILED: a browser key without one of its tenant's allowed origins "
        "(errorData.field is Origin); or INVALID_PARAMETERS: a CORS preflight from an "
        "origin no tenant allows.",
    ),
    _Failure(404, "INVALID_PARAMETERS: no such path (any method).", on_event_paths=False),
    _Failure(
        405,
        "INVALID_PARAMETERS: an event path takes POST only.",
        headers={"Allow": {"required": True, "schema": {"const": "POST"}}},
        on_event_paths=False,
    ),
    _Failure(
        408,
        "INVALID_PARAMETERS: the body did not arrive within RELAY_BODY_TIMEOUT_S; the "
        "connection is closed.",
    ),
    _Failure(
        409,
        "INVALID_PARAMETERS: this Idempotency-Key came with another body within "
        "RELAY_IDEMPOTENCY_WINDOW_S (errorData.field is Idempotency-Key); nothing was written.",
        on_batch=False,
    ),
    _Failure(
        413,
        "INVALID_PARAMETERS: the body is over RELAY_MAX_BODY_BYTES (64 KiB by default; "
        "RELAY_MAX_BATCH_BYTES, 1 MiB, for /batch), as sent or once decoded; for /batch also "
        "more events than RELAY_BATCH_MAX_EVENTS, or than the key's inbound burst "
        "(errorData.field is events): split the batch.",
    ),
    _Failure(
        415,
        "INVALID_PARAMETERS: the body is not application/json (browsers may send it as "
        "text/plain in UTF-8), or its Content-Encoding is "
        "not one of gzip, deflate, br, zstd or identity.",
    ),
    _Failure(
        429,
        "SERVICE_UNAVAILABLE: over the key's inbound limit (which counts events: a /batch "
        "takes one token per event, all or none); nothing was written.",
        _RETRY_AFTER,
    ),
    _Failure(500, "INTERNAL_ERROR: a fault of the relay's own; nothing was written."),
    _Failure(
        503,
        "SERVICE_UNAVAILABLE: not made durable (Kafka, the in-flight bound, or an answer "
        "the upstream could not give in time): send it again. After a produce timeout the "
        "write may still land: send it again with the same Idempotency-Key. On /batch: "
        "every event of the batch was answered SERVICE_UNAVAILABLE.",
        _RETRY_AFTER,
    ),
)


def _digits_up_to(bound: int) -> str:
    """A pattern for the strings of digits the table takes as ids: 1 to ``bound``,
    leading zeros allowed (the schema's maxLength caps the length). Either the first
    non-zero digit has fewer digits after it than ``bound`` has, or exactly as many
    and the number is at most ``bound``, decided digit by digit."""
    text = str(bound)
    shorter = f"0*[1-9][0-9]{{0,{len(text) - 2}}}"
    same_length = []
    for position, digit in enumerate(text):
        lowest = 1 if position == 0 else 0
        if int(digit) > lowest:
            rest = len(text) - position - 1
            same_length.append(f"{text[:position]}[{lowest}-{int(digit) - 1}][0-9]{{{rest}}}")
    same_length.append(text)
    return f"^({shorter}|{'|'.join(same_length)})$"


def _any_case(*words: str) -> str:
    """A pattern for ``words`` in any ASCII letter case (the relay folds case)."""
    spelled = ("".join(f"[{c.upper()}{c.lower()}]" for c in word) for word in words)
    return f"^({'|'.join(spelled)})$"


def _schema(field: Field) -> dict[str, Any]:
    kind = field.kind
    if kind in (Kind.CLIENT_ID, Kind.TEXT):
        return {
            "type": "string",
            "minLength": field.min_length,
            "maxLength": field.max_length,
            "pattern": f"^[^{TEXT_REFUSED_CHARACTERS}]*$",
        }
    if kind is Kind.INTEGER:
        return {
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                {"type": "string", "pattern": _digits_up_to(MAX_ID), "maxLength": MAX_ID_DIGITS},
            ],
            "description": f"A number from 1 to {MAX_ID} (2^53 - 1, the largest integer a "
            "double holds exactly), or a string of its digits; sent on as a number.",
        }
    if kind is Kind.BOOLEAN:
        return {
            "oneOf": [
                {"type": "boolean"},
                {"type": "string", "pattern": _any_case("true", "false")},
            ]
        }
    if kind is Kind.METHOD:
        return {"type": "string", "pattern": _any_case(*METHODS), "description": "Any letter case."}
    if kind is Kind.TIMESTAMP:
        return {
            "type": "string",
            "format": "date-time",
            "pattern": TIMESTAMP_PATTERN,
            "maxLength": MAX_TIMESTAMP_LENGTH,
        }
    return {"type": "string", "pattern": "^[A-Za-z]{2}$"}  # Kind.COUNTRY


def _body(event_type: EventType, reject_unknown: bool) -> dict[str, Any]:
    properties = {}
    for field in event_type.fields:
        schema = _schema(field)
        if not field.required:  # null is taken as absent
            schema = {"anyOf": [schema, {"type": "null"}]}
        if field.description:
            schema["description"] = field.description
        properties[field.name] = schema
    body: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": [field.name for field in event_type.fields if field.required],
        "additionalProperties": not reject_unknown,
        "description": "Fields not listed are refused (RELAY_REJECT_UNKNOWN_FIELDS)."
        if reject_unknown
        else "Fields not listed are dropped.",
    }
    names = {field.name for field in event_type.fields}
    if {"method", "timestamp"} <= names:
        others = [method for method in METHODS if method != METHOD_NEEDING_TIMESTAMP]
        body["anyOf"] = [
            {"properties": {"method": {"pattern": _any_case(*others)}}},
            {"required": ["timestamp"], "properties": {"timestamp": {"type": "string"}}},
        ]
    return body


def _success(event_type: EventType) -> dict[str, Any]:
    event_id = {
        EVENT_ID_HEADER: {
            "required": True,
            "description": "The event's id (a UUIDv7), as the upstream receives it.",
            "schema": {"type": "string", "format": "uuid"},
        }
    }
    if event_type.answer is Answer.APP_ID:
        return {
            "200": {
                "description": "Durable on Kafka; the tenant's appId.",
                "headers": event_id,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"appId": {"type": "integer"}},
                            "required": ["appId"],
                        }
                    }
                },
            }
        }
    accepted = {"204": {"description": "Durable on Kafka.", "headers": event_id}}
    if event_type.rights_checked:
        accepted["200"] = {
            "description": "NO_STREAMING_RIGHTS: the clip is known not playable; stop playback. "
            "Nothing was written.",
            "content": {"application/json": {"schema": _FAILURE}},
        }
    return accepted


def _operation(event_type: EventType, reject_unknown: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": event_type.description,
        "operationId": event_type.name.replace("-", "_"),
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _body(event_type, reject_unknown)}},
        },
        "responses": {
            **_success(event_type),
            **{
                str(failure.status): {"$ref": f"#/components/responses/{failure.status}"}
                for failure in _FAILURES
                if failure.on_event_paths
            },
        },
    }
    if _HEADERS:
        operation["parameters"] = [
            {"$ref": f"#/components/parameters/{header.name}"} for header in _HEADERS
        ]
    return operation


def _batch_item(event_type: EventType, reject_unknown: bool) -> dict[str, Any]:
    return {
        "type": "object",
        "title": event_type.name,
        "properties": {
            "type": {"const": event_type.name},
            "body": _body(event_type, reject_unknown),
            BATCH_FIELD: {
                **_KEY_SCHEMA,
                "description": f"What {IDEMPOTENCY_KEY} is to {event_type.path}, for this event.",
            },
        },
        "required": ["type", "body"],
        "additionalProperties": False,
    }


def _batch_operation(reject_unknown: bool, max_events: int) -> dict[str, Any]:
    accepted = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "The event's id."},
            "appId": {"type": "integer", "description": "/app-start: the tenant's appId."},
            "answer": {
                "description": "/app-start when the upstream named no appId: its own answer."
            },
        },
        "required": ["id"],
        "additionalProperties": False,
    }
    return {
        "summary": "Many events of any types in one request, each checked and answered on its own.",
        "description": f"1 to {max_events} events (RELAY_BATCH_MAX_EVENTS), at most "
        "RELAY_MAX_BATCH_BYTES as sent and once decoded; the key's inbound limit counts "
        "events. Each event is checked as its type's endpoint checks it; an event that "
        "does not match its schema gets its refusal as its result, and the others go on. "
        "Events of one clientId and type are written in their order.",
        "operationId": "batch",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "events": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": max_events,
                                "items": {
                                    "oneOf": [
                                        _batch_item(event_type, reject_unknown)
                                        for event_type in EVENT_TYPES
                                    ]
                                },
                            }
                        },
                        "required": ["events"],
                        "additionalProperties": False,
                    }
                }
            },
        },
        "responses": {
            "200": {
                "description": "One result per event, in order: the id of each event durable "
                "on Kafka, the failure envelope of each refused (SERVICE_UNAVAILABLE: send "
                f"that one again, with its {BATCH_FIELD}; NO_STREAMING_RIGHTS: a /play "
                "whose clip is known not playable, not written).",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "results": {
                                    "type": "array",
                                    "items": {"oneOf": [accepted, _FAILURE]},
                                }
                            },
                            "required": ["results"],
                        }
                    }
                },
            },
            **{
                str(failure.status): {"$ref": f"#/components/responses/{failure.status}"}
                for failure in _FAILURES
                if failure.on_event_paths and failure.on_batch
            },
        },
    }


def _response(failure: _Failure) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": failure.description,
        "content": {"application/json": {"schema": _FAILURE}},
    }
    if failure.headers:
        response["headers"] = failure.headers
    return response


def openapi(
    server_url: str = "http://127.0.0.1:8080",
    *,
    reject_unknown: bool = False,
    batch_max_events: int = 500,
) -> dict[str, Any]:
    """The document; ``reject_unknown`` is RELAY_REJECT_UNKNOWN_FIELDS,
    ``batch_max_events`` RELAY_BATCH_MAX_EVENTS."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "relay: the Clips API event tracking front door",
            "version": __version__,
            "description": "The upstream's own event endpoints; a 2xx means the event is "
            "durable and will reach the upstream. Every refusal is the upstream's failure "
            "envelope (components.responses): other paths answer 404, other methods on an "
            "event path 405.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"relayKey": []}],
        "paths": {
            **{
                event_type.path: {"post": _operation(event_type, reject_unknown)}
                for event_type in EVENT_TYPES
            },
            BATCH_PATH: {"post": _batch_operation(reject_unknown, batch_max_events)},
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The relay key as Authorization: Bearer <key>.",
                },
                "relayKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Relay-Key",
                    "description": "The relay key; never a different one from Authorization.",
                },
            },
            "parameters": {
                header.name: {
                    "name": header.name,
                    "in": "header",
                    "required": False,
                    "description": header.description,
                    "schema": header.schema,
                }
                for header in _HEADERS
            },
            "responses": {str(failure.status): _response(failure) for failure in _FAILURES},
            "schemas": {
                "Failure": {
                    "type": "object",
                    "properties": {
                        "success": {"const": False},
                        "failureCode": {"type": "string", "enum": list(FAILURE_CODES)},
                        "message": {"type": "string"},
                        "errorData": {
                            "type": "object",
                            "properties": {"field": {"type": "string"}},
                        },
                    },
                    "required": ["success", "failureCode"],
                }
            },
        },
    }
