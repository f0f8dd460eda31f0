from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.brokers import Broker
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
