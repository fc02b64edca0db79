"""The Prometheus rules (`ops/prometheus/alerts.yml`) and the Grafana dashboard
(`ops/grafana/incentives.json`), read for the tests; and the metrics they name.

`all_rule_metric_names()` is what a real scrape must serve for every rule to see its series: the
names every rule selects, less the ones a recording rule produces. Names are sample names, as a
scrape shows them (`incentives_operations_total`, `..._bucket`), not family names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser as pp
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_PATH = ROOT / "ops" / "prometheus" / "alerts.yml"
DASHBOARD_PATH = ROOT / "ops" / "grafana" / "incentives.json"
RUNBOOKS = ROOT / "docs" / "runbooks"


@dataclass(frozen=True)
class Rule:
    """One alerting or recording rule of a group."""

    group: str
    name: str
    expr: str
    alert: bool
    for_s: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


def load_rules(path: Path = RULES_PATH) -> list[Rule]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    rules = []
    for group in document["groups"]:
        for raw in group["rules"]:
            alert = "alert" in raw
            rules.append(
                Rule(
                    group=group["name"],
                    name=raw["alert"] if alert else raw["record"],
                    expr=raw["expr"],
                    alert=alert,
                    for_s=duration_s(raw.get("for", "0s")),
                    labels=dict(raw.get("labels", {})),
                    annotations=dict(raw.get("annotations", {})),
                )
            )
    return rules


def duration_s(text: str) -> float:
    """A Prometheus duration in seconds; `0s` (or `0m`) too, which `parse_duration` refuses."""
    if text.rstrip("smhdwy").strip("0") == "":
        return 0.0
    return pp.parse_duration(text).total_seconds()


def alerts(path: Path = RULES_PATH) -> list[Rule]:
    return [rule for rule in load_rules(path) if rule.alert]


def alert(name: str, path: Path = RULES_PATH) -> Rule:
    (found,) = [rule for rule in alerts(path) if rule.name == name]
    return found


def recordings(path: Path = RULES_PATH) -> dict[str, str]:
    """Recording rules: the recorded name -> its expression."""
    return {rule.name: rule.expr for rule in load_rules(path) if not rule.alert}


def selectors(expr: str | pp.Expr) -> list[pp.VectorSelector]:
    """Every vector selector in the expression, ranges' included, in the order they are written."""
    found: list[pp.VectorSelector] = []

    def visit(node: pp.Expr) -> None:
        if isinstance(node, pp.VectorSelector):
            found.append(node)
        elif isinstance(node, pp.MatrixSelector):
            found.append(node.vector_selector)

    pp.walk(pp.parse(expr) if isinstance(expr, str) else expr, visit)
    return found


def metric_name(selector: pp.VectorSelector) -> str | None:
    """The selector's metric name: written before the braces or as `__name__="..."`."""
    if selector.name is not None:
        return selector.name
    return next(
        (m.value for m in selector.matchers.matchers if m.name == "__name__" and m.op == pp.MatchOp.Equal), None
    )


def metric_names(expr: str | pp.Expr) -> set[str]:
    """The names of the metrics an expression selects. A selector without a fixed name (a regular
    expression on `__name__`) is an error: no scrape could be checked against it."""
    names = set()
    for selector in selectors(expr):
        name = metric_name(selector)
        if name is None:
            raise ValueError(f"a selector without a metric name: {selector}")
        names.add(name)
    return names


def all_rule_metric_names(path: Path = RULES_PATH) -> set[str]:
    """Every metric the rules select that no recording rule produces: a scrape must serve each."""
    recorded = recordings(path)
    return {name for rule in load_rules(path) for name in metric_names(rule.expr)} - recorded.keys()


@dataclass(frozen=True)
class Query:
    panel: str
    expr: str


def dashboard(path: Path = DASHBOARD_PATH) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def dashboard_queries(path: Path = DASHBOARD_PATH) -> list[Query]:
    """Every query of every panel (rows' nested panels included)."""
    queries = []
    for panel in panels(dashboard(path)):
        for target in panel.get("targets", []):
            queries.append(Query(panel["title"], target["expr"]))
    return queries


def panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in document["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def all_dashboard_metric_names(path: Path = DASHBOARD_PATH) -> set[str]:
    return {name for query in dashboard_queries(path) for name in metric_names(query.expr)}
