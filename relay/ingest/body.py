"""Reading a request's JSON body: content type, encoding, size (as sent, then decoded),
and the parse. Shared by the single-event handler and POST /batch, which differ only
in the size limit (RELAY_MAX_BODY_BYTES, RELAY_MAX_BATCH_BYTES).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import hdrs, web

from relay.errors import UndecodableBody
from relay.failures import failure_response
from relay.ingest.encodings import coding, decode
from relay.ingest.media import json_content_type

__all__ = ["BadBody", "body_if_here", "parse_json", "read_body", "wait_for_body"]

_NOT_JSON = "Content-Type must be application/json (or text/plain holding JSON, in UTF-8)"


@dataclass(frozen=True, slots=True)
class BadBody:
    """Why the body cannot be read: the answer's status, message and field."""

    status: int
    message: str
    field: str
    close: bool = False  # the rest of the body may still be on its way

    def response(self) -> web.Response:
        response = failure_response(
            self.status, "INVALID_PARAMETERS", self.message, field=self.field
        )
        if self.close:
            response.force_close()
        return response


def parse_json(raw: bytes) -> Any | BadBody:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return BadBody(400, f"the body is not valid JSON: {exc}", "body")


def body_if_here(request: web.Request, limit: int) -> bytes | BadBody | None:
    """``read_body``'s answer when the whole body has already arrived (most requests:
    a small body comes with its head), with no coroutine to make; None when some of
    it is still on its way (then ``read_body``, which waits for it). It takes the bytes
    from the request's stream without keeping them on the request: a later
    ``request.read()`` gives ``b""``."""
    content = request.content
    if not content.is_eof():
        return None
    body_coding = _coding(request)
    if isinstance(body_coding, BadBody):
        return body_coding
    raw = content.read_nowait()
    if len(raw) > request.client_max_size:  # as request.read() refuses it
        return BadBody(413, f"the body is larger than {limit} bytes", "body")
    return _decoded(raw, body_coding, limit)


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes | BadBody:
    """The body's bytes, decoded, or why not: 415 (content type, encoding), 408 (not
    all there within ``timeout_s``), 413 (over ``limit`` bytes as sent or decoded;
    ``limit`` must not exceed the request's ``client_max_size``), 400 (a corrupt
    encoding)."""
    here = body_if_here(request, limit)
    return here if here is not None else await wait_for_body(request, limit, timeout_s)


async def wait_for_body(request: web.Request, limit: int, timeout_s: float) -> bytes | BadBody:
    """``read_body`` for a body ``body_if_here`` found still on its way."""
    body_coding = _coding(request)
    if isinstance(body_coding, BadBody):
        return body_coding
    try:
        async with asyncio.timeout(timeout_s):
            raw = await request.read()
    except TimeoutError:
        return BadBody(408, f"the body did not arrive within {timeout_s:g}s", "body", close=True)
    except web.HTTPRequestEntityTooLarge:
        return BadBody(413, f"the body is larger than {limit} bytes", "body")
    return _decoded(raw, body_coding, limit)


def _coding(request: web.Request) -> str | BadBody | None:
    """The body's content coding, or why it cannot be read (415)."""
    if not json_content_type(request):
        return BadBody(415, _NOT_JSON, "Content-Type")
    try:
        return coding(request.headers.get(hdrs.CONTENT_ENCODING))
    except UndecodableBody as exc:
        return BadBody(exc.status, exc.message, exc.field)


def _decoded(raw: bytes, body_coding: str | None, limit: int) -> bytes | BadBody:
    try:
        return decode(raw, body_coding, limit)
    except UndecodableBody as exc:
        return BadBody(exc.status, exc.message, exc.field)
