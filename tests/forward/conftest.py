from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.brokers import Broker
from tests.forward.harness import make_harness  # noqa: F401 (a fixture of the dispatcher's tests)
from tests.stack import Stack


@pytest.fixture
async def stack(kafka: Broker, prefix: str) -> AsyncIterator[Stack]:
    """The sandbox running; tests start ingest and forward processes as they need."""
    stack = Stack(kafka.bootstrap, prefix)
    await stack.start("sandbox")
    try:
        yield stack
    finally:
        await stack.stop_all()
