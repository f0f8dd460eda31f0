"""One /metrics for a group of ingest workers, whichever of them answers the scrape.

Each worker keeps its own registry, whole: custom collectors, ``set_function`` gauges,
``process_*`` and ``python_*`` (what prometheus-client's multiprocess mode would lose,
and no shared-memory write on the hot path). The supervisor reads every worker's
exposition over a unix socket and merges them here:

- counters, histograms and summaries are **summed** over workers, label set by label
  set (``relay_ingest_requests_total`` is the group's requests);
- gauges keep one series per worker with a ``worker`` label (``"0"``...; the
  supervisor's own process is ``"supervisor"``): a dashboard sums or takes the min by
  instance, as it says;
- ``<counter>_created`` is the earliest over workers.

A worker that crashes takes its counts since the last scrape with it, but a sum never
goes down: the last counts the merge saw of that process stay in the total after its
replacement starts from 0 (Prometheus would read a falling sum as a reset and count
the survivors' whole totals again). A worker whose scrape fails keeps its last counts
in the sum and has no gauges in that answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

__all__ = ["GroupMetrics", "Scrape"]

_SUMMED = frozenset({"counter", "histogram", "summary"})
_CREATED = "_created"
_Key = tuple[str, str, tuple[tuple[str, str], ...]]  # family, sample, labels


@dataclass(frozen=True, slots=True)
class Scrape:
    """What one process of the group answered: its pid (a new pid is a new process,
    counting from 0) and its exposition, or None when it did not answer."""

    pid: int
    text: str | None


@dataclass(slots=True)
class _Seen:
    pid: int
    counts: dict[_Key, float] = field(default_factory=dict)


class GroupMetrics:
    """The merge, with the memory that keeps sums from going down. Not thread-safe:
    one merge at a time (the supervisor serialises its scrapes)."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str]] = {}  # name -> (type, help)
        self._seen: dict[str, _Seen] = {}  # by worker label
        self._retired: dict[_Key, float] = {}  # last counts of processes gone

    def merge(self, scrapes: Mapping[str, Scrape]) -> bytes:
        """The group's exposition (text format 0.0.4) from each worker's, by label."""
        gauges: dict[str, list[Sample]] = {}
        created: dict[_Key, float] = {}
        for worker, scrape in scrapes.items():
            seen = self._seen.get(worker)
            if seen is None or seen.pid != scrape.pid:
                if seen is not None:
                    self._retire(seen)
                seen = self._seen[worker] = _Seen(scrape.pid)
            if scrape.text is None:
                continue
            counts: dict[_Key, float] = {}
            for family in text_string_to_metric_families(scrape.text):
                self._families.setdefault(family.name, (family.type, family.documentation))
                if family.type in _SUMMED:
                    for sample in family.samples:
                        counts[_key(family.name, sample)] = sample.value
                elif family.name.endswith(_CREATED) and self._summed(family.name[: -len(_CREATED)]):
                    for sample in family.samples:
                        key = _key(family.name, sample)
                        created[key] = min(created.get(key, sample.value), sample.value)
                else:
                    gauges.setdefault(family.name, []).extend(
                        Sample(s.name, {**s.labels, "worker": worker}, s.value)
                        for s in family.samples
                    )
            seen.counts = counts
        for worker in set(self._seen) - set(scrapes):  # stopped for good (or replaced)
            self._retire(self._seen.pop(worker))
        return self._exposition(self._sums(), created, gauges)

    def _summed(self, name: str) -> bool:
        kind = self._families.get(name)
        return kind is not None and kind[0] in _SUMMED

    def _retire(self, seen: _Seen) -> None:
        for key, value in seen.counts.items():
            self._retired[key] = self._retired.get(key, 0.0) + value

    def _sums(self) -> dict[_Key, float]:
        sums = dict(self._retired)
        for seen in self._seen.values():
            for key, value in seen.counts.items():
                sums[key] = sums.get(key, 0.0) + value
        return sums

    def _exposition(
        self,
        sums: Mapping[_Key, float],
        created: Mapping[_Key, float],
        gauges: Mapping[str, list[Sample]],
    ) -> bytes:
        samples: dict[str, list[Sample]] = {name: list(s) for name, s in gauges.items()}
        for (family, name, labels), value in (*sums.items(), *created.items()):
            samples.setdefault(family, []).append(Sample(name, dict(labels), value))
        metrics = []
        for name, (kind, documentation) in self._families.items():
            if name not in samples:
                continue
            metric = Metric(name, documentation, kind)
            metric.samples = samples[name]
            metrics.append(metric)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed(metrics))
        return generate_latest(registry)


def _key(family: str, sample: Sample) -> _Key:
    return family, sample.name, tuple(sorted(sample.labels.items()))


class _Fixed:
    """A collector that yields families already built."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics
