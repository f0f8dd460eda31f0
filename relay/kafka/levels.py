"""Record batches compressed at the levels Kafka's own producer uses.

aiokafka (0.11 to 0.14) picks levels of its own where the relay's producers are
configured like Kafka's Java producer (``compression.type`` with its default level):

- **lz4**: aiokafka compresses at cramjam's level 9, which is LZ4's high-compression
  mode (LZ4HC), meaning to match Kafka's default level. Kafka's Java producer reads
  that default as lz4-java's *fast* compressor (``Lz4BlockOutputStream``: the
  high-compression one only for a level set on purpose). Reported upstream as
  aio-libs/aiokafka#1028.
- **gzip**: aiokafka compresses at zlib's level 9. Kafka's default gzip level is -1,
  ``Deflater.DEFAULT_COMPRESSION``, which zlib reads as 6 (KIP-390).
- zstd (3, as Kafka) and snappy (no level) are left as aiokafka makes them.

On ingest's record batches the higher levels cost several times the CPU (lz4) or up
to 1.7 times (gzip) for frames a few per cent (lz4) or under one per cent (gzip)
smaller (figures in docs/PERFORMANCE.md), and ingest is CPU-bound. The frames keep
their format, so every broker and consumer reads them; only the compressor's effort
differs.

``use_kafka_levels`` points aiokafka's record builders (its compiled one and its
Python one: both look each function up in their module at each batch) at aiokafka's
own encoders at Kafka's levels. Both of the seam's producers call it before they build
aiokafka's, so the naive baseline of the benchmarks compresses as the relay does.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Final

from aiokafka import codec
from aiokafka.record import default_records as _python_builder

__all__ = ["GZIP_LEVEL", "LZ4_LEVEL", "gzip", "lz4", "use_kafka_levels"]

LZ4_LEVEL: Final = 0  # LZ4F's default: the fast compressor (LZ4HC takes levels from 3)
GZIP_LEVEL: Final = 6  # zlib's Z_DEFAULT_COMPRESSION, what Java's Deflater default means

Payload = bytes | bytearray | memoryview


def lz4(payload: Payload) -> bytes:
    """One record batch's records as a Kafka lz4 frame (independent blocks, no content
    checksum, as KIP-57 asks), at the fast level."""
    compressed: bytes = codec.lz4_encode(payload, level=LZ4_LEVEL)
    return compressed


def gzip(payload: Payload) -> bytes:
    """One record batch's records as a gzip member, at Kafka's default level."""
    compressed: bytes = codec.gzip_encode(payload, compresslevel=GZIP_LEVEL)
    return compressed


# What aiokafka's builders call, and what replaces it.
_ENCODERS: dict[str, Callable[[Payload], bytes]] = {"lz4_encode": lz4, "gzip_encode": gzip}


def _builders() -> list[ModuleType]:
    builders = [_python_builder]
    try:  # aiokafka uses its compiled builder when it was built with one
        from aiokafka.record._crecords import default_records as compiled
    except ImportError:  # pragma: no cover - wheels ship it; a source build may not
        return builders
    return [*builders, compiled]


def use_kafka_levels() -> None:
    """Make aiokafka's lz4 and gzip batches at Kafka's levels, for the whole process
    (idempotent).

    Raises ``RuntimeError`` when a builder no longer has a function to replace (a
    newer aiokafka): the replacement would otherwise do nothing, unnoticed."""
    for module in _builders():
        missing = [name for name in _ENCODERS if not hasattr(module, name)]
        if missing:
            raise RuntimeError(
                f"{module.__name__} has no {', '.join(missing)}: see relay/kafka/levels.py"
            )
        for name, encode in _ENCODERS.items():
            setattr(module, name, encode)
