"""Metric values without a lock: every metric of a relay process is updated on its
event loop's thread.

prometheus-client keeps each series' value in a ``MutexValue``, a float behind a
``threading.Lock`` taken on every update and every read, so that threads may share a
metric. A relay process has one thread that touches metrics: ingest and forward run
on one asyncio loop, start no threads (nothing in ``relay/`` does), and their
/metrics is generated on the same loop; a worker group merges its workers'
expositions instead of sharing memory (``relay.ingest.group_metrics``). The lock is
then pure cost, paid four times on every single event the front door takes (a
counter and a histogram of the answer, the produce histogram, the check's counter):
without it ingest used 3.1-4.6 % less CPU a request (``bench/paired_cpu.sh``, 4
rounds; without those four updates at all, 9-10 % less: docs/PERFORMANCE.md,
thirteenth session).

``install`` makes ``LoopValue`` the class prometheus-client gives every series created
afterwards (``relay.metrics`` calls it on import, before any relay metric exists). It
leaves prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) alone:
that value class writes to shared files, and the relay does not use it.

On such values a counter's ``inc`` and a histogram's ``observe`` can be one Python
call each instead of three or four: ``LoopCounter`` and ``LoopHistogram`` add to the
values themselves, and the histogram finds its bucket by bisection instead of trying
each bound in turn (0.4 -> 0.18 us an ``inc``, 0.5-1.2 -> 0.43-0.49 us an ``observe``,
timeit). ``metric_classes`` gives them only when ``LoopValue`` is installed.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

import prometheus_client.values as values
from prometheus_client import Counter, Histogram

__all__ = ["LoopCounter", "LoopHistogram", "LoopValue", "install", "metric_classes"]


class LoopValue:
    """``MutexValue``'s interface (prometheus-client 0.2x), without the lock: for
    metrics updated and read on one thread only."""

    _multiprocess = False

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        self._value = 0.0
        self._exemplar: Any = None

    def inc(self, amount: float) -> None:
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._value = value

    def set_exemplar(self, exemplar: Any) -> None:
        self._exemplar = exemplar

    def get(self) -> float:
        return self._value

    def get_exemplar(self) -> Any:
        return self._exemplar


def install() -> bool:
    """Make ``LoopValue`` the value class of series created from now on, unless
    prometheus-client runs in multiprocess mode; True when it did (or had)."""
    if values.ValueClass is LoopValue:
        return True
    if values.ValueClass is not values.MutexValue:  # multiprocess mode: not ours to change
        return False
    values.ValueClass = LoopValue
    return True


class LoopCounter(Counter):
    """A counter whose ``inc`` adds to its ``LoopValue`` directly."""

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        if amount < 0 or exemplar:  # refused, or kept, as prometheus-client does
            return super().inc(amount, exemplar)
        try:
            self._value._value += amount
        except AttributeError:  # a labelled metric's parent: prometheus-client's error
            super().inc(amount)
        return None


class LoopHistogram(Histogram):
    """A histogram whose ``observe`` adds to its ``LoopValue``s directly, into the first
    bucket whose bound is not below the amount (observe's ``amount <= bound``; +Inf
    is the last bound)."""

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        if exemplar or amount != amount:  # NaN is in no bucket there: not bisectable
            return super().observe(amount, exemplar)
        try:
            self._sum._value += amount
        except AttributeError:  # a labelled metric's parent: prometheus-client's error
            return super().observe(amount)
        self._buckets[bisect_left(self._upper_bounds, amount)]._value += 1
        return None


def metric_classes() -> tuple[type[Counter], type[Histogram]]:
    """The counter and histogram classes to define metrics with: the direct ones when
    ``LoopValue`` is installed, prometheus-client's own otherwise (their values may
    write to shared files)."""
    if values.ValueClass is LoopValue:
        return LoopCounter, LoopHistogram
    return Counter, Histogram
