"""Request bodies sent with a Content-Encoding, decoded by the front door itself.

aiohttp's own decoding answers outside the failure envelope (a corrupt gzip body
raised out of the handler as a 500; ``br`` without the Brotli package is refused
as the head is parsed, with plain-text advice to install it), so the front door's
runner turns it off (``auto_decompress=False``, ``relay.ingest.server.runner_for``)
and decodes here, where every refusal is an ``UndecodableBody``:

- gzip (multi-member too) and deflate (zlib-wrapped, or raw as some clients send
  it) with the standard library; br and zstd with cramjam, already a dependency
  (the producer's lz4 and zstd). ``identity`` or no header: the body as sent.
- One coding per request: anything else, stacked codings included, is 415.
- Decoding stops one byte past the body limit, so a small body that inflates far
  beyond it (a decompression bomb) costs at most the limit: 413.
- A body that is not what its coding says (corrupt, cut short, trailing bytes): 400.
"""

from __future__ import annotations

import zlib

import cramjam

from relay.errors import UndecodableBody

__all__ = ["ENCODINGS", "coding", "decode"]

ENCODINGS = ("gzip", "deflate", "br", "zstd")
_IDENTITY = ("", "identity")
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS
_CRAMJAM = {"br": cramjam.brotli, "zstd": cramjam.zstd}
# cramjam's one way of saying the output buffer was too small, as opposed to bad data.
_CRAMJAM_FULL = "failed to write whole buffer"


def coding(header: str | None) -> str | None:
    """The coding a Content-Encoding header names, or None for none (the body as
    sent). Raises ``UndecodableBody`` (415) for a coding the relay does not take."""
    name = (header or "").strip().lower()
    if name in _IDENTITY:
        return None
    if name in ENCODINGS:
        return name
    raise UndecodableBody(
        415,
        "Content-Encoding",
        f"Content-Encoding {header!r} is not taken; send one of {', '.join(ENCODINGS)}, or none",
    )


def decode(body: bytes, name: str | None, limit: int) -> bytes:
    """``body`` decoded from coding ``name`` (from ``coding``), at most ``limit`` bytes.
    Raises ``UndecodableBody``: 413 past the limit, 400 when the body is corrupt.
    Never decodes more than ``limit`` + 1 bytes, so it costs little on the loop."""
    if name is None:
        return body
    if name in _CRAMJAM:
        return _decode_cramjam(body, name, limit)
    if name == "gzip":
        wbits = _GZIP_WBITS
    else:  # deflate: zlib's wrapper has compression method 8 in its first byte's low bits
        wbits = _ZLIB_WBITS if body[:1] and body[0] & 0x0F == 8 else _RAW_DEFLATE_WBITS
    return _inflate(body, name, wbits, limit)


def _inflate(body: bytes, name: str, wbits: int, limit: int) -> bytes:
    decoded = bytearray()
    rest = body
    try:
        while True:
            inflater = zlib.decompressobj(wbits)
            # max_length >= 1 here: 0 would mean no bound at all.
            decoded += inflater.decompress(rest, limit + 1 - len(decoded))
            if len(decoded) > limit:
                raise _too_large(limit)
            if not inflater.eof:
                raise _corrupt(name, "it ends before its compressed stream does")
            rest = inflater.unused_data
            if not rest:
                return bytes(decoded)
            if wbits != _GZIP_WBITS:  # only gzip has members one after another
                raise _corrupt(name, "bytes follow its compressed stream")
    except zlib.error as exc:
        raise _corrupt(name, str(exc)) from exc


def _decode_cramjam(body: bytes, name: str, limit: int) -> bytes:
    output = bytearray(limit + 1)
    try:
        size = _CRAMJAM[name].decompress_into(body, output)
    except cramjam.DecompressionError as exc:
        if _CRAMJAM_FULL in str(exc):
            raise _too_large(limit) from exc
        raise _corrupt(name, str(exc)) from exc
    if size > limit:
        raise _too_large(limit)
    return bytes(output[:size])


def _too_large(limit: int) -> UndecodableBody:
    return UndecodableBody(413, "body", f"the body is larger than {limit} bytes decoded")


def _corrupt(name: str, reason: str) -> UndecodableBody:
    return UndecodableBody(400, "Content-Encoding", f"the body is not valid {name} ({reason})")
