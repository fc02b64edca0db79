"""ops/prometheus/alerts.yml: every rule parses as PromQL, selects only what a worker serves with
label values that exist, and every alert is complete (severity, summary, description, a runbook)
and waits longer than a deploy; every alert the issue asks for is there."""

from __future__ import annotations

import re

import promql_parser as pp
import pytest

from tests.ops.contract import SERVED, unknown_label_values
from tests.ops.rules import (
    RULES_PATH,
    Rule,
    alerts,
    all_rule_metric_names,
    duration_s,
    load_rules,
    metric_names,
    recordings,
)

SEVERITIES = {"page", "ticket"}
MIN_FOR_S = 600.0
# Alerts that may not wait 10 minutes, with the `for` they have; each says why in a comment at the rule.
FOR_EXCEPTIONS = {"IncentivesNoPollers": 300.0, "IncentivesNonDeterminism": 0.0}
# Issue #22, "Alerts and runbooks", line by line -> the alert that answers it.
ISSUE_ALERTS = {
    "no pollers on the task queue": "IncentivesNoPollers",
    "workflow task schedule-to-start p99 over its objective": "IncentivesWorkflowTaskScheduleToStartSlow",
    "any non-determinism error": "IncentivesNonDeterminism",
    "RESOURCE_EXHAUSTED on Updates": "IncentivesUpdateResourceExhausted",
    "redeem p99 over its objective": "IncentivesRedeemLatencyHigh",
    "refusal ratio of one reason spiking against its usual level": "IncentivesRefusalSpike",
    "a promotion's budget at 80%": "IncentivesPromotionBudget80",
    "a promotion's budget at 100%": "IncentivesPromotionBudgetExhausted",
    "outstanding liability jumping": "IncentivesLiabilityJump",
    "outbox oldest event older than a minute": "IncentivesOutboxStuck",
    "reconcile violations above zero": "IncentivesReconcileViolations",
    "no ledger activity at all during traffic hours": "IncentivesCheckoutSilent",
}
RULES = load_rules()
ALERTS = alerts()


def _rule_block(name: str) -> str:
    """The rule's lines in the file, comments included (YAML loading drops them)."""
    text = RULES_PATH.read_text()
    start = re.search(rf"^\s*- (alert|record): {re.escape(name)}$", text, re.MULTILINE)
    assert start is not None, name
    end = re.compile(r"^\s*- (alert|record|name):", re.MULTILINE).search(text, start.end())
    return text[start.start() : end.start() if end else len(text)]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_every_rule_parses_as_promql(rule: Rule) -> None:
    pp.parse(rule.expr)


def test_rule_names_are_unique() -> None:
    names = [rule.name for rule in RULES]
    assert sorted(names) == sorted(set(names))


@pytest.mark.parametrize("rule", ALERTS, ids=lambda rule: rule.name)
def test_every_alert_has_a_severity_a_summary_a_description_and_its_runbook(rule: Rule) -> None:
    assert rule.labels.get("severity") in SEVERITIES
    assert rule.annotations.get("summary", "").strip()
    assert rule.annotations.get("description", "").strip()
    assert rule.annotations.get("runbook_url") == f"docs/runbooks/{rule.name}.md"


@pytest.mark.parametrize("rule", ALERTS, ids=lambda rule: rule.name)
def test_every_alert_waits_longer_than_a_deploy_or_says_why_not(rule: Rule) -> None:
    if rule.name in FOR_EXCEPTIONS:
        assert rule.for_s == FOR_EXCEPTIONS[rule.name]
        assert re.search(r"#.*\bfor\b", _rule_block(rule.name)), "say at the rule why it may not wait 10 minutes"
    else:
        assert rule.for_s >= MIN_FOR_S


def test_the_exceptions_to_the_wait_are_alerts_that_exist() -> None:
    assert FOR_EXCEPTIONS.keys() <= {rule.name for rule in ALERTS}


def test_every_alert_the_issue_asks_for_is_there() -> None:
    assert set(ISSUE_ALERTS.values()) <= {rule.name for rule in ALERTS}


def test_rules_select_only_what_a_worker_serves() -> None:
    assert all_rule_metric_names() <= SERVED


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_label_values_a_rule_matches_exist(rule: Rule) -> None:
    assert unknown_label_values(rule.expr) == []


def test_a_label_value_that_never_appears_is_caught() -> None:
    found = unknown_label_values('incentives_operations_total{reason="InsufficientBalance", outcome=~"refused|denied"}')
    assert [entry.rsplit(": ", 1)[1] for entry in found] == ["'InsufficientBalance'", "'denied'"]
    assert unknown_label_values('temporal_num_pollers{poller_type=~"work.*"}') != []


def test_metric_names_walks_every_selector() -> None:
    expr = (
        'sum(rate(a_total{x="1"}[5m] offset 1h)) / on () group_left b'
        ' or absent({__name__="c", y="2"}) unless histogram_quantile(0.9, d_bucket) > 1'
    )
    assert metric_names(expr) == {"a_total", "b", "c", "d_bucket"}
    with pytest.raises(ValueError, match="without a metric name"):
        metric_names('{__name__=~"a.*"}')


def test_all_rule_metric_names_leaves_out_what_recording_rules_produce() -> None:
    names = all_rule_metric_names()
    assert "incentives_operation_duration_seconds_bucket" in names
    assert "temporal_num_pollers" in names
    assert names.isdisjoint(recordings())


def test_durations_in_seconds() -> None:
    assert duration_s("0m") == 0.0
    assert duration_s("5m") == 300.0
    assert duration_s("1h30m") == 5400.0
