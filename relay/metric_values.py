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
"""

from __future__ import annotations

from typing import Any

import prometheus_client.values as values

__all__ = ["LoopValue", "install"]


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
