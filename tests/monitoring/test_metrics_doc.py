"""docs/METRICS.md says what relay/metrics.py defines, and everything the processes
register is in it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from relay.metrics import ForwardMetrics, IngestMetrics
from relay.monitoring import metrics_doc
from tests.brokers import ROOT


def test_the_checked_in_page_is_what_the_code_generates() -> None:
    page = (ROOT / metrics_doc.PATH).read_text()
    assert page == metrics_doc.render(), "docs/METRICS.md is stale: run `make dashboards`"


def test_every_registered_relay_metric_is_documented_with_its_type() -> None:
    page = metrics_doc.render()
    for create in (IngestMetrics.create, ForwardMetrics.create):
        registry = CollectorRegistry()
        create(registry, ["acme"])
        families = [family for family in registry.collect() if family.name.startswith("relay_")]
        assert len(families) >= 10
        for family in families:
            name = f"{family.name}_total" if family.type == "counter" else family.name
            assert f"| `{name}` | {family.type} |" in page, name
