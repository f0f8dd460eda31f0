"""The upstream transport's tests run on asyncio's loop and on uvloop, which the
relay's processes run on: their transports differ (closing, buffers, TLS)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> object:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
