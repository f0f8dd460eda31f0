"""Which request bodies are JSON: the Content-Types the front door reads.

``application/json``, and ``text/plain`` for browsers: ``navigator.sendBeacon``
with a string body and a ``fetch`` that must avoid a CORS preflight can only send
``text/plain``. The body is parsed as JSON either way, so a ``text/plain`` body
that is not JSON gets the same 400 as a JSON one; its charset, when given, must be
UTF-8 (what JSON is, RFC 8259, and what browsers send) or a text/plain body in
another charset would be read as something it is not.
"""

from __future__ import annotations

from aiohttp import hdrs, web

__all__ = ["json_content_type"]

_UTF_8 = frozenset({"utf-8", "utf8"})


def json_content_type(request: web.Request) -> bool:
    """True when the body is to be read as JSON (``request.content_type`` is the
    type without its parameters, lowercased)."""
    if request.headers.get(hdrs.CONTENT_TYPE) == "application/json":  # most: no parsing
        return True
    content_type = request.content_type
    if content_type == "application/json":
        return True
    if content_type != "text/plain":
        return False
    charset = request.charset
    return charset is None or charset.lower() in _UTF_8
