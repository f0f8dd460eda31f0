"""The dashboard and the alert rules, proven against a real Prometheus scraping the
real stack (Kafka, the sandbox, ingest, forward) at a 1 s interval.

- every query of every panel of the checked-in dashboard returns data;
- nothing in the dashboard or the rules names a metric the relay does not export;
- live alerts, with ``for:`` durations and windows shortened for the test: stopping
  the sandbox fires RelayLagHigh and RelayDeliveryStalled, which resolve when it is
  back; stopping Kafka fires RelayKafkaUnavailable, which resolves when it is back.

With RELAY_SCREENSHOT=<png> (``make screenshot``) it also photographs Prometheus'
graph page for the lag query with headless Chromium, after the outage.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
import yaml

from relay.events import EVENT_TYPES
from relay.monitoring import alerts
from relay.monitoring.dashboard import DASHBOARD_PATH, panel_queries
from relay.monitoring.thresholds import DEFAULT, Thresholds
from tests.brokers import ROOT, Broker
from tests.prometheus import Prometheus
from tests.stack import Process, Stack
from tests.test_events import VALID

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# Short enough to see every alert fire within a test, long enough to be real windows.
# Any: mypy checks a ** argument against every field, the float ones too.
NO_WAIT: dict[str, Any] = {
    f.name: "0s" for f in dataclasses.fields(Thresholds) if f.name.endswith("_for")
}
FAST = dataclasses.replace(
    DEFAULT,
    **NO_WAIT,
    stalled_window="20s",
    lag_high_s=5.0,
)
RELAY_SETTINGS = {
    "RELAY_BACKLOG_PROBE_S": "1",
    "RELAY_RETRY_BASE_S": "0.2",
    "RELAY_RETRY_CAP_S": "1",
    "RELAY_KAFKA_PROBE_INTERVAL_S": "1",
    "RELAY_COMMIT_INTERVAL_S": "0.2",
}
# The lag panel's query, for the screenshot.
LAG_QUERY = 'max by (tenant, type) (relay_forward_oldest_undelivered_seconds{job="relay-forward"})'


@dataclasses.dataclass
class Live:
    stack: Stack
    ingest: Process
    forward: Process
    sandbox: Process
    prometheus: Prometheus
    broker: Broker


@pytest.fixture(params=["1", "2"], ids=["1-worker", "2-workers"])
async def live(
    own_broker: Broker, prefix: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Live]:
    """The stack, with ingest as one process and as a group of two workers (whose
    /metrics merges both: relay.ingest.group_metrics)."""
    stack = Stack(own_broker.bootstrap, prefix, env=RELAY_SETTINGS)
    prometheus: Prometheus | None = None
    try:
        sandbox = await stack.start("sandbox")
        forward = await stack.start("forward")
        ingest = await stack.start("ingest", RELAY_INGEST_WORKERS=request.param)
        prometheus = Prometheus(
            tmp_path / "prometheus",
            {
                "relay-ingest": ingest.url.removeprefix("http://"),
                "relay-forward": forward.url.removeprefix("http://"),
            },
            alerts.render(FAST),
        )
        await prometheus.start()
        yield Live(stack, ingest, forward, sandbox, prometheus, own_broker)
    finally:
        if prometheus is not None:
            prometheus.stop()
        await stack.stop_all()


def every_type(copies: int) -> list[tuple[str, dict[str, Any]]]:
    return [(event_type.name, VALID[event_type.name]) for event_type in EVENT_TYPES] * copies


async def wait_for(
    condition: Callable[[], Any], bound: float, what: str, every: float = 0.5
) -> float:
    """Seconds until ``await condition()`` is true; fails after ``bound``."""
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > bound:
            pytest.fail(f"{what} did not happen within {bound:g}s")
        await asyncio.sleep(every)
    return time.monotonic() - started


async def exported_names(*processes: Process) -> set[str]:
    names: set[str] = set()
    async with aiohttp.ClientSession() as session:
        for process in processes:
            async with session.get(process.url + "/metrics") as response:
                for line in (await response.text()).splitlines():
                    if line and not line.startswith("#"):
                        names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def named_metrics(expressions: list[str]) -> set[str]:
    """Metric names an expression reads (functions and labels are not metric names)."""
    return {
        name
        for expr in expressions
        for name in re.findall(r"\b((?:relay|process|python)_[a-z_]+)\b", expr)
    }


def rule_expressions(text: str) -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


async def test_every_panel_and_alert_holds_on_the_live_stack(
    live: Live, report: Callable[[str], None]
) -> None:
    stack, prometheus = live.stack, live.prometheus

    async def both_scraped() -> bool:  # so that the traffic below is a rise, not a start
        return await prometheus.targets_up() == {"relay-ingest": 1.0, "relay-forward": 1.0}

    await wait_for(both_scraped, 30, "the first scrape of ingest and forward")
    accepted = await stack.post_events(live.ingest, every_type(10), concurrency=20)
    await stack.wait_ledger(set(accepted), bound=60)

    async def scraped_deliveries() -> bool:
        result = await prometheus.query(
            'sum(relay_forward_deliveries_total{job="relay-forward", outcome="delivered"})'
        )
        return bool(result) and float(result[0]["value"][1]) >= len(accepted)

    await wait_for(scraped_deliveries, 30, "Prometheus seeing every delivery")

    async def enough_samples() -> bool:  # rate() needs two samples in its window
        result = await prometheus.query('min(count_over_time(up{job=~"relay-.*"}[1m]))')
        return bool(result) and float(result[0]["value"][1]) >= 5

    await wait_for(enough_samples, 30, "five scrapes of each target")
    assert await prometheus.targets_up() == {"relay-ingest": 1.0, "relay-forward": 1.0}
    # The worker's first assignment is a rebalance, with its duration.
    for name in ("relay_forward_rebalances_total", "relay_forward_rebalance_seconds_count"):
        assert float((await prometheus.query(f"sum({name})"))[0]["value"][1]) >= 1, name

    # Every query of every panel returns data, for All and for one tenant and type.
    dashboard = orjson.loads((ROOT / DASHBOARD_PATH).read_bytes())
    empty = []
    for variables in (
        {"datasource": "prometheus", "tenant": "All", "type": "All"},
        {"datasource": "prometheus", "tenant": "default", "type": "play"},
    ):
        queries = panel_queries(dashboard, variables)
        assert len(queries) >= 20
        for title, expr in queries:
            # Data means a number: NaN (a quantile of nothing) would draw no line either.
            values = [float(sample["value"][1]) for sample in await prometheus.query(expr)]
            if not any(math.isfinite(value) for value in values):
                empty.append(f"{title} ({variables['tenant']}/{variables['type']}): {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)

    # Nothing names a metric the relay does not export.
    exported = await exported_names(live.ingest, live.forward)
    rules_text = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    used = named_metrics([expr for _, expr in queries] + rule_expressions(rules_text))
    assert used, "no metric names found in the dashboard and rules"
    assert used - exported == set()

    # The upstream stops: events wait, the lag alerts fire; it comes back: they resolve.
    assert await prometheus.firing() == set()
    # Deliveries right up to the stop, so RelayDeliveryStalled must wait out its window.
    recent = await stack.post_events(live.ingest, every_type(1), concurrency=7)
    await stack.wait_ledger(set(recent), bound=30)
    await live.sandbox.terminate()
    waiting = await stack.post_events(live.ingest, every_type(2), concurrency=7)
    fired: dict[str, float] = {}

    async def lag_alerts_fired() -> bool:
        elapsed = time.monotonic() - stopped
        for name in await prometheus.firing() & {"RelayLagHigh", "RelayDeliveryStalled"}:
            fired.setdefault(name, elapsed)
        return len(fired) == 2

    stopped = time.monotonic()
    await wait_for(lag_alerts_fired, 120, "RelayLagHigh and RelayDeliveryStalled firing")
    await stack.restart(live.sandbox)
    restarted = time.monotonic()
    # Not while the window still held a delivery (20 s; 10 s leaves room for scrapes).
    assert fired["RelayDeliveryStalled"] >= 10, fired

    async def lag_alerts_resolved() -> bool:
        return not await prometheus.firing() & {"RelayLagHigh", "RelayDeliveryStalled"}

    resolved = await wait_for(lag_alerts_resolved, 120, "the lag alerts resolving")
    await stack.wait_ledger(set(waiting), bound=60)  # nothing accepted was lost
    report(
        f"live alerts: sandbox stopped -> RelayLagHigh firing {fired['RelayLagHigh']:.1f}s, "
        f"RelayDeliveryStalled {fired['RelayDeliveryStalled']:.1f}s "
        f"(lag_high_s={FAST.lag_high_s:g}, stalled_window={FAST.stalled_window}, for: 0s, "
        f"1s scrapes); sandbox back -> resolved {resolved:.1f}s "
        f"({time.monotonic() - restarted:.1f}s incl. delivery check)"
    )
    if shot := os.environ.get("RELAY_SCREENSHOT"):
        screenshot(prometheus, Path(shot))

    # Kafka stops: ingest reports it, RelayKafkaUnavailable fires; Kafka back: resolved.
    async def kafka_alert(firing: bool) -> bool:
        return ("RelayKafkaUnavailable" in await prometheus.firing()) is firing

    started = time.monotonic()
    live.broker.down()
    await wait_for(lambda: kafka_alert(True), 90, "RelayKafkaUnavailable firing")
    kafka_fired = time.monotonic() - started
    started = time.monotonic()
    live.broker.up()
    await wait_for(lambda: kafka_alert(False), 120, "RelayKafkaUnavailable resolving")
    report(
        f"live alerts: Kafka stopped -> RelayKafkaUnavailable firing {kafka_fired:.1f}s; "
        f"Kafka restarted -> resolved {time.monotonic() - started:.1f}s "
        "(both counted from the kafkactl command, RELAY_KAFKA_PROBE_INTERVAL_S=1)"
    )


def screenshot(prometheus: Prometheus, path: Path) -> None:
    """Prometheus' graph page for the lag query, as an operator sees it."""
    query = urlencode({"g0.expr": LAG_QUERY, "g0.tab": "0", "g0.range_input": "1m"})
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={path.parent / '.chromium'}",
            "--hide-scrollbars",
            "--window-size=1400,900",
            "--virtual-time-budget=15000",
            f"--screenshot={path.resolve()}",
            f"{prometheus.url}/graph?{query}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(["rm", "-rf", str(path.parent / ".chromium")], check=True)
