"""kill -9 of forward workers while they deliver a backlog: what it costs in duplicates,
and the bound that cost must stay within. Used by the end-to-end test and by
bench/duplicates.py (which runs it N times).

A worker killed with SIGKILL commits nothing more; its partitions' next owner starts
from the last commit, so the upstream sees again

- what the victim delivered since its last commit: at most its delivery rate times
  the commit interval;
- what it delivered before that but could not commit yet, because an earlier offset
  of the same partition was still in flight (a commit never passes an unsettled
  offset): at most its delivery rate times its slowest request;
- what it had in flight (sent, answer not yet read): at most its requests in flight.

Hence the bound per kill: ``delivery rate x (RELAY_COMMIT_INTERVAL_S + slowest
request) + in flight``, each term measured on the victim just before the kill.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from relay.bench.backlog import example_bodies, produce_backlog
from relay.config import Settings
from tests.stack import Process, Stack

__all__ = ["EVENTS", "Kill", "KillRun", "kill_twice", "scrape"]

EVENTS = 8000
KILL_AT = (1500, 4000)  # ledger totals at which a worker is killed
# Two workers share a budget of 1,000 deliveries/s: the offered rate of the test since
# issue 10 §3 (the backlog is offered at once; the budget sets the delivery rate).
WORKER_SETTINGS = {"RELAY_UPSTREAM_BUDGET_RPS": "1000"}
RATE_WINDOW_S = 1.0  # the victim's delivery rate is measured over this, just before the kill
# The sandbox may still finish a request whose sender just died: its ledger time can
# follow the kill by the time the handler takes. Generous: nothing else moves in it.
LATE_ACCEPT_S = 0.5


@dataclass(frozen=True, slots=True)
class Kill:
    at: float  # wall time the signal was sent
    delivery_rate: float  # the victim's deliveries/s over RATE_WINDOW_S before the kill
    in_flight: float  # the victim's relay_forward_in_flight, largest of its last scrapes
    commit_interval_s: float
    # the upper bound of the latency bucket holding every request that ended in the window
    slowest_s: float

    @property
    def bound(self) -> float:
        return self.delivery_rate * (self.commit_interval_s + self.slowest_s) + self.in_flight


@dataclass(frozen=True, slots=True)
class KillRun:
    events: int
    received: int
    missing: int  # accepted ids the upstream never received
    duplicates: int
    kills: tuple[Kill, ...]
    per_kill: tuple[int, ...]  # duplicates caused by each kill
    # per kill: how long before it the oldest event it made the upstream see again was
    # first delivered (the commit lag it cost, in seconds; 0 without duplicates)
    lag_s: tuple[float, ...]
    unexplained: int  # duplicates no kill accounts for

    @property
    def duplicate_pct(self) -> float:
        return 100.0 * self.duplicates / self.events

    def summary(self) -> str:
        kills = "; ".join(
            f"kill {number}: {count} duplicates <= {kill.bound:.0f} "
            f"({kill.delivery_rate:.0f}/s x ({kill.commit_interval_s:g} + {kill.slowest_s:g}) s"
            f" + {kill.in_flight:.0f}),"
            f" oldest first delivered {1000 * lag:.0f} ms before"
            for number, (kill, count, lag) in enumerate(
                zip(self.kills, self.per_kill, self.lag_s, strict=True), 1
            )
        )
        return (
            f"kill -9 twice: {self.events} events, {self.received} received, "
            f"{self.duplicates} duplicates ({self.duplicate_pct:.2f}%), "
            f"{self.unexplained} unexplained, {self.missing} missing; {kills}"
        )


async def scrape(process: Process) -> dict[str, float]:
    """Every sample of ``process``'s /metrics, summed over labels, by sample name
    (``relay_forward_deliveries_total`` only counts outcome="delivered"; histogram
    buckets keep their bound: ``name{le}``)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(process.url + "/metrics") as response,
    ):
        text = await response.text()
    sums: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            counted = sample.labels.get("outcome", "delivered") == "delivered"
            if sample.name == "relay_forward_deliveries_total" and not counted:
                continue
            name = sample.name
            if name.endswith("_bucket"):
                name += "{" + sample.labels["le"] + "}"
            sums[name] += sample.value
    return sums


async def _kill(victim: Process, commit_interval_s: float) -> Kill:
    """Measure the victim over RATE_WINDOW_S, then SIGKILL it at once."""
    first = await scrape(victim)
    began = time.monotonic()
    in_flight = [first["relay_forward_in_flight"]]
    while time.monotonic() - began < RATE_WINDOW_S:
        await asyncio.sleep(0.25)  # a scrape costs the victim's loop too: a few only
        in_flight.append((await scrape(victim))["relay_forward_in_flight"])
    last = await scrape(victim)
    elapsed = time.monotonic() - began
    at = time.time()
    victim.kill9()
    delivered = last["relay_forward_deliveries_total"] - first["relay_forward_deliveries_total"]
    # In flight: the largest of the gauge's readings over the window, the last one taken
    # milliseconds before the signal. The gauge counts requests on the wire (sent,
    # answer unread); an average would not be a bound.
    in_flight.append(last["relay_forward_in_flight"])
    return Kill(at, delivered / elapsed, max(in_flight), commit_interval_s, _slowest(first, last))


def _slowest(first: dict[str, float], last: dict[str, float]) -> float:
    """The smallest latency bucket bound that holds every request ended between the
    two scrapes (the histogram is cumulative: its count at that bound grew as much
    as the total did)."""
    prefix = "relay_forward_upstream_seconds_bucket{"
    ended = last.get(prefix + "+Inf}", 0.0) - first.get(prefix + "+Inf}", 0.0)
    bounds = sorted(float(key[len(prefix) : -1]) for key in last if key.startswith(prefix))
    for bound in bounds:
        key = f"{prefix}{_le(bound)}}}"
        if last.get(key, 0.0) - first.get(key, 0.0) >= ended:
            return bound
    return bounds[-1] if bounds else 0.0


def _le(bound: float) -> str:
    """The ``le`` label as prometheus-client writes it."""
    return "+Inf" if bound == float("inf") else repr(bound)


async def _wait_total(stack: Stack, target: int, bound: float = 60.0) -> None:
    async with asyncio.timeout(bound):
        while (await stack.ledger(entries=False))["total"] < target:
            await asyncio.sleep(0.05)


async def kill_twice(stack: Stack, progress: Callable[[str], None] = lambda _: None) -> KillRun:
    """A backlog of EVENTS through two workers; one killed (SIGKILL) at each total of
    KILL_AT and replaced by a new one; returns once every event was received."""
    commit_interval_s = Settings.from_env(
        {k: v for k, v in stack.base_env().items() if k.startswith("RELAY_")}
    ).commit_interval_s
    progress(f"writing {EVENTS} events")
    ids = await produce_backlog(stack.bootstrap, stack.prefix, example_bodies(EVENTS))
    first = await stack.start("forward", **WORKER_SETTINGS)
    await stack.start("forward", **WORKER_SETTINGS)
    kills = []
    for number, target in enumerate(KILL_AT, 1):
        progress(f"waiting for {target} deliveries")
        await _wait_total(stack, target)
        victim = first if number == 1 else stack.processes[-1]
        progress(f"kill {number}")
        kills.append(await _kill(victim, commit_interval_s))
        await stack.start("forward", **WORKER_SETTINGS)
    progress("waiting for the rest")
    ledger = await stack.wait_ledger(set(ids), bound=180)
    per_kill, lag_s, unexplained = _attribute(ledger["entries"], kills)
    received = {entry["idempotencyKey"] for entry in ledger["entries"]}
    return KillRun(
        events=len(ids),
        received=ledger["total"],
        missing=len(set(ids) - received),
        duplicates=ledger["duplicates"],
        kills=tuple(kills),
        per_kill=per_kill,
        lag_s=lag_s,
        unexplained=unexplained,
    )


def _attribute(
    entries: list[dict[str, object]], kills: list[Kill]
) -> tuple[tuple[int, ...], tuple[float, ...], int]:
    """Each duplicate to the kill that caused it: the first kill after the id's first
    delivery (which must then come again after that kill). Duplicates no kill explains
    (a redelivery without a crash) are counted apart."""
    first_seen: dict[object, float] = {}
    per_kill = [0] * len(kills)
    lag_s = [0.0] * len(kills)
    unexplained = 0
    for entry in entries:
        key, at = entry["idempotencyKey"], float(entry["at"])  # type: ignore[arg-type]
        if key not in first_seen:
            first_seen[key] = at
            continue
        cause = next(
            (n for n, kill in enumerate(kills) if first_seen[key] <= kill.at + LATE_ACCEPT_S),
            None,
        )
        if cause is None or at < kills[cause].at:
            unexplained += 1
        else:
            per_kill[cause] += 1
            lag_s[cause] = max(lag_s[cause], kills[cause].at - first_seen[key])
    return tuple(per_kill), tuple(lag_s), unexplained


def spread(values: list[float]) -> str:
    """min / median / max, for reports of several runs."""
    return f"min {min(values):.2f}, median {statistics.median(values):.2f}, max {max(values):.2f}"
