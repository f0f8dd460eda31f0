"""The relay's Grafana dashboard, generated with Grafana's own SDK (grafana-foundation-sdk,
the build for Grafana 11.6) and checked in as ``deploy/grafana/relay-dashboard.json``.

Every query names its scrape job (``relay-ingest`` or ``relay-forward``) and returns data
on a healthy stack: the relay initialises its labelled series, and shares divide by a
clamped total, so no panel is empty by construction. Threshold lines come from
``relay.monitoring.thresholds``, the same values the alert rules use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as model

from relay.monitoring.thresholds import DEFAULT, Thresholds

__all__ = ["DASHBOARD_PATH", "build", "panel_queries", "render", "write"]

DASHBOARD_PATH = Path("deploy/grafana/relay-dashboard.json")

INGEST = 'job="relay-ingest"'
FORWARD = 'job="relay-forward"'
JOBS = (INGEST, FORWARD)
RATE = "$__rate_interval"
# Panels and variables follow the dashboard's own datasource variable, so the JSON
# imports as-is (no __inputs) and works whatever the Prometheus datasource's uid is.
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Shares divide by the total clamped to this, so an idle front door shows 0, not nothing.
NO_TRAFFIC = "1e-9"
PANEL_WIDTH = 8  # three panels to a line of Grafana's 24-column grid
PANEL_HEIGHT = 8

# Values panel_queries gives Grafana's built-in variables unless told otherwise.
_BUILTIN_VALUES = {"__rate_interval": "1m", "__interval": "30s", "__range": "1h"}
# $name, ${name}, ${name:format} and the deprecated [[name]]: Grafana's own forms.
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
_ALL = ("All", "$__all")

Target = tuple[str, str]  # (PromQL expression, legend)


def build(thresholds: Thresholds = DEFAULT) -> model.Dashboard:
    """The dashboard; ``thresholds`` places the answer-time and lag threshold lines."""
    board = (
        dashboard_builders.Dashboard("Relay")
        .uid("relay")
        .description("Front door (ingest), forwarding to the upstream, and both processes.")
        .tags(["relay", "kafka"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .annotation(
            # Grafana's built-in annotations (alerts, manual notes), as its own export has.
            dashboard_builders.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .type("dashboard")
            .built_in(1)
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
        )
        .with_variable(
            dashboard_builders.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
        )
        .with_variable(_label_variable("tenant", "Tenant"))
        .with_variable(_label_variable("type", "Event type"))
    )
    # Rows stay open: their panels follow them at the top level, as Grafana keeps them.
    for title, panels in (
        ("Front door", _front_door(thresholds)),
        ("Forwarding", _forwarding(thresholds)),
        ("Processes", _processes()),
    ):
        board.with_row(dashboard_builders.Row(title))
        for panel in panels:
            board.with_panel(panel)
    built = board.build()
    # Grafana wants ids unique within the dashboard; numbering in order keeps them stable.
    for panel_id, placed in enumerate(built.panels or [], start=1):
        placed.id_val = panel_id
    return built


def render(thresholds: Thresholds = DEFAULT) -> str:
    """The dashboard as stable JSON: sorted keys, two-space indent, a final newline."""
    return json.dumps(build(thresholds), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def write(root: Path) -> Path:
    """Write the dashboard under ``root`` (the repository) and return the file's path."""
    path = root / DASHBOARD_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return path


def panel_queries(
    dashboard_json: Mapping[str, Any], variables: Mapping[str, str]
) -> list[tuple[str, str]]:
    """(panel title, expression) for every target of every panel, rows' panels included,
    with template variables replaced as Grafana would.

    A variable given "All" (or "$__all") takes the variable's ``allValue``; built-ins
    (``__rate_interval`` ...) default to fixed values. Raises ValueError for a variable
    with no value.
    """
    all_values = {
        variable["name"]: variable.get("allValue") or ".*"
        for variable in dashboard_json.get("templating", {}).get("list", [])
        if variable.get("includeAll")
    }
    values = {**_BUILTIN_VALUES, **variables}

    def substitute(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise ValueError(f"no value for template variable ${name}")
        value = values[name]
        return all_values[name] if value in _ALL and name in all_values else value

    return [
        (panel["title"], _VARIABLE.sub(substitute, target["expr"]))
        for panel in _panels(dashboard_json)
        for target in panel.get("targets") or []
    ]


def _panels(dashboard_json: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for panel in dashboard_json.get("panels") or []:
        if panel.get("type") == "row":
            yield from panel.get("panels") or []
        else:
            yield panel


def _label_variable(name: str, label: str) -> dashboard_builders.QueryVariable:
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values(relay_forward_deliveries_total, {name})")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )


def _front_door(thresholds: Thresholds) -> list[Builder[model.Panel]]:
    requests = "relay_ingest_requests_total"
    tenant = f'{INGEST}, tenant=~"$tenant"'
    stamped = _rate("relay_ingest_timestamps_stamped_total", f'{INGEST}, type=~"$type"')
    checks = _rate("relay_ingest_event_checks_total", f'{INGEST}, type=~"$type"')
    return [
        _timeseries(
            "Requests/s by path and status class",
            "Front door answers per second, one series per event path and status class.",
            units.RequestsPerSecond,
            *[
                (f"sum by (path) ({_rate(requests, _status_class(tenant, digit))})", legend)
                for digit, legend in (
                    ("2", "{{path}} 2xx"),
                    ("4", "{{path}} 4xx"),
                    ("5", "{{path}} 5xx"),
                )
            ],
        ),
        _timeseries(
            "Answer time p50 / p99",
            "Time to answer an event (all paths; the histogram has no tenant label). "
            "The red line is the p99 alert threshold.",
            units.Seconds,
            *_quantiles("relay_ingest_request_seconds", INGEST),
        )
        .thresholds(_threshold(thresholds.answer_p99_s))
        .thresholds_style(_line()),
        _timeseries(
            "4xx and 5xx share",
            "Share of answers that are client errors, and of 5xx: 503 (Kafka failing or "
            "not answering, or no in-flight slot within the deadline) and 500 (a bug), as "
            "RelayIngestRefusing counts them.",
            units.PercentUnit,
            (_share(requests, _status_class(tenant, "4"), tenant), "4xx"),
            (_share(requests, _status_class(tenant, "5"), tenant), "5xx"),
        ).min(0),
        _timeseries(
            "In flight against limit",
            "Events waiting for Kafka per ingest instance (all its workers), and the bound "
            "(RELAY_INGEST_MAX_IN_FLIGHT per worker, summed); beyond a worker's bound "
            "requests wait for a slot (next panels).",
            units.Short,
            (f"sum by (instance) (relay_ingest_in_flight{{{INGEST}}})", "{{instance}} in flight"),
            (f"sum by (instance) (relay_ingest_in_flight_limit{{{INGEST}}})", "{{instance}} limit"),
        ).min(0),
        *_admission(),
        _timeseries(
            "Produce latency p50 / p99",
            "Time for Kafka to acknowledge an event.",
            units.Seconds,
            *_quantiles("relay_ingest_produce_seconds", f'{INGEST}, type=~"$type"'),
        ),
        _timeseries(
            "Timestamps stamped/s by type and reason",
            "Events the relay gave its receive time as timestamp: missing (none sent) or "
            "implausible (before 2000, or more than a day ahead: a wrong device clock). A "
            "rise in implausible points at a client fleet with broken clocks.",
            units.RequestsPerSecond,
            (f"sum by (type, reason) ({stamped})", "{{type}} {{reason}}"),
        ).min(0),
        _timeseries(
            "Single events/s by check",
            "Single-event requests per second that reached the event check, by type and "
            "the check that took them: compiled (the strict form, checked in one pass by "
            "native/) or python (any other body, an Idempotency-Key, envelope v1, "
            "/app-start). Events that go python cost more CPU each: a fleet sending ids "
            "or booleans as strings shows here.",
            units.RequestsPerSecond,
            (f"sum by (type, check) ({checks})", "{{type}} {{check}}"),
        ).min(0),
        _kafka_ready(),
        *_batches(),
        *_upstream_asked(),
    ]


def _admission() -> list[Builder[model.Panel]]:
    """Requests waiting for an in-flight slot (a burst), and the 503s of the front door
    split into clean ones (nothing written) and ambiguous ones (may still be written)."""
    waits = "relay_ingest_admission_wait_seconds"
    # A quantile of no waits is NaN, which draws nothing: 0 then (no one waited).
    wait_p99 = (
        f"(histogram_quantile(0.99, sum by (le) ({_rate(f'{waits}_bucket', INGEST)})) >= 0)"
        " or vector(0)"
    )
    return [
        _timeseries(
            "Waiting for an in-flight slot",
            "Requests per ingest process waiting for a slot (all RELAY_INGEST_MAX_IN_FLIGHT "
            "taken), and the queue's bound RELAY_INGEST_MAX_WAITING (503 at once beyond).",
            units.Short,
            (
                f"sum by (instance) (relay_ingest_admission_waiting{{{INGEST}}})",
                "{{instance}} waiting",
            ),
            (
                f"sum by (instance) (relay_ingest_admission_max_waiting{{{INGEST}}})",
                "{{instance}} bound",
            ),
        ).min(0),
        _timeseries(
            "Admission wait p99 and mean",
            "How long requests that found every in-flight slot taken waited for one "
            "(0: nobody waited). Bounded by RELAY_PRODUCE_TIMEOUT_S.",
            units.Seconds,
            (wait_p99, "p99"),
            (
                f"sum({_rate(f'{waits}_sum', INGEST)}) / "
                f"clamp_min(sum({_rate(f'{waits}_count', INGEST)}), 1e-9)",
                "mean",
            ),
        ).min(0),
        _timeseries(
            "Waits, clean refusals and ambiguous answers/s",
            "Requests that waited for a slot; 503s with nothing written (queue_full, "
            "deadline); and ambiguous 503s, for events handed to Kafka without a verdict "
            "(they may still be written, so retries may duplicate them): 0 in a healthy "
            "cluster, however bursty the load.",
            units.RequestsPerSecond,
            (f"sum({_rate(f'{waits}_count', INGEST)})", "waited"),
            (
                f"sum by (reason) ({_rate('relay_ingest_admission_refusals_total', INGEST)})",
                "refused: {{reason}}",
            ),
            (
                f"sum by (type) ({_rate('relay_ingest_ambiguous_answers_total', INGEST)})",
                "ambiguous: {{type}}",
            ),
        ).min(0),
    ]


def _batches() -> list[Builder[model.Panel]]:
    """POST /batch: how big the batches are, and what became of their events."""
    items = _rate("relay_ingest_batch_items_total", INGEST)
    return [
        _timeseries(
            "Batch events/s by outcome",
            "Events of POST /batch per second: accepted (durable), invalid, no_rights, "
            "unavailable (SERVICE_UNAVAILABLE: the client sends them again) and refused. "
            "Unavailable rising with accepted falling is Kafka not keeping up.",
            units.Short,
            (f"sum by (outcome) ({items})", "{{outcome}}"),
        ).min(0),
        _timeseries(
            "Batches/s and events per batch",
            "POST /batch requests that reached their events per second, by the check that "
            "took them (compiled: every event in the strict form, checked in one pass, a third "
            "less CPU an event; python: any other batch), and their mean size (0 while "
            "none come: a quantile of no batches would draw nothing). The inbound limit "
            "counts each batch's events.",
            units.Short,
            (
                f"sum by (check) ({_rate('relay_ingest_batch_checks_total', INGEST)})",
                "batches/s: {{check}}",
            ),
            (
                f"sum({_rate('relay_ingest_batch_events_sum', INGEST)}) / "
                f"clamp_min(sum({_rate('relay_ingest_batch_events_count', INGEST)}), 1e-9)",
                "events per batch",
            ),
        ).min(0),
    ]


def _upstream_asked() -> list[Builder[model.Panel]]:
    """What ingest asks the upstream itself, and what it knows of rights."""
    calls = "relay_ingest_upstream_calls_total"
    return [
        _timeseries(
            "Ingest's upstream calls/s by kind and outcome",
            "Calls ingest makes itself: batched /music-check (RELAY_RIGHTS_UNKNOWN=deny) and "
            "the /app-start that teaches the appId. throttled: not made, over "
            "RELAY_INGEST_UPSTREAM_RPS (the client got 503 under deny).",
            units.RequestsPerSecond,
            (f"sum by (kind, outcome) ({_rate(calls, INGEST)})", "{{kind}} {{outcome}}"),
        ).min(0),
        _timeseries(
            "Clips per rights check (mean)",
            "Clip ids per /music-check call ingest makes (bounded by RELAY_RIGHTS_BATCH_MAX); "
            "0 while ingest makes none (a quantile of no calls would draw nothing).",
            units.Short,
            (
                f"sum({_rate('relay_ingest_rights_check_clips_sum', INGEST)}) / "
                f"clamp_min(sum({_rate('relay_ingest_rights_check_clips_count', INGEST)}), 1e-9)",
                "clips per call",
            ),
        ).min(0),
        _timeseries(
            "Rights cache size and facts reader",
            "Clip rights each ingest instance knows (the largest of its workers' caches, each "
            "bounded by RELAY_RIGHTS_CACHE_MAX), and whether every facts reader follows the "
            "facts topic (1) or one failed (0).",
            units.Short,
            (f"max by (instance) (relay_rights_cache_size{{{INGEST}}})", "{{instance}} clips"),
            (f"min by (instance) (relay_facts_reader_up{{{INGEST}}})", "{{instance}} reader up"),
            (
                f"sum by (instance) ({_rate('relay_facts_reader_failures_total', INGEST)})",
                "{{instance}} reader failures/s",
            ),
        ).min(0),
    ]


def _forwarding(thresholds: Thresholds) -> list[Builder[model.Panel]]:
    selected = f'{FORWARD}, tenant=~"$tenant", type=~"$type"'
    tenant_only = f'{FORWARD}, tenant=~"$tenant"'
    return [
        _timeseries(
            "Deliveries/s by outcome",
            "Delivery attempts per second: delivered, retry, dead_letter, parked, "
            "already_delivered.",
            units.EventsPerSecond,
            (
                f"sum by (outcome) ({_rate('relay_forward_deliveries_total', selected)})",
                "{{outcome}}",
            ),
        ),
        _timeseries(
            "Upstream latency p50 / p99",
            "Upstream request latency; the last bucket is the upstream timeout.",
            units.Seconds,
            *_quantiles("relay_forward_upstream_seconds", selected),
        ),
        _timeseries(
            "Budget used against budget",
            "Upstream requests per second per tenant (all event types) against the "
            "tenant's budget, summed over workers' shares (a worker owning none of the "
            "tenant's partitions, or recounting its share, adds 0). An unlimited budget "
            "(+Inf) draws no budget line.",
            units.RequestsPerSecond,
            (
                f"sum by (tenant) ({_rate('relay_forward_upstream_seconds_count', tenant_only)})",
                "{{tenant}} used",
            ),
            (
                "sum by (tenant) "
                f"(relay_forward_budget_requests_per_second{{{tenant_only}}}) < +Inf",
                "{{tenant}} budget",
            ),
        ).min(0),
        _timeseries(
            "Concurrency limit per type",
            "Adaptive concurrency limit per tenant and event type, summed over workers.",
            units.Short,
            (
                f"sum by (tenant, type) (relay_forward_concurrency_limit{{{selected}}})",
                "{{tenant}} {{type}}",
            ),
        ).min(0),
        _timeseries(
            "Lag (events)",
            "Events between the committed offset and the end of the partitions.",
            units.Short,
            (
                f"sum by (tenant, type) (relay_forward_consumer_lag{{{selected}}})",
                "{{tenant}} {{type}}",
            ),
        ).min(0),
        _timeseries(
            "Lag (seconds)",
            "Age of the oldest event not yet delivered (0 when all is committed). The red "
            "line is the lag alert threshold.",
            units.Seconds,
            (
                f"max by (tenant, type) (relay_forward_oldest_undelivered_seconds{{{selected}}})",
                "{{tenant}} {{type}}",
            ),
        )
        .min(0)
        .thresholds(_threshold(thresholds.lag_high_s))
        .thresholds_style(_line()),
        _timeseries(
            "Event age at delivery p50 / p99",
            "Time from the front door's receipt to the upstream's acceptance.",
            units.Seconds,
            *_quantiles("relay_forward_event_age_seconds", selected),
        ),
        _timeseries(
            "Dead letters by reason",
            "Events written to the DLQ per minute, by tenant and reason: permanent "
            "(refused by the upstream), retries_exhausted, expired (kept failing for "
            "RELAY_RETRY_MAX_AGE_S: RelayEventsExpired), undecodable and unknown_tenant "
            "(ingest and forward disagree: RelayUndeliverableRecords).",
            units.EventsPerMinute,
            (
                "60 * sum by (tenant, reason) "
                f"({_rate('relay_forward_dead_letters_total', selected)})",
                "{{tenant}} {{reason}}",
            ),
        ).min(0),
        _timeseries(
            "Paused tenants",
            "1 while delivery for a tenant is paused (dlq_limit, credentials_rejected).",
            units.NoUnit,
            (
                f"max by (tenant, reason) (relay_forward_paused{{{tenant_only}}})",
                "{{tenant}} {{reason}}",
            ),
        )
        .min(0)
        .max(1)
        .decimals(0)
        .line_interpolation(common.LineInterpolation.STEP_AFTER),
        _timeseries(
            "Token refreshes",
            "Bearer tokens fetched from /authenticate per tenant, in each rate interval.",
            units.Short,
            (
                "sum by (tenant) "
                f"({_rate('relay_forward_token_refreshes_total', tenant_only, 'increase')})",
                "{{tenant}}",
            ),
        ).min(0),
        _timeseries(
            "Capped Retry-After",
            "Upstream answers asking to wait longer than RELAY_RETRY_AFTER_MAX_S (or "
            "forever), cut to it, per tenant in each rate interval: an upstream telling the "
            "relay to stop for a long time.",
            units.Short,
            (
                "sum by (tenant) "
                f"({_rate('relay_forward_retry_after_capped_total', tenant_only, 'increase')})",
                "{{tenant}}",
            ),
        ).min(0),
        _timeseries(
            "Partitions held at max span",
            "Partitions a worker does not fetch because one event keeps failing while "
            "RELAY_FORWARD_MAX_SPAN later ones were settled: the rest of the partition waits "
            "for it (RelayPartitionStuck). Per instance.",
            units.Short,
            (
                f"sum by (instance) (relay_forward_partitions_span_full{{{FORWARD}}})",
                "{{instance}}",
            ),
        )
        .min(0)
        .decimals(0),
        _timeseries(
            "Rebalances and commit failures",
            "Where duplicates come from: partition assignments, and offset commits Kafka "
            "refused (their events are delivered again by the next owner); and failed "
            "backlog probes (the lag panels then show stale values). Per instance, in "
            "each rate interval.",
            units.Short,
            (
                "sum by (instance) "
                f"({_rate('relay_forward_rebalances_total', FORWARD, 'increase')})",
                "{{instance}} rebalances",
            ),
            (
                "sum by (instance) "
                f"({_rate('relay_forward_commit_failures_total', FORWARD, 'increase')})",
                "{{instance}} commit failures",
            ),
            (
                "sum by (instance) "
                f"({_rate('relay_forward_backlog_probe_failures_total', FORWARD, 'increase')})",
                "{{instance}} backlog probe failures",
            ),
        ).min(0),
        _timeseries(
            "Rebalance gaps",
            "Seconds each worker spent without partitions, from a revoke (or its start) to "
            "its next assignment, counted in the rate interval the gap ended in: delivery "
            "of the partitions moved stops meanwhile.",
            units.Seconds,
            (
                "sum by (instance) "
                f"({_rate('relay_forward_rebalance_seconds_sum', FORWARD, 'increase')})",
                "{{instance}}",
            ),
        ).min(0),
        _timeseries(
            "Withdrawn at revoke or shutdown",
            "Events taken back unsent because their partition was being revoked or the "
            "worker was stopping, per tenant and type in each rate interval; their next "
            "owner sends them, so none is lost.",
            units.Short,
            (
                "sum by (tenant, type) "
                f"({_rate('relay_forward_withdrawn_total', selected, 'increase')})",
                "{{tenant}} {{type}}",
            ),
        ).min(0),
        _timeseries(
            "Duplicates skipped",
            "Records not delivered because their event id was delivered (or dead-lettered) "
            "within RELAY_DEDUPE_WINDOW_S: client retries with one Idempotency-Key, records "
            "written twice, redelivery after a crash. Per tenant and type in each rate "
            "interval; and windows not read back whole at assignment (duplicates of the "
            "unread part may then be delivered).",
            units.Short,
            (
                "sum by (tenant, type) "
                f"({_rate('relay_forward_duplicates_skipped_total', selected, 'increase')})",
                "{{tenant}} {{type}}",
            ),
            (
                "sum by (tenant, type) "
                f"({_rate('relay_forward_dedupe_refill_incomplete_total', selected, 'increase')})",
                "{{tenant}} {{type}} incomplete read-backs",
            ),
        ).min(0),
        _timeseries(
            "Dedupe window",
            "Event ids each worker remembers as settled, against RELAY_DEDUPE_MAX_IDS "
            "(about 200 bytes each): at the bound, the oldest are forgotten before the "
            "window's time is up.",
            units.Short,
            (f"sum by (instance) (relay_forward_dedupe_ids{{{FORWARD}}})", "{{instance}}"),
        )
        .min(0)
        .decimals(0),
    ]


def _processes() -> list[Builder[model.Panel]]:
    def per_instance(metric: str, *, rate: bool = False) -> list[Target]:
        def expr(job: str) -> str:
            series = _rate(metric, job) if rate else f"{metric}{{{job}}}"
            return f"sum by (job, instance) ({series})"

        return [(expr(job), "{{job}} {{instance}}") for job in JOBS]

    return [
        _timeseries(
            "Ingest workers",
            "Worker processes running in each ingest instance against RELAY_INGEST_WORKERS "
            "(relay ingest --workers N), and crashed workers started again; delayed: restarts "
            "postponed past RELAY_INGEST_WORKER_RESTARTS_PER_MIN (a crash loop).",
            units.Short,
            (f"sum by (instance) (relay_ingest_workers{{{INGEST}}})", "{{instance}} running"),
            (
                f"sum by (instance) (relay_ingest_workers_configured{{{INGEST}}})",
                "{{instance}} configured",
            ),
            (
                f"sum by (instance) "
                f"(increase(relay_ingest_worker_restarts_total{{{INGEST}}}[{RATE}]))",
                "{{instance}} restarts",
            ),
            (
                f"sum by (instance) "
                f"(increase(relay_ingest_worker_restarts_delayed_total{{{INGEST}}}[{RATE}]))",
                "{{instance}} restarts delayed",
            ),
        ).min(0),
        _timeseries(
            "CPU",
            "CPU time per second of each process (1 = one core; an ingest instance with "
            "workers: all of them).",
            units.PercentUnit,
            *per_instance("process_cpu_seconds_total", rate=True),
        ).min(0),
        _timeseries(
            "Resident memory",
            "Resident set size of each process.",
            units.BytesIEC,
            *per_instance("process_resident_memory_bytes"),
        ).min(0),
        _timeseries(
            "Open file descriptors",
            "Open file descriptors of each process (sockets included).",
            units.Short,
            *per_instance("process_open_fds"),
        ).min(0),
    ]


def _timeseries(title: str, description: str, unit: str, *targets: Target) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(PANEL_WIDTH)
        .height(PANEL_HEIGHT)
    )
    for index, (expr, legend) in enumerate(targets):
        panel.with_target(_query(chr(ord("A") + index), expr, legend))
    return panel


def _kafka_ready() -> stat.Panel:
    ready = model.ValueMap(
        {
            "0": model.ValueMappingResult(text="not ready", color="red", index=0),
            "1": model.ValueMappingResult(text="ready", color="green", index=1),
        }
    )
    return (
        stat.Panel()
        .title("Kafka ready")
        .description("Whether each ingest process has a Kafka producer that acknowledges.")
        .unit(units.NoUnit)
        .datasource(DATASOURCE)
        .span(PANEL_WIDTH)
        .height(PANEL_HEIGHT)
        .with_target(
            _query("A", f"min by (instance) (relay_kafka_ready{{{INGEST}}})", "{{instance}}")
        )
        .mappings([ready])
        .thresholds(
            dashboard_builders.ThresholdsConfig()
            .mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(None, "red"), model.Threshold(1, "green")])
        )
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
    )


def _query(ref_id: str, expr: str, legend: str) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .datasource(DATASOURCE)
        .expr(expr)
        .legend_format(legend)
        .range()
    )


def _rate(counter: str, selector: str, function: str = "rate") -> str:
    return f"{function}({counter}{{{selector}}}[{RATE}])"


def _status_class(selector: str, first_digit: str) -> str:
    # status is the code ("503"); a class is a regex over it, which the relay initialises
    # for 2xx (the success status), 4xx ("400") and 5xx ("503").
    return f'{selector}, status=~"{first_digit}.."'


def _share(counter: str, part: str, whole: str) -> str:
    return f"sum({_rate(counter, part)}) / clamp_min(sum({_rate(counter, whole)}), {NO_TRAFFIC})"


def _quantiles(histogram: str, selector: str) -> list[Target]:
    buckets = f"sum by (le) ({_rate(f'{histogram}_bucket', selector)})"
    return [(f"histogram_quantile({q}, {buckets})", f"p{round(q * 100)}") for q in (0.5, 0.99)]


def _threshold(value: float) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(None, "green"), model.Threshold(value, "red")])
    )


def _line() -> common_builders.GraphThresholdsStyleConfig:
    return common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE)
