"""ops/grafana/incentives.json: imports anywhere (its Prometheus is an input), shows on one screen
what the issue lists, and every query parses as PromQL over series a worker serves."""

from __future__ import annotations

from typing import Any

import promql_parser as pp
import pytest

from tests.ops.contract import SERVED, unknown_label_values
from tests.ops.rules import Query, all_dashboard_metric_names, dashboard, dashboard_queries, panels, recordings

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
COLUMNS = 24
# Grid rows a 1080p screen shows below Grafana's header (a row is 30 px, plus the gaps).
ONE_SCREEN_ROWS = 24
# Issue #22's list for the dashboard -> the panels that show it.
ISSUE_PANELS = {
    "operations by outcome": ["Operations by outcome"],
    "p50/p99 latency": ["Latency p50 / p99 by operation"],
    "refusals by reason": ["Refusals by reason"],
    "value moved": ["Value moved"],
    "liability by currency": ["Liability by currency"],
    "promotions' budget burn": ["Promotions' budget burn"],
    "outbox age": ["Outbox age"],
    "the Temporal worker's health": [
        "Pollers",
        "Task slots",
        "Schedule-to-start p99",
        "Sticky cache",
        "Temporal request failures",
    ],
}
DOCUMENT = dashboard()
PANELS = panels(DOCUMENT)
QUERIES = dashboard_queries()


def test_it_imports_anywhere_with_its_prometheus_as_an_input() -> None:
    assert DOCUMENT["schemaVersion"] >= 39
    (source,) = DOCUMENT["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == ("DS_PROMETHEUS", "datasource", "prometheus")
    for panel in PANELS:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]


def test_it_shows_what_the_issue_lists() -> None:
    titles = {panel["title"] for panel in PANELS}
    assert {title for shown in ISSUE_PANELS.values() for title in shown} <= titles


def _cells(panel: dict[str, Any]) -> set[tuple[int, int]]:
    grid = panel["gridPos"]
    return {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}


def test_it_fits_one_screen_without_overlaps() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in PANELS:
        cells = _cells(panel)
        assert taken.isdisjoint(cells), f"{panel['title']} overlaps another panel"
        taken |= cells
    assert max(x for x, _ in taken) < COLUMNS
    assert max(y for _, y in taken) < ONE_SCREEN_ROWS


def test_panels_have_unique_ids_and_a_query_each() -> None:
    ids = [panel["id"] for panel in PANELS]
    assert len(ids) == len(set(ids))
    assert all(panel["targets"] for panel in PANELS)


@pytest.mark.parametrize("query", QUERIES, ids=lambda query: f"{query.panel}: {query.expr}")
def test_every_query_parses_and_matches_label_values_that_exist(query: Query) -> None:
    pp.parse(query.expr)
    assert unknown_label_values(query.expr) == []


def test_queries_read_only_what_a_worker_serves_never_a_recording_rule() -> None:
    # A dashboard imported beside a Prometheus without our rules must still show everything.
    names = all_dashboard_metric_names()
    assert names <= SERVED
    assert names.isdisjoint(recordings())
