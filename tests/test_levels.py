"""lz4 and gzip batches at Kafka's own levels, as its Java producer makes them
(relay/kafka/levels.py).

The batches themselves reach a real broker and come back readable in the producer's
contract tests (tests/test_producer_contract.py: lz4 is the default compression).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cramjam
import pytest
from aiokafka import codec
from aiokafka.record import default_records as python_builder
from aiokafka.record._crecords import default_records as compiled_builder

from relay.config import Settings
from relay.envelope import Envelope, new_event_id
from relay.kafka import levels
from relay.kafka.options import producer_options
from relay.kafka.producer import KafkaProducer
from relay.kafka.writer import Writer

MODULES = [python_builder, compiled_builder]
# Each builder class by hand: default_records' own name is the compiled class when
# aiokafka has it, so the Python builder is reached by its private name.
BUILDERS = [python_builder._DefaultRecordBatchBuilderPy, compiled_builder.DefaultRecordBatchBuilder]
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


def _lz4_frame(level: int) -> Callable[[bytes], bytes]:
    """A Kafka lz4 frame at ``level``, written out here: not aiokafka's function, so
    that a change of aiokafka's level shows below."""

    def compress(payload: bytes) -> bytes:
        compressor = cramjam.lz4.Compressor(level=level, content_checksum=False, block_linked=False)
        compressor.compress(payload)
        return bytes(compressor.finish())

    return compress


def _deflated(level: int) -> Callable[[bytes], bytes]:
    """The deflate stream a gzip member at ``level`` holds, written out here."""

    def compress(payload: bytes) -> bytes:
        deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        return deflate.compress(payload) + deflate.flush()

    return compress


def _gzip_stream(member: bytes) -> bytes:
    """A gzip member's deflate stream: its header holds the time it was made."""
    assert member[:3] == b"\x1f\x8b\x08"  # gzip, deflate
    assert member[3] == 0  # no name, comment or extra field: the stream starts at 10
    return member[10:-8]


@dataclass(frozen=True)
class Codec:
    name: str  # the function aiokafka's builders call
    attribute: int  # Kafka's value for it in a batch's attributes
    aiokafkas: Callable[[bytes], bytes]  # at aiokafka's own level
    kafkas: Callable[[bytes], bytes]  # at Kafka's default level
    compared: Callable[[bytes], bytes]  # what of a compressed batch the two are
    decompress: Callable[[bytes], bytes]


CODECS = [
    Codec(
        "lz4_encode",
        python_builder.DefaultRecordBase.CODEC_LZ4,
        _lz4_frame(9),  # LZ4HC
        _lz4_frame(levels.LZ4_LEVEL),
        lambda frame: frame,
        lambda frame: bytes(cramjam.lz4.decompress(frame)),
    ),
    Codec(
        "gzip_encode",
        python_builder.DefaultRecordBase.CODEC_GZIP,
        _deflated(9),
        _deflated(6),
        _gzip_stream,
        gzip.decompress,
    ),
]
CODEC_IDS = ["lz4", "gzip"]


@pytest.fixture
def aiokafkas_own() -> Iterator[None]:
    """Each builder module with aiokafka's own encoders; put back as found afterwards."""
    names = [codec_.name for codec_ in CODECS]
    found = [[getattr(module, name) for name in names] for module in MODULES]
    for module in MODULES:
        for name in names:
            setattr(module, name, getattr(codec, name))
    yield
    for module, encoders in zip(MODULES, found, strict=True):
        for name, encode in zip(names, encoders, strict=True):
            setattr(module, name, encode)


@pytest.mark.parametrize("codec_", CODECS, ids=CODEC_IDS)
def test_the_two_levels_differ_on_such_records(codec_: Codec) -> None:
    """Else the tests below could not tell the levels apart."""
    plain = _records(BUILDERS[0], 0, _envelopes(50))
    assert codec_.kafkas(plain) != codec_.aiokafkas(plain)


@pytest.mark.usefixtures("aiokafkas_own")
@pytest.mark.parametrize("builder", BUILDERS, ids=["python", "compiled"])
@pytest.mark.parametrize("codec_", CODECS, ids=CODEC_IDS)
def test_aiokafka_alone_compresses_at_a_higher_level(codec_: Codec, builder: type[Any]) -> None:
    """Why relay/kafka/levels.py exists: this fails once aiokafka compresses at Kafka's
    level itself, and then that codec's replacement can go."""
    envelopes = _envelopes(50)
    plain = _records(builder, 0, envelopes)
    compressed = _records(builder, codec_.attribute, envelopes)
    assert codec_.compared(compressed) == codec_.aiokafkas(plain)


@pytest.mark.usefixtures("aiokafkas_own")
@pytest.mark.parametrize("builder", BUILDERS, ids=["python", "compiled"])
@pytest.mark.parametrize("codec_", CODECS, ids=CODEC_IDS)
@pytest.mark.parametrize(
    "make",
    [
        lambda: KafkaProducer(producer_options(Settings(kafka_bootstrap="127.0.0.1:1"))),
        lambda: Writer(producer_options(Settings(kafka_bootstrap="127.0.0.1:1")), client_id="t"),
    ],
    ids=["ingest-producer", "writer"],
)
async def test_the_seams_producers_build_batches_at_kafkas_levels(
    codec_: Codec, builder: type[Any], make: Callable[[], KafkaProducer | Writer]
) -> None:
    producer = make()  # never started: building one is what switches the levels
    await producer.stop()
    for count in (1, 8, 100):
        envelopes = _envelopes(count)
        plain = _records(builder, 0, envelopes)
        compressed = _records(builder, codec_.attribute, envelopes)
        assert codec_.compared(compressed) == codec_.kafkas(plain)
        assert codec_.decompress(compressed) == plain


@pytest.mark.usefixtures("aiokafkas_own")
@pytest.mark.parametrize("name", [codec_.name for codec_ in CODECS])
def test_a_builder_without_a_function_is_an_error(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newer aiokafka that renamed one: replacing nothing would go unnoticed."""
    monkeypatch.delattr(compiled_builder, name)
    with pytest.raises(RuntimeError, match=f"has no {name}"):
        levels.use_kafka_levels()
