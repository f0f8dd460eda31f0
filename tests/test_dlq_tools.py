"""``relay dlq replay`` and ``inspect``: the tenant filter, the letters left alone while
the relay would refuse them again (relay/dlq_triage.py), and the summary that says so.

Dead letters are written as the forwarder writes them (``DeadLetters``) to a real
broker; what replay sends is read back from the source topics."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from relay import dlq_tools
from relay.bench.backlog import example_bodies
from relay.cli import main
from relay.clock import ManualClock, SystemClock
from relay.config import ConfigError, Settings
from relay.dlq import DeadLetter, DeadLetters
from relay.dlq_triage import Letter, Triage
from relay.envelope import Envelope, new_event_id, read
from relay.events import BY_NAME
from relay.facts import FactPublisher, create_facts_topic
from relay.kafka.options import producer_options
from relay.kafka.producer import KafkaProducer
from relay.topics import create_missing_topics
from tests.kafka_helpers import read_for, read_topics

# (value, reason, failure code, source topic): one dead letter
Burial = tuple[bytes, str, str, str]


def write_tenants(path: Path, names: Iterable[str]) -> None:
    path.write_text(
        "".join(f'[tenants.{n}]\nupstream_token = "t"\nupstream_secret = "s"\n' for n in names)
    )


@pytest.fixture
def tenants_path(tmp_path: Path) -> Path:
    path = tmp_path / "tenants.toml"
    write_tenants(path, ["alpha", "beta"])
    return path


@pytest.fixture
def dlq_settings(kafka_settings: Settings, tenants_path: Path) -> Settings:
    return dataclasses.replace(kafka_settings, tenants_file=str(tenants_path))


def envelope(tenant: str, event_type: str = "play", clip_id: int = 123) -> Envelope:
    body = dict(example_bodies(1, ["play"])[0][1])
    body["clipId"] = clip_id
    return Envelope(
        id=new_event_id(1_795_000_000_000),
        type=event_type,
        tenant=tenant,
        received_at="2026-11-26T12:00:00Z",
        timestamp_stamped=False,
        body=body,
    )


async def bury(settings: Settings, letters: Sequence[Burial]) -> None:
    """Write dead letters as the forwarder does, creating the topics involved."""
    topics = {settings.dlq_topic, *(source for *_, source in letters)}
    await create_missing_topics(settings, sorted(topics))
    producer = KafkaProducer(producer_options(settings), client_id="test-dlq")
    await producer.start()
    try:
        dead_letters = DeadLetters(producer, settings.dlq_topic, ManualClock(), 10.0)
        for offset, (value, reason, code, source) in enumerate(letters):
            letter = DeadLetter(source, 0, offset, b"user-1", value, (), reason, code, 1, None)
            await dead_letters.write(letter)
    finally:
        await producer.stop()


async def tell_rights(settings: Settings, tenant: str, clip_id: int, playable: bool) -> None:
    await create_facts_topic(settings)
    publisher = FactPublisher(settings, SystemClock())  # facts age on the wall clock
    await publisher.start()
    try:
        code = None if playable else "NO_STREAMING_RIGHTS"
        await publisher.rights(tenant, clip_id, playable, code, None)
    finally:
        await publisher.stop()


async def sent_to(settings: Settings, topics: Sequence[str], expected: int) -> list[str]:
    """Ids of the envelopes on ``topics`` (replay is the only writer in these tests)."""
    if expected:
        records = await read_topics(settings.kafka_bootstrap, topics, expected)
    else:
        records = await read_for(settings.kafka_bootstrap, topics, 3)
    return sorted(Envelope.decode(record.value, record.headers).id for record in records)


def refused(result: dlq_tools.Replay) -> dict[tuple[str, str], int]:
    return dict(result.still_refused)


async def replay(settings: Settings, tenants: Sequence[str] = ()) -> dlq_tools.Replay:
    return await dlq_tools.replay(settings, tenants=tenants, progress=False)


@pytest.mark.kafka
async def test_tenant_selects_only_that_tenants_letters(dlq_settings: Settings) -> None:
    settings = dlq_settings
    alpha, beta = envelope("alpha"), envelope("beta")
    alpha_topic, beta_topic = settings.topic("play", "alpha"), settings.topic("play", "beta")
    await bury(
        settings,
        [
            (alpha.encode(), "retries_exhausted", "HTTP_503", alpha_topic),
            (beta.encode(), "retries_exhausted", "HTTP_503", beta_topic),
            (b"not json", "undecodable", "UNDECODABLE", alpha_topic),  # alpha's by its topic
            (b"not json", "undecodable", "UNDECODABLE", "elsewhere"),  # nobody's
        ],
    )

    everything = await dlq_tools.inspect(settings, progress=False)
    assert everything.by_tenant == {"alpha": 2, "beta": 1, "?": 1}
    only_alpha = await dlq_tools.inspect(settings, progress=False, tenants=["alpha"])
    assert (only_alpha.total, only_alpha.by_tenant) == (2, {"alpha": 2})

    first = await replay(settings, tenants=["alpha"])
    assert (first.matched, first.replayed, first.skipped_still_refused) == (2, 1, 1)
    assert await sent_to(settings, [alpha_topic, beta_topic], 1) == [alpha.id]

    second = await replay(settings, tenants=["beta"])
    assert (second.matched, second.replayed, second.skipped_already_replayed) == (1, 1, 0)
    assert await sent_to(settings, [beta_topic], 1) == [beta.id]


@pytest.mark.kafka
async def test_undecodable_letters_wait_until_the_relay_can_read_them(
    dlq_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = dlq_settings
    topic = settings.topic("play", "alpha")
    like = envelope("alpha", event_type="like")  # an event type this relay does not know
    await bury(settings, [(like.encode(), "undecodable", "UNDECODABLE", topic)])

    first = await replay(settings)
    assert (first.matched, first.replayed) == (1, 0)
    assert refused(first) == {("undecodable", "still undecodable: unknown event type 'like'"): 1}

    # A release that knows the type: the letter was left unmarked, so it goes now.
    monkeypatch.setattr("relay.dlq_triage.BY_NAME", {**BY_NAME, "like": BY_NAME["play"]})
    second = await replay(settings)
    assert (second.replayed, second.skipped_still_refused) == (1, 0)
    assert await sent_to(settings, [topic], 1) == [like.id]


@pytest.mark.kafka
async def test_unknown_tenant_letters_wait_until_the_tenant_is_configured(
    dlq_settings: Settings, tenants_path: Path
) -> None:
    settings = dlq_settings
    topic = settings.topic("play", "gamma")
    gamma = envelope("gamma")
    await bury(settings, [(gamma.encode(), "unknown_tenant", "gamma", topic)])

    first = await replay(settings)
    assert first.replayed == 0
    assert refused(first) == {("unknown_tenant", "tenant 'gamma' still not configured"): 1}

    write_tenants(tenants_path, ["alpha", "beta", "gamma"])
    second = await replay(settings, tenants=["gamma"])
    assert (second.matched, second.replayed, second.skipped_still_refused) == (1, 1, 0)
    assert await sent_to(settings, [topic], 1) == [gamma.id]


@pytest.mark.kafka
async def test_rights_refusals_wait_while_the_facts_deny_the_clip(
    dlq_settings: Settings,
) -> None:
    settings = dlq_settings
    topic = settings.topic("play", "alpha")
    denied, unknown = envelope("alpha", clip_id=7), envelope("alpha", clip_id=8)
    await bury(
        settings,
        [
            (denied.encode(), "permanent", "NO_STREAMING_RIGHTS", topic),
            (unknown.encode(), "permanent", "NO_STREAMING_RIGHTS", topic),  # facts are silent
        ],
    )
    await tell_rights(settings, "alpha", 7, playable=False)
    await tell_rights(settings, "beta", 8, playable=False)  # another tenant's clip 8

    first = await replay(settings)
    assert first.replayed_by_reason == {"permanent": 1}
    assert refused(first) == {
        ("permanent", "NO_STREAMING_RIGHTS: the rights facts still deny the clip"): 1
    }
    assert await sent_to(settings, [topic], 1) == [unknown.id]

    await tell_rights(settings, "alpha", 7, playable=True)  # the rights came back
    second = await replay(settings)
    assert (second.replayed, second.skipped_still_refused) == (1, 0)
    assert await sent_to(settings, [topic], 2) == sorted([denied.id, unknown.id])


@pytest.mark.kafka
async def test_reasons_only_sending_can_answer_are_replayed(dlq_settings: Settings) -> None:
    settings = dlq_settings
    topic = settings.topic("play", "alpha")
    letters = [envelope("alpha") for _ in range(3)]
    await bury(
        settings,
        [
            (letters[0].encode(), "expired", "HTTP_503", topic),
            (letters[1].encode(), "retries_exhausted", "timeout", topic),
            (letters[2].encode(), "permanent", "VALIDATION_ERROR", topic),
        ],
    )
    # Denied rights explain only a rights refusal: these go whatever the facts say.
    await tell_rights(settings, "alpha", letters[0].body["clipId"], playable=False)
    result = await replay(settings)
    assert result.replayed_by_reason == {"expired": 1, "retries_exhausted": 1, "permanent": 1}
    assert await sent_to(settings, [topic], 3) == sorted(e.id for e in letters)


def cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> int:
    monkeypatch.setenv("RELAY_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("RELAY_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("RELAY_TOPIC_PARTITIONS", str(settings.topic_partitions))
    monkeypatch.setenv("RELAY_TENANTS_FILE", settings.tenants_file)
    return main(["dlq", *argv])


@pytest.mark.kafka
def test_replay_says_what_it_replayed_skipped_and_why(
    dlq_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = dlq_settings
    alpha = settings.topic("play", "alpha")
    burials: list[Burial] = [
        (envelope("alpha").encode(), "expired", "HTTP_503", alpha),
        (envelope("alpha").encode(), "expired", "HTTP_503", alpha),
        (envelope("alpha").encode(), "permanent", "VALIDATION_ERROR", alpha),
        (envelope("alpha", clip_id=7).encode(), "permanent", "NO_STREAMING_RIGHTS", alpha),
        (b"{}", "undecodable", "UNDECODABLE", alpha),
        (envelope("x").encode(), "unknown_tenant", "x", settings.topic("play", "x")),
    ]

    async def prepare() -> None:
        await bury(settings, burials)
        await tell_rights(settings, "alpha", 7, playable=False)

    asyncio.run(prepare())
    dlq = settings.dlq_topic
    refusals = [
        "  skipped 3, still refused (left unmarked: a run after the cause is fixed replays them)",
        "    permanent                 1  "
        "NO_STREAMING_RIGHTS: the rights facts still deny the clip",
        "    undecodable               1  still undecodable: not a version-1 relay envelope",
        "    unknown_tenant            1  tenant 'x' still not configured",
    ]
    replayed = ["    expired                   2", "    permanent                 1"]

    assert cli(monkeypatch, settings, "replay", "--dry-run") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"6 dead letters matched on {dlq}",
        "  would replay 3 (dry run: nothing sent)",
        *replayed,
        *refusals,
        "  skipped 0, already replayed before (--force replays them again)",
    ]
    assert cli(monkeypatch, settings, "replay") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"6 dead letters matched on {dlq}",
        "  replayed 3",
        *replayed,
        *refusals,
        "  skipped 0, already replayed before (--force replays them again)",
    ]
    assert cli(monkeypatch, settings, "replay") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"6 dead letters matched on {dlq}",
        "  replayed 0",
        *refusals,
        "  skipped 3, already replayed before (--force replays them again)",
        "    expired                   2",
        "    permanent                 1",
    ]


@pytest.mark.parametrize("action", ["replay", "inspect"])
def test_an_unknown_tenant_name_exits_2_naming_the_configured_ones(
    settings: Settings,
    tenants_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    action: str,
) -> None:
    # No broker: the name is checked before Kafka is asked (this port answers nothing).
    settings = dataclasses.replace(
        settings, kafka_bootstrap="127.0.0.1:9", tenants_file=str(tenants_path)
    )
    assert cli(monkeypatch, settings, action, "--tenant", "alpha", "--tenant", "gamma") == 2
    assert capsys.readouterr().err == (
        "relay dlq: no tenant 'gamma'; configured tenants: alpha, beta\n"
    )


async def test_the_library_refuses_an_unknown_tenant_too(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"configured tenants: default$"):
        await dlq_tools.replay(settings, tenants=["acme"], progress=False)


def test_a_letters_tenant_comes_from_its_envelope_or_else_its_topic(
    settings: Settings, tenants_path: Path
) -> None:
    by_file = Triage(dataclasses.replace(settings, tenants_file=str(tenants_path)))
    open_tenant = Triage(settings)  # no tenants file: one tenant, topics <prefix>.<type>
    prefix = settings.topic_prefix

    def letter(value: bytes, topic: str) -> Letter:
        return Letter("undecodable", "UNDECODABLE", topic, value)

    assert by_file.tenant_of(letter(envelope("beta").encode(), f"{prefix}.alpha.play")) == "beta"
    assert by_file.tenant_of(letter(b"?", f"{prefix}.alpha.play")) == "alpha"
    assert by_file.tenant_of(letter(b"?", f"{prefix}.play")) is None
    assert by_file.tenant_of(letter(b"?", "other.alpha.play")) is None
    assert by_file.tenant_of(letter(b"?", "")) is None
    assert open_tenant.tenant_of(letter(b"?", f"{prefix}.play")) == settings.tenant


def test_other_reasons_of_a_tenant_removed_since_are_not_replayed(
    settings: Settings, tenants_path: Path
) -> None:
    triage = Triage(dataclasses.replace(settings, tenants_file=str(tenants_path)))
    gone = Letter("expired", "HTTP_503", "", envelope("gamma").encode())
    assert triage.still_refused(gone) == "tenant 'gamma' no longer configured"
    kept = Letter("expired", "HTTP_503", "", envelope("alpha").encode())
    assert triage.still_refused(kept) is None


@pytest.mark.kafka
async def test_v1_and_v2_letters_on_one_dlq_are_inspected_triaged_and_replayed_alike(
    dlq_settings: Settings,
) -> None:
    """A rollout leaves letters of both envelope versions on the DLQ: a v2 letter's
    tenant, type and clip come from its headers, and its replay is the stored record
    (value byte for byte, the envelope headers kept) plus the replay mark."""
    settings = dlq_settings
    alpha_topic, beta_topic = settings.topic("play", "alpha"), settings.topic("play", "beta")
    old, new = envelope("alpha"), envelope("alpha")._replace(version=2)
    other = envelope("beta")._replace(version=2)
    denied = envelope("alpha", clip_id=7)._replace(version=2)
    gone = envelope("gamma")._replace(version=2)
    burials = [
        (old, "expired", "HTTP_503", alpha_topic),
        (new, "expired", "HTTP_503", alpha_topic),
        (other, "retries_exhausted", "timeout", beta_topic),
        (denied, "permanent", "NO_STREAMING_RIGHTS", alpha_topic),
        (gone, "unknown_tenant", "gamma", settings.topic("play", "gamma")),
    ]
    await create_missing_topics(settings, sorted({settings.dlq_topic, *(b[3] for b in burials)}))
    producer = KafkaProducer(producer_options(settings), client_id="test-dlq")
    await producer.start()
    try:
        dead_letters = DeadLetters(producer, settings.dlq_topic, ManualClock(), 10.0)
        for offset, (letter, reason, code, source) in enumerate(burials):
            await dead_letters.write(
                DeadLetter(
                    source,
                    0,
                    offset,
                    b"user-1",
                    letter.encode(),
                    letter.headers(),
                    reason,
                    code,
                    1,
                    None,
                )
            )
    finally:
        await producer.stop()
    await tell_rights(settings, "alpha", 7, playable=False)

    inspection = await dlq_tools.inspect(settings, progress=False)
    assert inspection.by_tenant == {"alpha": 3, "beta": 1, "gamma": 1}
    assert inspection.by_type == {"play": 5}

    result = await replay(settings)
    assert result.replayed_by_reason == {"expired": 2, "retries_exhausted": 1}
    assert refused(result) == {
        ("permanent", "NO_STREAMING_RIGHTS: the rights facts still deny the clip"): 1,
        ("unknown_tenant", "tenant 'gamma' still not configured"): 1,
    }
    records = await read_topics(settings.kafka_bootstrap, [alpha_topic, beta_topic], 3)
    by_id = {Envelope.decode(r.value, r.headers).id: r for r in records}
    assert sorted(by_id) == sorted([old.id, new.id, other.id])
    for sent in (old, new, other):
        record = by_id[sent.id]
        assert record.value == sent.encode()  # v2: the body forward POSTs, untouched
        headers = dict(record.headers)
        assert {n: headers[n] for n, _ in sent.headers()} == dict(sent.headers())
        assert "relay-replayed-from" in headers
        assert not any(name.startswith("relay-dlq-") for name in headers)
        assert read(record.value, record.headers).replayed_from == headers["relay-replayed-from"]
