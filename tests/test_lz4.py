"""lz4 batches in the fast mode, as Kafka's Java producer makes them (relay/kafka/lz4.py).

The batches themselves reach a real broker and come back readable in the producer's
contract tests (tests/test_producer_contract.py: lz4 is the default compression).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import cramjam
import pytest
from aiokafka import codec
from aiokafka.record import default_records as python_builder
from aiokafka.record._crecords import default_records as compiled_builder

from relay.config import Settings
from relay.envelope import Envelope, new_event_id
from relay.kafka import lz4
from relay.kafka.options import producer_options
from relay.kafka.producer import KafkaProducer
from relay.kafka.writer import Writer

MODULES = [python_builder, compiled_builder]
# Each builder class by hand: default_records' own name is the compiled class when
# aiokafka has it, so the Python builder is reached by its private name.
BUILDERS = [python_builder._DefaultRecordBatchBuilderPy, compiled_builder.DefaultRecordBatchBuilder]
LZ4 = python_builder.DefaultRecordBase.CODEC_LZ4  # Kafka's attribute value, for both
_HEADER = 61  # a v2 record batch's header; the (compressed) records follow it


def _envelopes(count: int) -> list[Envelope]:
    return [
        Envelope(
            new_event_id(1_764_000_000_000 + number),
            "play",
            "bench",
            "2026-11-28T10:00:00.123Z",
            False,
            {"clientId": f"user-{number % 7:04d}", "clipId": 1 + number, "method": "Stream"},
            2,
        )
        for number in range(count)
    ]


def _records(builder: type[Any], compression: int, envelopes: list[Envelope]) -> bytes:
    """The records part of a batch that aiokafka's ``builder`` builds."""
    batch = builder(
        magic=2,
        compression_type=compression,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for offset, envelope in enumerate(envelopes):
        added = batch.append(
            offset,
            timestamp=1_764_000_000_000,
            key=envelope.key,
            value=envelope.encode(),
            headers=list(envelope.headers()),
        )
        assert added is not None
    return bytes(batch.build())[_HEADER:]


def _high_compression(payload: bytes) -> bytes:
    """LZ4HC at Kafka's default level, written out here: not aiokafka's function, so
    that a change of aiokafka's level shows below."""
    compressor = cramjam.lz4.Compressor(level=9, content_checksum=False, block_linked=False)
    compressor.compress(payload)
    return bytes(compressor.finish())


@pytest.fixture
def aiokafkas_own_lz4() -> Iterator[None]:
    """Each builder module as aiokafka ships it; put back as found afterwards."""
    found = [module.lz4_encode for module in MODULES]
    for module in MODULES:
        module.lz4_encode = codec.lz4_encode
    yield
    for module, encode in zip(MODULES, found, strict=True):
        module.lz4_encode = encode


def test_the_two_modes_differ_on_such_records() -> None:
    """Else the tests below could not tell the modes apart."""
    plain = _records(BUILDERS[0], 0, _envelopes(50))
    assert lz4.compress(plain) != _high_compression(plain)
    assert bytes(cramjam.lz4.decompress(lz4.compress(plain))) == plain


@pytest.mark.usefixtures("aiokafkas_own_lz4")
@pytest.mark.parametrize("builder", BUILDERS, ids=["python", "compiled"])
def test_aiokafka_alone_compresses_in_the_high_compression_mode(builder: type[Any]) -> None:
    """Why relay/kafka/lz4.py exists: this fails once aiokafka compresses in the fast
    mode itself, and then the module can go."""
    envelopes = _envelopes(50)
    plain = _records(builder, 0, envelopes)
    assert _records(builder, LZ4, envelopes) == _high_compression(plain)


@pytest.mark.usefixtures("aiokafkas_own_lz4")
@pytest.mark.parametrize("builder", BUILDERS, ids=["python", "compiled"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: KafkaProducer(producer_options(Settings(kafka_bootstrap="127.0.0.1:1"))),
        lambda: Writer(producer_options(Settings(kafka_bootstrap="127.0.0.1:1")), client_id="t"),
    ],
    ids=["ingest-producer", "writer"],
)
async def test_the_seams_producers_build_fast_mode_batches(
    builder: type[Any], make: Callable[[], KafkaProducer | Writer]
) -> None:
    producer = make()  # never started: building one is what switches the mode
    await producer.stop()
    for count in (1, 8, 100):
        envelopes = _envelopes(count)
        plain = _records(builder, 0, envelopes)
        compressed = _records(builder, LZ4, envelopes)
        assert compressed == lz4.compress(plain)
        assert bytes(cramjam.lz4.decompress(compressed)) == plain


@pytest.mark.usefixtures("aiokafkas_own_lz4")
def test_a_builder_without_the_function_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A newer aiokafka that renamed it: replacing nothing would go unnoticed."""
    monkeypatch.delattr(compiled_builder, "lz4_encode")
    with pytest.raises(RuntimeError, match="has no lz4_encode"):
        lz4.use_fast_lz4()
