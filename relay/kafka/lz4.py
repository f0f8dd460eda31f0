"""lz4 record batches compressed as Kafka's own producer compresses them.

aiokafka (0.11 to 0.14) compresses every lz4 batch at cramjam's level 9, which is
LZ4's high-compression mode (LZ4HC), meaning to match Kafka's default level. But
Kafka's Java producer reads that default, 9, as lz4-java's *fast* compressor
(``Lz4BlockOutputStream``: the high-compression one only for a level set on
purpose). On ingest's record batches LZ4HC costs several times the CPU for frames a
few per cent smaller (figures in docs/PERFORMANCE.md, eleventh session), and ingest
is CPU-bound. Reported upstream as aio-libs/aiokafka#1028.

``use_fast_lz4`` points aiokafka's record builders (its compiled one and its Python
one: both look the function up in their module at each batch) at aiokafka's own
encoder at the fast level. The frame is the same (independent blocks, no content
checksum, as KIP-57 asks), so every broker and consumer reads it; only the
compressor's effort differs. Both of the seam's producers call it before they build
aiokafka's, so the naive baseline of the benchmarks compresses as the relay does.
"""

from __future__ import annotations

from types import ModuleType
from typing import Final

from aiokafka import codec
from aiokafka.record import default_records as _python_builder

__all__ = ["FAST_LEVEL", "compress", "use_fast_lz4"]

FAST_LEVEL: Final = 0  # LZ4F's default: the fast compressor (LZ4HC takes levels from 3)
_NAME = "lz4_encode"  # what aiokafka's builders call


def compress(payload: bytes | bytearray | memoryview) -> bytes:
    """One record batch's records as a Kafka lz4 frame, at the fast level."""
    compressed: bytes = codec.lz4_encode(payload, level=FAST_LEVEL)
    return compressed


def _builders() -> list[ModuleType]:
    builders = [_python_builder]
    try:  # aiokafka uses its compiled builder when it was built with one
        from aiokafka.record._crecords import default_records as compiled
    except ImportError:  # pragma: no cover - wheels ship it; a source build may not
        return builders
    return [*builders, compiled]


def use_fast_lz4() -> None:
    """Make aiokafka's lz4 batches fast-mode frames, for the whole process (idempotent).

    Raises ``RuntimeError`` when a builder no longer has the function to replace (a
    newer aiokafka): the replacement would otherwise do nothing, unnoticed."""
    for module in _builders():
        if not hasattr(module, _NAME):
            raise RuntimeError(f"{module.__name__} has no {_NAME}: see relay/kafka/lz4.py")
        setattr(module, _NAME, compress)
