"""The upstream's failure envelope, which the front door and the sandbox both answer with.

``{"success": false, "failureCode": ..., "message": ..., "errorData": ...}``;
``failureCode`` is always present (shared/upstream/UPSTREAM.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

__all__ = ["FAILURE_CODES", "failure_body", "failure_response"]

FAILURE_CODES = (
    "AUTHENTICATION_FAILED",
    "VALIDATION_ERROR",
    "SERVICE_UNAVAILABLE",
    "INTERNAL_ERROR",
    "ACR_CLOUD_ERROR",
    "ACR_CLOUD_CONFIG_ERROR",
    "NO_STREAMING_RIGHTS",
    "CLIP_NOT_FOUND",
    "TRACK_NOT_FOUND",
    "COLLECTION_NOT_FOUND",
    "INVALID_PARAMETERS",
    "MISSING_HEADERS",
    "NETWORK_ERROR",
)


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
