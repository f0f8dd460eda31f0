"""lz4 record batches compressed as Kafka's own producer compresses them.

aiokafka (0.11 to 0.14, the latest) compresses every lz4 batch at cramjam's level 9,
which is LZ4's high-compression mode (LZ4HC), meaning to match Kafka's default
level. But Kafka's Java producer reads that default, 9, as lz4-java's *fast*
compressor (``Lz4BlockOutputStream``: the high-compression one only for a level set
on purpose). On record batches of ingest's envelopes LZ4HC took 4.4-7.4x the CPU of
the fast mode (8.0 against 1.5 us for a batch of one record, 81 against 19 us for
100) for frames 1-9 % smaller (docs/PERFORMANCE.md, eleventh session), and ingest is
CPU-bound. Reported upstream as aio-libs/aiokafka#1028, open in 0.14.

``use_fast_lz4`` points aiokafka's record builders (its compiled one and its Python
one: they look the function up in their module at each batch) at the fast mode. The
frame is the same standard LZ4 frame (independent blocks, no content checksum, as
KIP-57 asks), so every broker and consumer reads it; only the compressor's effort
differs. Both of the seam's producers call it before they build aiokafka's, so the
naive baseline of the benchmarks compresses as the relay does.
"""

from __future__ import annotations

from types import ModuleType

import cramjam
from aiokafka.record import default_records as _python_builder

__all__ = ["FAST_LEVEL", "compress", "use_fast_lz4"]

FAST_LEVEL = 0  # LZ4F: levels below 3 are the fast compressor; 3 to 12 are LZ4HC


def compress(payload: bytes | bytearray | memoryview) -> bytes:
    """One record batch's records as a Kafka lz4 frame, at the fast level."""
    compressor = cramjam.lz4.Compressor(
        level=FAST_LEVEL, content_checksum=False, block_linked=False
    )
    compressor.compress(payload)
    return bytes(compressor.finish())


def _builders() -> list[ModuleType]:
    builders = [_python_builder]
    try:  # aiokafka uses its compiled builder when it was built with one
        from aiokafka.record._crecords import default_records as compiled
    except ImportError:  # pragma: no cover - wheels ship it; a source build may not
        return builders
    return [*builders, compiled]


def use_fast_lz4() -> None:
    """Make aiokafka's lz4 batches fast-mode frames (idempotent; process-wide)."""
    for module in _builders():
        module.lz4_encode = compress  # type: ignore[attr-defined]
