import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.monitoring import dashboard
from relay.monitoring.thresholds import DEFAULT

ROOT = Path(__file__).resolve().parents[2]
ALL = {"datasource": "prometheus", "tenant": "All", "type": "All"}


def board(**changes: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(dashboard.render(dataclasses.replace(DEFAULT, **changes)))
    return loaded


def panels(board_json: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board_json["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def panel(board_json: dict[str, Any], title: str) -> dict[str, Any]:
    (found,) = (p for p in panels(board_json) if p["title"] == title)
    return found


def exprs(board_json: dict[str, Any]) -> list[str]:
    return [target["expr"] for p in panels(board_json) for target in p["targets"]]


def test_checked_in_json_is_what_the_code_renders() -> None:
    checked_in = (ROOT / dashboard.DASHBOARD_PATH).read_text(encoding="utf-8")
    assert checked_in == dashboard.render(), (
        f"{dashboard.DASHBOARD_PATH} is stale: run `make dashboards`"
    )


def test_render_is_stable() -> None:
    assert dashboard.render() == dashboard.render()


def test_write_puts_the_dashboard_under_root(tmp_path: Path) -> None:
    written = dashboard.write(tmp_path)
    assert written == tmp_path / dashboard.DASHBOARD_PATH
    assert written.read_text(encoding="utf-8") == dashboard.render()


def test_identity_and_time() -> None:
    board_json = board()
    assert (board_json["uid"], board_json["title"]) == ("relay", "Relay")
    assert board_json["tags"]
    assert board_json["refresh"] == "30s"
    assert board_json["time"]["from"] == "now-1h"
    assert "__inputs" not in board_json


def test_rows_exist_and_every_panel_has_a_title_and_a_unit() -> None:
    board_json = board()
    rows = [p["title"] for p in board_json["panels"] if p["type"] == "row"]
    assert rows == ["Front door", "Forwarding", "Processes"]
    for p in panels(board_json):
        assert p["title"].strip(), p
        assert p["fieldConfig"]["defaults"].get("unit"), p["title"]
        assert p["description"].strip(), p["title"]


def test_panel_ids_are_unique() -> None:
    ids = [p["id"] for p in board()["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("title", "field"),
    [("Lag (seconds)", "lag_high_s"), ("Answer time p50 / p99", "answer_p99_s")],
)
def test_threshold_lines_come_from_thresholds(title: str, field: str) -> None:
    def line(board_json: dict[str, Any]) -> list[tuple[float | None, str]]:
        defaults = panel(board_json, title)["fieldConfig"]["defaults"]
        assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
        return [(step["value"], step["color"]) for step in defaults["thresholds"]["steps"]]

    assert line(board()) == [(None, "green"), (getattr(DEFAULT, field), "red")]
    assert line(board(**{field: 123.0})) == [(None, "green"), (123.0, "red")]


def test_variables() -> None:
    variables = {v["name"]: v for v in board()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("tenant", "type"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["query"] == f"label_values(relay_forward_deliveries_total, {name})"
        assert variable["multi"]
        assert variable["includeAll"]
        assert variable["allValue"] == ".*"


def test_every_datasource_reference_is_the_variable() -> None:
    for p in panels(board()):
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in p["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_every_query_names_a_relay_job() -> None:
    for expr in exprs(board()):
        assert 'job="relay-ingest"' in expr or 'job="relay-forward"' in expr, expr


def test_processes_show_both_jobs() -> None:
    board_json = board()
    for title in ("CPU", "Resident memory", "Open file descriptors"):
        joined = " ".join(t["expr"] for t in panel(board_json, title)["targets"])
        assert 'job="relay-ingest"' in joined
        assert 'job="relay-forward"' in joined


def test_panel_queries_substitutes_every_variable() -> None:
    board_json = board()
    queries = dashboard.panel_queries(board_json, ALL)
    for title, expr in queries:
        assert "$" not in expr, (title, expr)
        assert "[1m]" in expr or "rate(" not in expr, (title, expr)
    assert {title for title, _ in queries} == {p["title"] for p in panels(board_json)}
    assert any('tenant=~".*"' in expr for _, expr in queries)


def test_panel_queries_uses_a_chosen_value_and_reads_rows_panels() -> None:
    board_json = board()
    first = next(p for p in board_json["panels"] if p["type"] == "row")
    first["panels"] = [panel(board_json, "Lag (seconds)")]
    queries = dashboard.panel_queries(
        {"panels": [first], "templating": board_json["templating"]},
        {**ALL, "tenant": "acme", "__rate_interval": "2m"},
    )
    assert queries == [
        (
            "Lag (seconds)",
            'max by (tenant, type) (relay_forward_oldest_undelivered_seconds{job="relay-forward", '
            'tenant=~"acme", type=~".*"})',
        )
    ]


def test_panel_queries_refuses_a_variable_without_a_value() -> None:
    with pytest.raises(ValueError, match=r"\$tenant"):
        dashboard.panel_queries(board(), {"type": "All"})


def test_no_query_matches_an_exact_bucket_or_quantile() -> None:
    for expr in exprs(board()):
        assert not re.search(r"\b(le|quantile)\s*=\s*\"", expr), expr


def test_the_budget_line_leaves_out_an_unlimited_budget() -> None:
    budget = panel(board(), "Budget used against budget")["targets"][1]["expr"]
    assert "relay_forward_budget_requests_per_second" in budget
    assert budget.endswith("< +Inf")


@pytest.mark.parametrize(
    ("title", "metric"),
    [
        ("Dead letters by reason", "relay_forward_dead_letters_total"),
        ("Partitions held at max span", "relay_forward_partitions_span_full"),
        ("Rebalances and commit failures", "relay_forward_rebalances_total"),
        ("Rebalance gaps", "relay_forward_rebalance_seconds_sum"),
        ("Withdrawn at revoke or shutdown", "relay_forward_withdrawn_total"),
        ("Capped Retry-After", "relay_forward_retry_after_capped_total"),
    ],
)
def test_forwarding_metrics_have_their_panel(title: str, metric: str) -> None:
    assert any(metric in target["expr"] for target in panel(board(), title)["targets"])


def test_the_rebalance_panels_share_a_line() -> None:
    titles = ["Rebalances and commit failures", "Rebalance gaps", "Withdrawn at revoke or shutdown"]
    positions = [panel(board(), title)["gridPos"] for title in titles]
    assert len({position["y"] for position in positions}) == 1
    assert [position["x"] for position in positions] == [0, 8, 16]
