from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from relay.clock import ManualClock
from relay.config import Settings
from relay.sandbox import Credential, SandboxState, make_sandbox_app
from tests.brokers import ROOT, Broker
from tests.stack import Stack

# A test client of an aiohttp app (the sandbox, ingest, forward's HTTP surface).
Client = TestClient[web.Request, web.Application]

TEST_KAFKA_PORT = int(os.environ.get("RELAY_TEST_KAFKA_PORT", "19092"))


@pytest.fixture(scope="session")
def kafka() -> Iterator[Broker]:
    """The suite's broker: reused when one already answers on the port, else started
    fresh for the session and stopped at its end."""
    broker = Broker(TEST_KAFKA_PORT, ROOT / ".cache" / "kafka" / f"test-{TEST_KAFKA_PORT}")
    if broker.running():
        yield broker
        return
    broker.wipe()
    broker.up()
    try:
        yield broker
    finally:
        broker.down()
        broker.wipe()


@pytest.fixture
async def stack(kafka: Broker, prefix: str) -> AsyncIterator[Stack]:
    """No relay process yet: tests start those they need (a sandbox, ingest, forward),
    each stopped when the test ends. Some folders start a sandbox in their own."""
    stack = Stack(kafka.bootstrap, prefix)
    try:
        yield stack
    finally:
        await stack.stop_all()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of this test alone, for tests that stop and start it."""
    broker = Broker(TEST_KAFKA_PORT + 100, tmp_path / "kafka")
    broker.up()
    try:
        yield broker
    finally:
        broker.down()


@pytest.fixture
def prefix() -> str:
    """A topic prefix of this test alone, so tests on one broker never see each other."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(prefix: str) -> Settings:
    return Settings(topic_prefix=prefix, topic_partitions=3, app_id=4242)


@pytest.fixture
def kafka_settings(kafka: Broker, prefix: str) -> Settings:
    return Settings(
        kafka_bootstrap=kafka.bootstrap, topic_prefix=prefix, topic_partitions=3, app_id=4242
    )


@pytest.fixture
def sandbox_clock() -> ManualClock:
    return ManualClock(wall=1_795_000_000.0)


@pytest.fixture
def sandbox_state() -> SandboxState:
    return SandboxState(
        {"tok": Credential("tok", "sec", 77), "other": Credential("other", "pw", 88)},
        token_lifetime_s=60.0,
    )


@pytest.fixture
async def sandbox(sandbox_state: SandboxState, sandbox_clock: ManualClock) -> AsyncIterator[Client]:
    client: Client = TestClient(TestServer(make_sandbox_app(sandbox_state, sandbox_clock)))
    await client.start_server()
    yield client
    await client.close()


_FIGURES: list[str] = []


@pytest.fixture
def report() -> Callable[[str], None]:
    """Figures a test measured (duplicates under faults, ...), printed at the end of the run."""
    return _FIGURES.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("figures measured by the tests")
        for line in _FIGURES:
            terminalreporter.write_line(line)
