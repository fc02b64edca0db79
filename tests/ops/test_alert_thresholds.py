"""Each alert against synthetic series: it fires on a story that should page (or ticket) and stays
quiet on its near miss, with its `for` honoured (tests/ops/promql.py evaluates the rules as
Prometheus would, every minute)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.ops.contract import OPERATION_BUCKETS, SDK_SCHEDULE_TO_START_BUCKETS
from tests.ops.promql import Evaluator, firing, labels
from tests.ops.rules import alerts, recordings
from tests.ops.synthetic import DAY, HOUR, MINUTE, NOON, SeriesSet, counter, gauge, histogram, merged

RULES = {rule.name: rule for rule in alerts()}
QUEUE = {"namespace": "default", "task_queue": "incentives"}


def switch(before: float, after: float, at: float) -> Callable[[float], float]:
    """A value that is `before` until `at`, then `after`."""
    return lambda t: after if t >= at else before


def ops(operation: str, outcome: str, per_s: float | Callable[[float], float], reason: str = "none") -> SeriesSet:
    ls = {"operation": operation, "outcome": outcome, "reason": reason}
    return counter("incentives_operations_total", ls, per_s=per_s, start=NOON - 2 * DAY, step=60.0)


def latency(operation: str, per_s: dict[float, float]) -> SeriesSet:
    name = "incentives_operation_duration_seconds"
    return histogram(name, {"operation": operation}, buckets=OPERATION_BUCKETS, per_s=per_s, start=NOON - 2 * HOUR)


def pollers(kind: str, value: float | Callable[[float], float]) -> SeriesSet:
    return gauge("temporal_num_pollers", {**QUEUE, "poller_type": kind}, value=value, start=NOON - 2 * HOUR)


def schedule_to_start(per_s: dict[float, float]) -> SeriesSet:
    name = "temporal_workflow_task_schedule_to_start_latency_seconds"
    return histogram(name, QUEUE, buckets=SDK_SCHEDULE_TO_START_BUCKETS, per_s=per_s, start=NOON - 2 * HOUR)


def nde(value: float | Callable[[float], float], *, start: float, reason: str = "NonDeterminismError") -> SeriesSet:
    ls = {**QUEUE, "workflow_type": "Wallet", "failure_reason": reason}
    return gauge("temporal_workflow_task_execution_failed_total", ls, value=value, start=start)


def updates(failures_per_s: float, operation: str = "ExecuteMultiOperation") -> SeriesSet:
    requests = {**QUEUE, "operation": "ExecuteMultiOperation"}
    refused = {**QUEUE, "operation": operation, "status_code": "RESOURCE_EXHAUSTED"}
    return merged(
        counter("temporal_long_request_total", requests, per_s=20.0, start=NOON - 2 * HOUR),
        counter("temporal_long_request_failure_total", refused, per_s=failures_per_s, start=NOON - 2 * HOUR),
    )


def books(name: str, value: float | Callable[[float], float], **ls: str) -> SeriesSet:
    return gauge(name, ls, value=value, start=NOON - 3 * HOUR)


def budget(used: float) -> SeriesSet:
    return books("incentives_promotion_budget_used_ratio", used, promotion="spring-2027")


def liability(value: float | Callable[[float], float]) -> SeriesSet:
    return books("incentives_outstanding_minor", value, currency="USD")


def elsewhere() -> SeriesSet:
    """A series no rule reads: the scrape is up, and the series an alert needs is missing."""
    return gauge("temporal_sticky_cache_size", QUEUE, value=10, start=NOON - HOUR)


@dataclass(frozen=True)
class Story:
    alert: str
    case: str
    series: Callable[[], SeriesSet]
    fires: bool
    at: float = NOON

    def __str__(self) -> str:
        return f"{self.alert}: {self.case}"


STORIES = [
    Story("IncentivesNoPollers", "the workflow pollers gone for 10 minutes",
          lambda: merged(pollers("workflow_task", switch(5, 0, NOON - 10 * MINUTE)), pollers("activity_task", 5)), True),
    Story("IncentivesNoPollers", "no worker scraped", elsewhere, True),
    Story("IncentivesNoPollers", "pollers polling", lambda: merged(pollers("workflow_task", 5), pollers("activity_task", 5)), False),
    Story("IncentivesNoPollers", "a 3-minute dip",
          lambda: merged(pollers("workflow_task", lambda t: 0 if NOON - 5 * MINUTE <= t < NOON - 2 * MINUTE else 5),
                         pollers("activity_task", 5)), False),
    Story("IncentivesWorkflowTaskScheduleToStartSlow", "5% of tasks wait over 0.1 s", lambda: schedule_to_start({0.1: 2.0, 0.5: 0.1}), True),
    Story("IncentivesWorkflowTaskScheduleToStartSlow", "0.5% wait over 0.1 s", lambda: schedule_to_start({0.1: 2.0, 0.5: 0.01}), False),
    Story("IncentivesWorkflowTaskScheduleToStartSlow", "an idle queue, every task slow", lambda: schedule_to_start({0.5: 0.05}), False),
    Story("IncentivesNonDeterminism", "errors keep coming", lambda: nde(lambda t: (t - NOON) // 60 + 100, start=NOON - HOUR), True),
    Story("IncentivesNonDeterminism", "the first error, of a new series", lambda: nde(1, start=NOON - 2 * MINUTE), True),
    Story("IncentivesNonDeterminism", "an old error, none since", lambda: nde(3, start=NOON - 2 * HOUR), False),
    Story("IncentivesNonDeterminism", "other workflow task failures",
          lambda: nde(lambda t: (t - NOON) // 60 + 100, start=NOON - HOUR, reason="WorkflowError"), False),
    Story("IncentivesUpdateResourceExhausted", "5% of update-with-start refused", lambda: updates(1.0), True),
    Story("IncentivesUpdateResourceExhausted", "0.5% refused", lambda: updates(0.1), False),
    Story("IncentivesUpdateResourceExhausted", "refusals of polls, not Updates", lambda: updates(1.0, "PollWorkflowTaskQueue"), False),
    Story("IncentivesRedeemLatencyHigh", "2% of redeems over 0.1 s", lambda: latency("redeem", {0.05: 9.8, 0.25: 0.2}), True),
    Story("IncentivesRedeemLatencyHigh", "0.5% over 0.1 s", lambda: latency("redeem", {0.05: 9.95, 0.25: 0.05}), False),
    Story("IncentivesRedeemLatencyHigh", "slow, but a handful", lambda: latency("redeem", {0.25: 0.05}), False),
    Story("IncentivesRedeemLatencyHigh", "grants slow, not redeems", lambda: latency("grant", {0.5: 10.0}), False),
    Story("IncentivesOperationLatencyHigh", "5% of grants over 0.25 s", lambda: latency("grant", {0.1: 2.0, 0.5: 0.1}), True),
    Story("IncentivesOperationLatencyHigh", "grants within 0.25 s", lambda: latency("grant", {0.25: 2.0}), False),
    Story("IncentivesOperationLatencyHigh", "redeems slow, not grants", lambda: latency("redeem", {0.5: 10.0}), False),
    Story("IncentivesOperationsFailing", "5% of redeems fail",
          lambda: merged(ops("redeem", "applied", 10.0), ops("redeem", "failed", switch(0, 0.5, NOON - 30 * MINUTE))), True),
    Story("IncentivesOperationsFailing", "0.5% fail", lambda: merged(ops("redeem", "applied", 10.0), ops("redeem", "failed", 0.05)), False),
    Story("IncentivesOperationsFailing", "a handful, all failing", lambda: ops("redeem", "failed", 0.02), False),
    Story("IncentivesRefusalSpike", "NothingToRedeem from 2% to 17%",
          lambda: merged(ops("redeem", "applied", 10.0),
                         ops("redeem", "refused", switch(0.2, 2.0, NOON - 30 * MINUTE), "NothingToRedeem")), True),
    Story("IncentivesRefusalSpike", "a reason never seen before",
          lambda: merged(ops("redeem", "applied", 10.0), ops("redeem", "refused", switch(0, 1.0, NOON - 30 * MINUTE), "CouponNotUsable")), True),
    Story("IncentivesRefusalSpike", "a steady 2%",
          lambda: merged(ops("redeem", "applied", 10.0), ops("redeem", "refused", 0.2, "NothingToRedeem")), False),
    Story("IncentivesRefusalSpike", "a spike in a quiet hour, 36 operations in 10 minutes",
          lambda: merged(ops("redeem", "applied", 0.03), ops("redeem", "refused", switch(0, 0.03, NOON - 30 * MINUTE), "MinimumNotMet")), False),
    Story("IncentivesRefusalSpike", "5 times a tiny share, still under 1%",
          lambda: merged(ops("redeem", "applied", 10.0), ops("redeem", "refused", switch(0.01, 0.05, NOON - 30 * MINUTE), "CurrencyMismatch")), False),
    Story("IncentivesPromotionBudget80", "85% committed", lambda: budget(0.85), True),
    Story("IncentivesPromotionBudget80", "all of it committed", lambda: budget(1.0), True),
    Story("IncentivesPromotionBudget80", "79% committed", lambda: budget(0.79), False),
    Story("IncentivesPromotionBudgetExhausted", "spent, and coupons refused",
          lambda: merged(budget(1.0), ops("redeem", "refused", 0.1, "BudgetExhausted")), True),
    Story("IncentivesPromotionBudgetExhausted", "a credit promotion that met its budget", lambda: budget(1.0), False),
    Story("IncentivesPromotionBudgetExhausted", "coupons refused by a pool, the budget at 90%",
          lambda: merged(budget(0.9), ops("redeem", "refused", 0.1, "BudgetExhausted")), False),
    Story("IncentivesLiabilityJump", "USD from 1M to 1.5M in half an hour", lambda: liability(switch(1e6, 1.5e6, NOON - 30 * MINUTE)), True),
    Story("IncentivesLiabilityJump", "growing 5% an hour", lambda: liability(lambda t: 1e6 * (1 + 0.05 * (t - NOON) / HOUR)), False),
    Story("IncentivesLiabilityJump", "a first currency's first grants", lambda: liability(switch(0, 1e6, NOON - 30 * MINUTE)), False),
    Story("IncentivesLiabilityJump", "another worker takes over the gauges", lambda: _handover(1e6), False),
    Story("IncentivesLiabilityJump", "a jump seen across a change of leader", lambda: _handover(1.5e6), True),
    Story("IncentivesOutboxStuck", "nothing published for 20 minutes",
          lambda: books("incentives_outbox_oldest_unpublished_seconds", lambda t: max(0.0, t - (NOON - 20 * MINUTE))), True),
    Story("IncentivesOutboxStuck", "a busy relay, 30 s behind", lambda: books("incentives_outbox_oldest_unpublished_seconds", lambda t: t % 30), False),
    Story("IncentivesOutboxStuck", "a 5-minute hiccup",
          lambda: books("incentives_outbox_oldest_unpublished_seconds", lambda t: 200.0 if NOON - 8 * MINUTE <= t < NOON - 3 * MINUTE else 0.0), False),
    Story("IncentivesReconcileViolations", "3 violations", lambda: books("incentives_reconcile_violations", switch(0, 3, NOON - 20 * MINUTE)), True),
    Story("IncentivesReconcileViolations", "the books balance", lambda: books("incentives_reconcile_violations", 0), False),
    Story("IncentivesCheckoutSilent", "no redeem since 11:30", lambda: ops("redeem", "applied", switch(5.0, 0, NOON - 30 * MINUTE)), True),
    Story("IncentivesCheckoutSilent", "no ledger series at all", elsewhere, True),
    Story("IncentivesCheckoutSilent", "redeems flowing", lambda: ops("redeem", "applied", 5.0), False),
    Story("IncentivesCheckoutSilent", "silence at 03:00 UTC",
          lambda: ops("redeem", "applied", switch(5.0, 0, NOON - 10 * HOUR)), False, at=NOON - 9 * HOUR),
    Story("IncentivesCheckoutSilent", "every redeem refused, but redeems come",
          lambda: ops("redeem", "refused", 5.0, "NothingToRedeem"), False),
    Story("IncentivesReconcileStale", "the last run 4 hours ago",
          lambda: books("incentives_reconcile_last_finished_timestamp_seconds", NOON - 4 * HOUR), True),
    Story("IncentivesReconcileStale", "hourly runs",
          lambda: books("incentives_reconcile_last_finished_timestamp_seconds", lambda t: t - t % HOUR), False),
    Story("IncentivesBookGaugesMissing", "no collector", elsewhere, True),
    Story("IncentivesBookGaugesMissing", "the outbox empty", lambda: books("incentives_outbox_oldest_unpublished_seconds", 0), False),
]  # fmt: skip


def _handover(after: float) -> SeriesSet:
    """The worker leading the gauges dies at 11:30 (its series marked stale, at 1M); another leads
    30 s later and exports `after`: the two series are one liability, whichever instance serves it."""
    return merged(
        gauge("incentives_outstanding_minor", {"currency": "USD", "instance": "a"}, value=1e6,
              start=NOON - 3 * HOUR, end=NOON - 30 * MINUTE, stale=True),
        gauge("incentives_outstanding_minor", {"currency": "USD", "instance": "b"}, value=after,
              start=NOON - 29 * MINUTE),
    )  # fmt: skip


@pytest.mark.parametrize("story", STORIES, ids=str)
def test_alert_on_its_story(story: Story) -> None:
    rule = RULES[story.alert]
    evaluator = Evaluator(story.series(), recordings())
    fired = firing(evaluator, rule.expr, for_s=rule.for_s, at=story.at)
    assert bool(fired) == story.fires, fired


def test_every_alert_is_exercised_both_ways() -> None:
    told = {(story.alert, story.fires) for story in STORIES}
    assert {(name, fires) for name in RULES for fires in (True, False)} == told


def test_an_alert_fires_only_for_what_failed() -> None:
    series = merged(pollers("workflow_task", 5), pollers("activity_task", switch(5, 0, NOON - 10 * MINUTE)))
    rule = RULES["IncentivesNoPollers"]
    fired = firing(Evaluator(series, recordings()), rule.expr, for_s=rule.for_s, at=NOON)
    assert fired == {labels(**QUEUE, poller_type="activity_task")}


def test_a_condition_shorter_than_the_for_does_not_fire() -> None:
    rule = RULES["IncentivesReconcileViolations"]
    series = books("incentives_reconcile_violations", switch(0, 3, NOON - 9 * MINUTE))
    assert firing(Evaluator(series, recordings()), rule.expr, for_s=rule.for_s, at=NOON) == set()
    assert firing(Evaluator(series, recordings()), rule.expr, for_s=rule.for_s, at=NOON + 2 * MINUTE) != set()
