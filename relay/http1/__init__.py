"""The upstream's transport: a lean keep-alive HTTP/1.1 client.

Forwarding is one small POST after another to one host, and aiohttp's client spends
about 70 us of CPU on each (its session, request and response objects, cookie jar,
tracing hooks and timers), three times what the request itself needs: the forwarder
was bound by it (docs/PERFORMANCE.md). This client does only what the upstream seam
uses: POST a body with a few headers over a pooled connection and read the whole
answer. httptools (llhttp, the parser Node.js uses) reads the answers: lengths,
chunked bodies, keep-alive; the framing is not ours to get wrong.

``connection.py`` is one connection and its answer; ``pool.py`` the pool, its bounds
and its timeouts. Errors: ``TransportError`` (retriable: no complete answer) and
``TimeoutError``; ``HeaderError`` for a request that could not be written.
"""

from relay.http1.connection import (
    MAX_ANSWER_BYTES,
    MAX_HEADER_BYTES,
    Answer,
    HeaderError,
    TransportError,
)
from relay.http1.pool import BaseUrl, Http1Pool, parse_base_url

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_HEADER_BYTES",
    "Answer",
    "BaseUrl",
    "HeaderError",
    "Http1Pool",
    "TransportError",
    "parse_base_url",
]
