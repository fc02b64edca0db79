"""What each outbox event says: one payload per event type, whichever path wrote it.

- A lot's events (`granted`, `activated`, `reminder`, `expired`, `revoked`) carry `LotEvent`. The
  wallet's ledger activities write them one lot at a time, a promotion's batches and clock
  set-based; both build the payload with the one SQL function `lot_event`
  (migrations/0006_one_payload_per_event.sql), from the lot's row as the change leaves it. This model
  states the shape and checks it in tests.
- `redeemed` carries the `Redemption`, `reversed` the `Reversal` (one writer each).
- `budget_threshold` carries `BudgetThreshold`, emitted by `crossed_thresholds` for a promotion's
  grant batch and for a coupon's discount alike.

Fields are added, never renamed: downstream systems read them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import Field

from incentives.domain.models import Instant, LotKind, LotStatus, Model, Redemption, Reversal
from incentives.domain.money import Currency, MinorUnits

# Published events stay in the outbox this long, then the relay prunes them (the ledger stays).
OUTBOX_RETENTION = timedelta(days=7)
# The shares of a promotion's budget whose crossing is announced once each.
BUDGET_THRESHOLDS = (50, 80, 100)

LotEventType = Literal["granted", "activated", "reminder", "expired", "revoked"]


class LotEvent(Model):
    """A change to one lot, as the lot stands after it."""

    lot_id: str
    customer_id: str
    promotion_id: str | None
    kind: LotKind
    currency: Currency
    amount: MinorUnits = Field(description="what the lot was granted (0 for a coupon)")
    remaining: MinorUnits = Field(description="what it holds after this change")
    uses_left: int | None = Field(description="a coupon's uses left; null for a credit")
    status: LotStatus
    effective_at: Instant | None
    expires_at: Instant | None
    granted_at: Instant
    change: int = Field(description="minor units this event moved into (+) or out of (-) the lot")
    order_id: str | None = Field(description="the order, when a reversal brought the change")
    reversal_id: str | None = Field(description="the reversal, when one brought the change")
    reason: str | None = Field(description="why, for a revocation or a write-off")


class BudgetThreshold(Model):
    """A promotion's committed value crossed `threshold` percent of its budget."""

    promotion_id: str
    threshold: int
    committed: MinorUnits
    budget: MinorUnits
    currency: Currency


def threshold_reached(committed: int, budget: int) -> int:
    """The highest threshold (percent) that `committed` has reached of `budget`; 0 for none."""
    return max((t for t in BUDGET_THRESHOLDS if committed * 100 >= t * budget), default=0)


def crossed_thresholds(before: int, committed: int, budget: int) -> list[int]:
    """The thresholds a move to `committed` crosses, given the highest one reached `before`."""
    reached = threshold_reached(committed, budget)
    return [t for t in BUDGET_THRESHOLDS if before < t <= reached]


# -- on the wire: CloudEvents 1.0 on NATS JetStream ------------------------------------------------

# Outbox event type -> (the entity it is about, the CloudEvent type). Added, never renamed.
CLOUD_EVENT_TYPES: dict[str, tuple[Literal["lot", "order", "promotion"], str]] = {
    "granted": ("lot", "incentives.lot.granted"),
    "activated": ("lot", "incentives.lot.activated"),
    "reminder": ("lot", "incentives.lot.reminder"),
    "expired": ("lot", "incentives.lot.expired"),
    "revoked": ("lot", "incentives.lot.revoked"),
    "redeemed": ("order", "incentives.order.redeemed"),
    "reversed": ("order", "incentives.order.reversed"),
    "budget_threshold": ("promotion", "incentives.promotion.budget_threshold"),
}
SUBJECT_PREFIX = "incentives"
# A subject token holds no `.` (the separator), `*` or `>` (wildcards) and no space; `%` escapes.
_TOKEN_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:@/")


def subject_token(identifier: str) -> str:
    """A customer's or a promotion's id as one NATS subject token: every character outside letters,
    digits and `_ - : @ /` (for our ids, only `.`) becomes `%` and two hex digits per UTF-8 byte:
    `alice.smith` -> `alice%2Esmith`. Reversible, so one customer's events are one filter away."""
    if _TOKEN_SAFE.issuperset(identifier):  # most ids: nothing to escape, and no string built
        return identifier
    return "".join(
        char if char in _TOKEN_SAFE else "".join(f"%{byte:02X}" for byte in char.encode()) for char in identifier
    )


def event_subject(event_type: str, about: str) -> str:
    """`incentives.<lot|order|promotion>.<event>.<token>`, e.g. `incentives.lot.granted.alice%2Esmith`.
    One customer's events: `incentives.*.*.<token>`; one type's: `incentives.lot.reminder.>`."""
    _, cloud_type = CLOUD_EVENT_TYPES[event_type]
    return f"{cloud_type}.{subject_token(about)}"


class CloudEvent(Model):
    """An outbox event as published: CloudEvents 1.0, structured JSON mode."""

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(description="the outbox event's id: also the message's Nats-Msg-Id")
    source: str
    type: str = Field(description="incentives.lot.granted, incentives.order.redeemed, ...")
    subject: str = Field(description="the customer, or the promotion for promotion-level events")
    time: Instant = Field(
        description="when the change committed (where Postgres tracks commit timestamps; otherwise when it was written"
        " in the transaction that committed it)"
    )
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, object]


def _data_model(event_type: str) -> type[Model]:
    entity, _ = CLOUD_EVENT_TYPES[event_type]
    if entity == "lot":
        return LotEvent
    if entity == "promotion":
        return BudgetThreshold
    return Redemption if event_type == "redeemed" else Reversal


def event_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of one event type as published: the CloudEvent envelope, its `type` fixed,
    its `data` the type's payload. Committed under docs/events/ (`./dev schemas` writes them), a
    contract: fields are added, never renamed."""
    _, cloud_type = CLOUD_EVENT_TYPES[event_type]
    schema = CloudEvent.model_json_schema()
    data = _data_model(event_type).model_json_schema()
    definitions = {**schema.pop("$defs", {}), **data.pop("$defs", {})}
    properties = schema["properties"]
    properties["type"] = {"const": cloud_type, "title": "Type"}
    properties["data"] = data
    schema["title"] = cloud_type
    schema["$id"] = f"https://incentives.dev/schemas/{cloud_type}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    # Consumers must accept fields added later: the published schema allows more than it lists.
    opened: dict[str, Any] = _open({**schema, "$defs": definitions} if definitions else schema)
    return opened


def _open(node: object) -> Any:
    if isinstance(node, dict):
        return {key: _open(value) for key, value in node.items() if key != "additionalProperties"}
    if isinstance(node, list):
        return [_open(value) for value in node]
    return node
