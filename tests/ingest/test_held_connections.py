"""One `relay ingest` with its default settings holds 10,000 keep-alive connections
while it serves load (issue 12 §5, "fleets hold connections open"), on real Kafka.

The fleet (relay/bench/fleet.py, the generator of `make bench SCENARIO=hold`) is a
process of its own so that its 10,000 sockets and their loop are not the test's: it
opens the connections, sends one keyed /play on each and keeps them open. While they
are held, 64 other connections send 6,000 /plays at 1,000/s (so the fleet sits idle for
6 s or more); then every held connection sends one more. Every answer must be 2xx (none
refused, reset or closed by the server), every accepted event must be in Kafka, and the
process must stay under RSS_BOUND_MB (the bench measured about 12 MB per 1,000 held
connections over a 52 MB start). A RELAY_KEEPALIVE_TIMEOUT_S shorter than the idle
time fails it: all 10,000 of the second round are errors.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.bench.procs import rss_mb
from relay.config import Settings
from relay.envelope import ID_HEADER
from relay.limits import raise_open_files_limit
from relay.tenants import hash_key, new_key
from tests.kafka_helpers import read_topics
from tests.load import SteadyLoad
from tests.stack import Stack
from tests.test_events import VALID

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CONNECTIONS = 10_000
ACTIVE_CONNECTIONS = 64
ACTIVE_RATE = 1_000.0  # requests/s, open loop: a rate a front door serves, not its ceiling
ACTIVE_REQUESTS = 6_000  # so the fleet sits idle at least 6 s (the bench measures the ceiling)
RSS_BOUND_MB = 600.0  # generous: the bench's 10,000 held took 169 MB
TENANT = "fleet"
BOUND_S = 120.0  # each phase: a hang, not a slow machine


def _tenants(path: Path, key: str) -> Path:
    path.write_text(
        f"""
[tenants.{TENANT}]
upstream_token = "fleet-token"
upstream_secret = "fleet-secret"
app_id = 4242
upstream_budget_rps = 0
[[tenants.{TENANT}.keys]]
id = "fleet"
sha256 = "{hash_key(key)}"
"""
    )
    return path


def _failures(phase: dict[str, Any]) -> int:
    """Held connections without a 2xx answer: errors (reset, closed, no answer) and
    any other status."""
    refused: int = sum(count for status, count in phase["statuses"].items() if status[0] != "2")
    return int(phase["errors"]) + refused


async def test_ten_thousand_held_connections_while_serving_load(
    stack: Stack, tmp_path: Path, report: Callable[[str], None]
) -> None:
    # The fleet's end and the server's end of each connection are both on this
    # machine, in the two processes this one starts: they inherit this limit.
    needed = CONNECTIONS + 2048
    limit = raise_open_files_limit()
    if limit != resource.RLIM_INFINITY and limit < needed:
        pytest.fail(f"the hard fd limit is {limit} (`ulimit -Hn`): this test needs {needed}")
    key = new_key()
    headers = {"Authorization": f"Bearer {key}"}
    stack.env["RELAY_TENANTS_FILE"] = str(_tenants(tmp_path / "tenants.toml", key))
    ingest = await stack.start("ingest")
    pid = ingest.popen.pid
    async with (
        aiohttp.ClientSession() as session,
        session.post(ingest.url + "/play", json=VALID["play"], headers=headers) as warm,
    ):  # topic metadata and the producer's connection, as in a live process
        assert warm.status == 204, await warm.text()
        accepted = [warm.headers["X-Relay-Event-Id"]]
    before = rss_mb(pid)

    host, port = ingest.url.removeprefix("http://").split(":")
    command = ["relay.bench.fleet", "hold", host, port, str(CONNECTIONS), "--key", key, "--ids"]
    fleet = subprocess.Popen(
        [sys.executable, "-m", *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert fleet.stdin is not None
    assert fleet.stdout is not None
    try:
        async with asyncio.timeout(BOUND_S):
            ready = await asyncio.to_thread(fleet.stdout.readline)
        assert ready.strip() == b"ready", f"the fleet exited ({fleet.poll()}): {ready!r}"
        held = rss_mb(pid)

        load = SteadyLoad(
            ingest.url,
            rate=ACTIVE_RATE,
            max_seconds=BOUND_S,
            max_requests=ACTIVE_REQUESTS,
            in_flight_limit=ACTIVE_CONNECTIONS,
            headers=headers,
        )
        started = time.monotonic()
        load.start()
        await load.finish()
        active_seconds = time.monotonic() - started

        fleet.stdin.write(b"again\n")
        fleet.stdin.flush()
        async with asyncio.timeout(BOUND_S):
            out = await asyncio.to_thread(fleet.stdout.read)
        assert fleet.wait(timeout=BOUND_S) == 0, f"the fleet exited {fleet.returncode}"
    finally:
        if fleet.poll() is None:
            fleet.kill()  # its sockets close with it
        fleet.wait()
        fleet.stdin.close()
        fleet.stdout.close()
    after = rss_mb(pid)
    peak = rss_mb(pid, peak=True)
    fleet_result = json.loads(out.splitlines()[-1])
    first, second = fleet_result["first"], fleet_result["second"]

    per_thousand = (held - before) / (CONNECTIONS / 1000)
    active_rps = len(load.latencies) / active_seconds
    held_failures = _failures(first) + _failures(second)
    report(
        f"{CONNECTIONS} held connections: RSS {before:.0f} -> {held:.0f} MB held "
        f"({per_thousand:.1f} MB per 1,000), {after:.0f} after, peak {peak:.0f}; active "
        f"{ACTIVE_CONNECTIONS} connections {load.sent} requests at {active_rps:.0f} req/s "
        f"(offered {ACTIVE_RATE:.0f}/s), "
        f"p99 {load.percentile_ms(0.99):.0f} ms; held failures {held_failures} "
        f"(first {first['statuses']} {first['errors']} errors, "
        f"again {second['statuses']} {second['errors']} errors)"
    )

    assert held_failures == 0, f"first: {first['statuses']}, again: {second['statuses']}, " + (
        f"errors {first['errors']} then {second['errors']}"
    )
    assert len(first["ids"]) == len(second["ids"]) == CONNECTIONS
    assert load.sent == ACTIVE_REQUESTS, load.summary()
    assert len(load.accepted) == ACTIVE_REQUESTS, load.summary()
    assert peak < RSS_BOUND_MB, f"peak RSS {peak:.0f} MB (before {before:.0f}, held {held:.0f})"

    accepted += first["ids"] + second["ids"] + load.accepted
    assert len(set(accepted)) == len(accepted) == 2 * CONNECTIONS + ACTIVE_REQUESTS + 1
    topic = Settings(topic_prefix=stack.prefix).topic("play", TENANT)
    records = await read_topics(stack.bootstrap, [topic], len(accepted), timeout=BOUND_S)
    stored = {dict(record.headers)[ID_HEADER].decode() for record in records}
    assert stored == set(accepted), (
        f"{len(set(accepted) - stored)} accepted ids not in Kafka, "
        f"{len(stored - set(accepted))} there that were not accepted"
    )
