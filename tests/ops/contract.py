"""What a worker's /metrics serves, as far as the rules and the dashboard may rely on it: our series
(issue #22's table, a contract) and the Temporal SDK's (temporalio 1.35), with the label values
each takes. The rules and the dashboard are checked against these lists without a server; a real
scrape confirms them (`rules.all_rule_metric_names()`).

The SDK's were read off a scrape of a worker, a client and their Updates on the dev server, with
`PrometheusConfig(counters_total_suffix=True, unit_suffix=True, durations_as_seconds=True)`; the
failure counters appear on a scrape only once something has failed.
"""

from __future__ import annotations

import re

import promql_parser as pp
from temporalio.api.workflowservice.v1 import service_pb2
from temporalio.service import RPCStatusCode

from incentives.domain.errors import REJECTIONS
from tests.ops.rules import metric_name, selectors


def _histogram(name: str) -> set[str]:
    return {f"{name}_bucket", f"{name}_count", f"{name}_sum"}


OURS = {
    "incentives_operations_total",
    *_histogram("incentives_operation_duration_seconds"),
    "incentives_value_minor_total",
    "incentives_promotion_grants_total",
    "incentives_outstanding_minor",
    "incentives_promotion_budget_used_ratio",
    "incentives_outbox_oldest_unpublished_seconds",
    "incentives_reconcile_violations",
    "incentives_reconcile_last_finished_timestamp_seconds",
}

SDK = {
    # gauges
    "temporal_num_pollers",
    "temporal_worker_task_slots_available",
    "temporal_worker_task_slots_used",
    "temporal_sticky_cache_size",
    # counters
    "temporal_request_total",
    "temporal_request_failure_total",
    "temporal_long_request_total",
    "temporal_long_request_failure_total",
    "temporal_sticky_cache_hit_total",
    "temporal_sticky_cache_miss_total",
    "temporal_sticky_cache_total_forced_eviction_total",
    "temporal_workflow_task_queue_poll_succeed_total",
    "temporal_workflow_task_execution_failed_total",
    "temporal_activity_task_received_total",
    "temporal_worker_start_total",
    # histograms, in seconds
    *_histogram("temporal_workflow_task_schedule_to_start_latency_seconds"),
    *_histogram("temporal_workflow_task_execution_latency_seconds"),
    *_histogram("temporal_workflow_task_replay_latency_seconds"),
    *_histogram("temporal_activity_schedule_to_start_latency_seconds"),
    *_histogram("temporal_activity_execution_latency_seconds"),
    *_histogram("temporal_activity_succeed_endtoend_latency_seconds"),
    *_histogram("temporal_request_latency_seconds"),
    *_histogram("temporal_long_request_latency_seconds"),
}

SERVED = OURS | SDK

# The values a label takes, where they are a closed set (a label not listed here is open: a
# currency, a promotion, a task queue, a workflow type).
LABEL_VALUES: dict[str, set[str]] = {
    "operation": {"grant", "redeem", "reverse", "revoke"},
    "outcome": {"applied", "replayed", "refused", "failed"},
    "reason": {*REJECTIONS, "none"},
    "movement": {"granted", "redeemed", "reversed", "expired", "revoked"},
    "poller_type": {"workflow_task", "sticky_workflow_task", "activity_task", "nexus_task"},
    "worker_type": {"WorkflowWorker", "ActivityWorker", "LocalActivityWorker", "NexusWorker"},
    "failure_reason": {"NonDeterminismError", "WorkflowError", "ActivityError", "timeout", "GrpcMessageTooLarge"},
    "status_code": {code.name for code in RPCStatusCode} | {"TRANSPORT_ERROR"},
}
# The SDK's request metrics name the gRPC method in `operation`.
SDK_OPERATIONS = set(service_pb2.DESCRIPTOR.services_by_name["WorkflowService"].methods_by_name)


def allowed_values(metric: str, label: str) -> set[str] | None:
    """The values `label` may take on `metric`, or None when any value may appear."""
    if label == "operation" and metric.startswith(("temporal_request", "temporal_long_request")):
        return SDK_OPERATIONS
    return LABEL_VALUES.get(label)


# Bucket bounds: ours (a boundary at each objective: 0.1 s for a redeem, 0.25 s for the others) and
# the SDK's for task schedule-to-start (a boundary at 0.1 s, the objective the rules state).
OPERATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SDK_SCHEDULE_TO_START_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 100.0, 1000.0)


def unknown_label_values(expr: str) -> list[str]:
    """What the expression matches that never appears on a scrape: a value outside its label's
    closed set (an `=`, or a `=~` of plain alternatives; any other regular expression is refused,
    since nothing could check it)."""
    unknown = []
    for selector in selectors(expr):
        for matcher in selector.matchers.matchers:
            allowed = allowed_values(metric_name(selector) or "", matcher.name)
            if allowed is None or matcher.op not in (pp.MatchOp.Equal, pp.MatchOp.Re):
                continue
            values = matcher.value.split("|") if matcher.op == pp.MatchOp.Re else [matcher.value]
            if not all(re.fullmatch(r"[\w.]+", value) for value in values):
                unknown.append(f"{matcher}: list the values")
            unknown.extend(f"{selector}: {value!r}" for value in values if value not in allowed)
    return unknown
