"""docs/METRICS.md, generated from relay/metrics.py: every metric the relay exports,
its type, labels and meaning. A test fails when the page and the code disagree."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from relay.metrics import ForwardMetrics, IngestMetrics, WorkerGroupMetrics

__all__ = ["PATH", "render", "write"]

PATH = Path("docs/METRICS.md")

_HEADER = """\
# Metrics

Generated from `relay/metrics.py` by `make dashboards`; do not edit by hand.
Ingest serves them on its own port (`/metrics`, scrape job `relay-ingest`), forward
on `RELAY_FORWARD_PORT` (`/metrics`, scrape job `relay-forward`).

Label values are bounded: `tenant` comes from the tenants file (`none` for answers
given before a key was checked), `type` and `path` from the event table (`other` for
unknown paths), the rest from fixed sets named in each description. Series whose
label values are known in advance exist from the start with value 0.

Both processes also export prometheus-client's standard `process_*` (CPU, memory,
open file descriptors, start time) and `python_*` (interpreter, garbage collector)
metrics.

`relay ingest --workers N` answers `/metrics` for the whole group, whichever worker
is scraped (`relay/ingest/group_metrics.py`): counters and histograms (with
`process_cpu_seconds_total` and the `python_gc_*` counters) are **summed** over the
workers and never fall when a crashed worker is replaced (the counts last seen of a
dead worker stay in the sum; what it counted after the last scrape is lost); every
gauge has a `worker` label (`0`..`N-1`, kept by a replacement; `supervisor` for the
supervisor's own `process_*`), so queries aggregate by instance: `sum` for in-flight
requests, limits, memory and open files, `max` for the rights cache (each worker keeps
its own), `min` for readiness-like gauges (`relay_kafka_ready`,
`relay_facts_reader_up`). The worker-group metrics below come from the supervisor
(one process without `--workers`: 1, 1, 0).
"""


def _rows(metrics: object) -> list[str]:
    rows = []
    for spec in dataclasses.fields(metrics):  # type: ignore[arg-type]
        metric = getattr(metrics, spec.name)
        # prometheus-client keeps name, labels and help on the metric object only.
        name, labels, help_text = metric._name, metric._labelnames, metric._documentation
        if isinstance(metric, Counter):
            kind, name = "counter", f"{name}_total"
        elif isinstance(metric, Histogram):
            kind = "histogram"
        elif isinstance(metric, Gauge):
            kind = "gauge"
        else:  # pragma: no cover - every field is one of the three
            raise TypeError(f"{spec.name} is not a metric")
        label_text = ", ".join(f"`{label}`" for label in labels) or "-"
        rows.append(f"| `{name}` | {kind} | {label_text} | {help_text} |")
    return sorted(rows)


def render() -> str:
    sections = [_HEADER]
    for title, metrics in (
        ("Ingest (`relay ingest`)", IngestMetrics.create(CollectorRegistry())),
        (
            "Ingest worker group (`relay ingest --workers N`)",
            WorkerGroupMetrics.create(CollectorRegistry(), 1),
        ),
        ("Forward (`relay forward`)", ForwardMetrics.create(CollectorRegistry())),
    ):
        table = ["| metric | type | labels | meaning |", "|---|---|---|---|", *_rows(metrics)]
        sections.append(f"## {title}\n\n" + "\n".join(table) + "\n")
    return "\n".join(sections)


def write(root: Path) -> Path:
    path = root / PATH
    path.write_text(render(), encoding="utf-8")
    return path
