"""The front door described as OpenAPI 3.1, generated from the event table.

Nothing here names a field or an event type: adding a row to relay/events.py adds
its path, body schema and answers to ``GET /openapi.json``.
"""

from __future__ import annotations

from typing import Any

from relay import __version__
from relay.events import (
    EVENT_TYPES,
    MAX_ID,
    MAX_ID_DIGITS,
    MAX_TIMESTAMP_LENGTH,
    METHODS,
    Answer,
    EventType,
    Field,
    Kind,
)
from relay.failures import FAILURE_CODES

__all__ = ["openapi"]

_FAILURE = {"$ref": "#/components/schemas/Failure"}


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


def _schema(field: Field) -> dict[str, Any]:
    kind = field.kind
    if kind in (Kind.CLIENT_ID, Kind.TEXT):
        return {"type": "string", "minLength": field.min_length, "maxLength": field.max_length}
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
                {"type": "string", "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$"},
            ]
        }
    if kind is Kind.METHOD:
        return {"type": "string", "enum": list(METHODS), "description": "Any letter case."}
    if kind is Kind.TIMESTAMP:
        return {"type": "string", "format": "date-time", "maxLength": MAX_TIMESTAMP_LENGTH}
    return {"type": "string", "pattern": "^[A-Za-z]{2}$"}  # Kind.COUNTRY


def _body(event_type: EventType) -> dict[str, Any]:
    properties = {}
    for field in event_type.fields:
        schema = _schema(field)
        if field.description:
            schema["description"] = field.description
        properties[field.name] = schema
    return {
        "type": "object",
        "properties": properties,
        "required": [field.name for field in event_type.fields if field.required],
        "description": "Fields not listed are dropped (or refused with "
        "RELAY_REJECT_UNKNOWN_FIELDS=true).",
    }


def _failure(description: str, retry_after: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _FAILURE}},
    }
    if retry_after:
        answer["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return answer


def _operation(event_type: EventType) -> dict[str, Any]:
    event_id = {"X-Relay-Event-Id": {"schema": {"type": "string", "format": "uuid"}}}
    if event_type.answer is Answer.APP_ID:
        accepted = {
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
    else:
        accepted = {"204": {"description": "Durable on Kafka.", "headers": event_id}}
    if event_type.name == "play":
        accepted["200"] = _failure("The clip is known not playable (NO_STREAMING_RIGHTS).")
    return {
        "summary": event_type.description,
        "operationId": event_type.name.replace("-", "_"),
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _body(event_type)}},
        },
        "responses": {
            **accepted,
            "400": _failure(
                "VALIDATION_ERROR or INVALID_PARAMETERS, errorData.field names it (a body "
                "that is not what its Content-Encoding says: Content-Encoding)."
            ),
            "401": _failure(
                "MISSING_HEADERS or AUTHENTICATION_FAILED (also for two different keys in "
                "Authorization and X-Relay-Key)."
            ),
            "413": _failure("The body is over the limit, as sent or once decoded."),
            "415": _failure(
                "The body is not application/json, or its Content-Encoding is not one of "
                "gzip, deflate, br, zstd or identity."
            ),
            "429": _failure("Over the key's inbound limit.", retry_after=True),
            "503": _failure("Not durable: retry after Retry-After.", retry_after=True),
        },
    }


def openapi(server_url: str = "http://127.0.0.1:8080") -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "relay: the Clips API event tracking front door",
            "version": __version__,
            "description": "The upstream's own event endpoints; a 2xx means the event is "
            "durable and will reach the upstream.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"relayKey": []}],
        "paths": {event_type.path: {"post": _operation(event_type)} for event_type in EVENT_TYPES},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "relayKey": {"type": "apiKey", "in": "header", "name": "X-Relay-Key"},
            },
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
