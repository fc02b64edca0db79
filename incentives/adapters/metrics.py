"""The metrics this engine exports, in Prometheus' text format: named once, here. Names, types and
labels are a contract (added, never renamed); labels are bounded: an operation, an outcome, a
refusal's class, a movement, a currency, a promotion (active ones only) — never a customer, an order
or a lot.

Counters and the histogram are counted where the ledger decides (the ledger and promotion
activities, in the workers), so that the CLI, the HTTP API and Python callers all count. The gauges
come from one collector (`incentives.app.collector`) that queries Postgres on a schedule, in the one
worker that holds its lock: summing them over workers would be wrong, and computing them in every
process would load the database for nothing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

# Without this, every counter also exports a `_created` sample: a timestamp nobody alerts on.
disable_created_metrics()  # type: ignore[no-untyped-call]  # (unannotated in prometheus_client)

# The latency objectives (seconds), each a bucket boundary so that a quantile over it is exact:
# a redeem's ledger decision p99 within 100 ms, a grant's or a reversal's within 250 ms.
REDEEM_OBJECTIVE_S = 0.1
OTHER_OBJECTIVE_S = 0.25
BUCKETS = (0.005, 0.01, 0.025, 0.05, REDEEM_OBJECTIVE_S, OTHER_OBJECTIVE_S, 0.5, 1.0, 2.5, 5.0, 10.0)

REGISTRY = CollectorRegistry(auto_describe=True)

OPERATIONS = Counter(
    "incentives_operations",
    "Operations the ledger decided: operation (grant, redeem, reverse, revoke), outcome (applied, "
    "replayed: the same request again; refused: by a rule; failed: the infrastructure), reason (the "
    "refusal's class, or none).",
    ["operation", "outcome", "reason"],
    registry=REGISTRY,
)
OPERATION_DURATION = Histogram(
    "incentives_operation_duration_seconds",
    "How long the ledger took to decide an operation (its transaction), by operation.",
    ["operation"],
    buckets=BUCKETS,
    registry=REGISTRY,
)
VALUE_MOVED = Counter(
    "incentives_value_minor",
    "Value moved, in minor units of the currency: granted, redeemed, reversed, expired, revoked.",
    ["movement", "currency"],
    registry=REGISTRY,
)
PROMOTION_GRANTS = Counter("incentives_promotion_grants", "Lots granted by promotions' batches.", registry=REGISTRY)
# The gauges, exported only by the worker whose collector holds the lock (name: help, labels).
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "incentives_outstanding_minor": (
        "Liability: value held by credit lots that are pending or active, in minor units of the currency.",
        ("currency",),
    ),
    "incentives_promotion_budget_used_ratio": (
        "Committed value / budget, for promotions still scheduled, granting, paused or active.",
        ("promotion",),
    ),
    "incentives_outbox_oldest_unpublished_seconds": (
        "Age of the oldest event not yet published to the stream (0 when none waits).",
        (),
    ),
    "incentives_reconcile_violations": ("Violations the last scheduled reconcile found (0: the books balance).", ()),
    "incentives_reconcile_last_finished_timestamp_seconds": (
        "When the last scheduled reconcile finished (Unix time): a stale one says the schedule stopped.",
        (),
    ),
}

# Each ledger row's type, as the movement of value it is.
MOVEMENTS = {"grant": "granted", "redeem": "redeemed", "reverse": "reversed", "expire": "expired", "revoke": "revoked"}

# The API's own (`incentives api` serves them on its /metrics, with the SDK's): every request, by its
# route's template (never its ids) and status. What it asked of the ledger is counted by the workers.
API_REGISTRY = CollectorRegistry(auto_describe=True)
HTTP_REQUESTS = Counter(
    "incentives_http_requests",
    "Requests the API answered: route (method and template, or `unrouted`), status code.",
    ["route", "status"],
    registry=API_REGISTRY,
)
HTTP_DURATION = Histogram(
    "incentives_http_request_duration_seconds",
    "How long the API took to answer, by route.",
    ["route"],
    buckets=BUCKETS,
    registry=API_REGISTRY,
)
