"""The supervisor's checks at start, before any worker runs."""

from __future__ import annotations

import logging

import pytest

from relay.config import ConfigError, Settings
from relay.ingest.workers import Supervisor


def test_more_workers_than_forward_reserves_for_is_named(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_env({}, ingest_max_processes=2)
    with caplog.at_level(logging.WARNING, logger="relay.ingest"):
        Supervisor(settings, 2)
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="relay.ingest"):
        Supervisor(settings, 3)
    assert "RELAY_INGEST_MAX_PROCESSES" in caplog.records[0].getMessage()


def test_no_workers_on_an_ephemeral_port() -> None:
    with pytest.raises(ConfigError, match="RELAY_INGEST_PORT=0"):
        Supervisor(Settings.from_env({}, ingest_port=0), 2)


@pytest.mark.parametrize(("raw", "count"), [("1", 1), ("3", 3), (" 2 ", 2)])
def test_workers_setting(raw: str, count: int) -> None:
    assert Settings.from_env({"RELAY_INGEST_WORKERS": raw}).worker_count == count


def test_auto_is_the_cpus_this_process_may_use() -> None:
    import os

    expected = len(os.sched_getaffinity(0))
    assert Settings.from_env({"RELAY_INGEST_WORKERS": "auto"}).worker_count == expected


@pytest.mark.parametrize("raw", ["0", "-1", "two"])
def test_a_wrong_workers_setting_is_named(raw: str) -> None:
    with pytest.raises(ConfigError, match="RELAY_INGEST_WORKERS"):
        Settings.from_env({"RELAY_INGEST_WORKERS": raw})
