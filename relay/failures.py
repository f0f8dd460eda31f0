"""The upstream's failure envelope, which the front door and the sandbox both answer with.

``{"success": false, "failureCode": ..., "message": ..., "errorData": ...}``;
``failureCode`` is always present (shared/upstream/UPSTREAM.md).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

__all__ = [
    "DISPOSITIONS",
    "EXPECTED_REFUSALS",
    "FAILURE_CODES",
    "Disposition",
    "failure_body",
    "failure_response",
]


class Disposition(enum.Enum):
    """What the forwarder does with an event the upstream answered with a failure code."""

    RETRY = "retry"  # transient: back off and send again
    PERMANENT = "permanent"  # the event itself is refused: dead-letter it
    REAUTHENTICATE = "reauthenticate"  # our credentials: refresh once, then pause, never DLQ


# The upstream's codes and what each means for delivery. The vendor documents retry
# guidance for SERVICE_UNAVAILABLE and NETWORK_ERROR only; INTERNAL_ERROR and
# ACR_CLOUD_ERROR (a failing dependency) are treated as transient too, ACR_CLOUD_CONFIG_ERROR
# (a configuration problem) as permanent.
DISPOSITIONS: Mapping[str, Disposition] = {
    "AUTHENTICATION_FAILED": Disposition.REAUTHENTICATE,
    "MISSING_HEADERS": Disposition.REAUTHENTICATE,
    "SERVICE_UNAVAILABLE": Disposition.RETRY,
    "INTERNAL_ERROR": Disposition.RETRY,
    "NETWORK_ERROR": Disposition.RETRY,
    "ACR_CLOUD_ERROR": Disposition.RETRY,
    "ACR_CLOUD_CONFIG_ERROR": Disposition.PERMANENT,
    "VALIDATION_ERROR": Disposition.PERMANENT,
    "INVALID_PARAMETERS": Disposition.PERMANENT,
    "NO_STREAMING_RIGHTS": Disposition.PERMANENT,
    "CLIP_NOT_FOUND": Disposition.PERMANENT,
    "TRACK_NOT_FOUND": Disposition.PERMANENT,
    "COLLECTION_NOT_FOUND": Disposition.PERMANENT,
}
FAILURE_CODES = tuple(DISPOSITIONS)

# Permanent answers that are part of normal operation (rights come and go), not a sign
# of a broken deployment: they are dead-lettered but never count towards the DLQ limit.
EXPECTED_REFUSALS = frozenset({"NO_STREAMING_RIGHTS"})


def failure_body(code: str, message: str, error_data: Mapping[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"success": False, "failureCode": code, "message": message}
    if error_data is not None:
        body["errorData"] = error_data
    return orjson.dumps(body)


def failure_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    retry_after: int | None = None,
) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.Response(
        status=status,
        body=failure_body(code, message, {"field": field} if field is not None else None),
        content_type="application/json",
        headers=headers,
    )
