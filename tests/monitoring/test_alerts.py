"""The alert rules: the checked-in file is what the code generates, every alert is
documented in the runbook, promtool accepts the rules and their unit tests, and the
thresholds feed the expressions."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from relay.monitoring import alerts
from relay.monitoring.thresholds import DEFAULT, Thresholds

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RUNBOOK = ROOT / "docs" / "RUNBOOK.md"

ALERTS = [
    "RelayIngestDown",
    "RelayForwardDown",
    "RelayKafkaUnavailable",
    "RelayFactsReaderDown",
    "RelayIngestWorkersMissing",
    "RelayIngestRefusing",
    "RelayDeliveryStalled",
    "RelayLagHigh",
    "RelayDeadLetters",
    "RelayTenantPaused",
    "RelayUpstreamErrors",
    "RelayBudgetSaturated",
    "RelayEventsExpired",
    "RelayUndeliverableRecords",
    "RelayPartitionStuck",
    "RelayRebalanceStorm",
]


def _rules(text: str) -> dict[str, dict[str, object]]:
    groups = yaml.safe_load(text)["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install Debian's prometheus package (make lint does)")
    return subprocess.run(
        [promtool, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, check=False
    )


def test_checked_in_rules_are_generated() -> None:
    checked_in = (PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8")
    assert checked_in == alerts.render(), (
        "deploy/prometheus/alerts.yml is stale: run `make dashboards`"
    )


def test_every_alert_is_documented() -> None:
    rules = _rules(alerts.render())
    assert sorted(rules) == sorted(ALERTS)
    headings = {
        line.removeprefix("## ").strip().lower()
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    }
    for name, rule in rules.items():
        labels, annotations = rule["labels"], rule["annotations"]
        assert isinstance(labels, dict)
        assert isinstance(annotations, dict)
        assert labels["severity"] in {"page", "ticket"}, name
        assert annotations["summary"], name
        assert annotations["description"], name
        url = annotations["runbook_url"]
        assert url == f"{alerts.RUNBOOK_URL}#{name.lower()}"
        assert url.partition("#")[2] in headings, f"docs/RUNBOOK.md has no section {name}"


def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_feed_the_rules() -> None:
    shortened = dataclasses.replace(
        DEFAULT,
        down_for="11s",
        kafka_unavailable_for="12s",
        rate_window="13s",
        refusing_share=0.0123,
        refusing_for="14s",
        stalled_window="15s",
        stalled_for="16s",
        lag_high_s=17,
        lag_high_for="18s",
        dead_letters_per_minute=19.5,
        dead_letters_for="20s",
        tenant_paused_for="21s",
        upstream_error_share=0.0222,
        upstream_errors_for="22s",
        budget_saturated_share=0.0233,
        budget_saturated_for="23s",
        lag_growth_window="24s",
        expired_window="25s",
        expired_for="26s",
        undeliverable_window="27s",
        undeliverable_for="28s",
        span_full_for="29s",
        rebalance_window="30s",
        rebalance_storm_count=31,
        rebalance_storm_for="32s",
    )
    rules = _rules(alerts.render(shortened))
    expected = {
        "RelayIngestDown": ("11s", []),
        "RelayForwardDown": ("11s", []),
        "RelayKafkaUnavailable": ("12s", []),
        "RelayIngestRefusing": ("14s", ["[13s]", "> 0.0123"]),
        "RelayDeliveryStalled": ("16s", ["[15s]"]),
        "RelayLagHigh": ("18s", ["> 17"]),
        "RelayDeadLetters": ("20s", ["[13s]", "> 19.5"]),
        "RelayTenantPaused": ("21s", []),
        "RelayUpstreamErrors": ("22s", ["[13s]", "> 0.0222"]),
        "RelayBudgetSaturated": ("23s", ["[13s]", ">= 0.0233 *", "[24s:]"]),
        "RelayEventsExpired": ("26s", ["[25s]"]),
        "RelayUndeliverableRecords": ("28s", ["[27s]"]),
        "RelayPartitionStuck": ("29s", []),
        "RelayRebalanceStorm": ("32s", ["[30s]", "> 31"]),
    }
    for name, (for_, fragments) in expected.items():
        assert rules[name]["for"] == for_, name
        expr = rules[name]["expr"]
        assert isinstance(expr, str)
        for fragment in fragments:
            assert fragment in expr, f"{name}: {fragment!r} not in {expr!r}"
    # Nothing of the defaults is left behind.
    default_windows = {
        "[5m]",
        "[10m]",
        "[15m]",
        "[10m:]",
        "> 900",
        "> 0.05",
        "> 0.1",
        "> 10",
        "> 5",
    }
    for name, rule in rules.items():
        for window in default_windows:
            assert window not in str(rule["expr"]), f"{name} ignores the thresholds: {window}"


def test_no_exact_matchers_on_bucket_or_quantile_labels() -> None:
    for name, rule in _rules(alerts.render()).items():
        expr = str(rule["expr"])
        assert not re.search(r'\b(le|quantile)\s*=\s*"', expr), name


def test_the_runbook_table_gives_every_threshold_its_current_value() -> None:
    """The runbook's table is prose around the values; the values must be the code's."""
    rows = {}
    for line in (ROOT / "docs" / "RUNBOOK.md").read_text().splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[1]
    for spec in dataclasses.fields(Thresholds):
        value = getattr(DEFAULT, spec.name)
        assert spec.name in rows, f"docs/RUNBOOK.md has no row for {spec.name}"
        shown = rows[spec.name]
        if isinstance(value, str):
            assert shown == value, spec.name
        else:
            # "900 (15m)", "0.5 s", "10", or a share as "5%"
            number = float(shown.split()[0].rstrip("%"))
            assert number == (value * 100 if shown.endswith("%") else value), spec.name


def test_budget_rules_leave_out_unlimited_and_unknown_budgets() -> None:
    """+Inf (unlimited) and 0 (share recounted, no partition owned) bound nothing."""
    expr = str(_rules(alerts.render())["RelayBudgetSaturated"]["expr"])
    assert "> 0 < +Inf)" in expr


def test_undeliverable_and_expired_letters_are_told_apart() -> None:
    rules = _rules(alerts.render())
    assert 'reason="expired"' in str(rules["RelayEventsExpired"]["expr"])
    assert 'reason=~"undecodable|unknown_tenant"' in str(rules["RelayUndeliverableRecords"]["expr"])
