"""The models that cross a boundary: CLI JSON, workflow and activity inputs and outputs.

Pure pydantic, no I/O: workflow code imports this module through the sandbox. Every amount is an
`int` in the minor units of the `currency` beside it. Every instant is timezone-aware UTC.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    model_validator,
)

from incentives.domain.errors import InvalidCombination
from incentives.domain.inputs import check_id, check_reason
from incentives.domain.money import (
    Currency,
    MinorUnits,
    PositiveMinorUnits,
    RequestMinorUnits,
    RequestPositiveMinorUnits,
)
from incentives.domain.timeparse import check_duration, check_instant, format_duration, to_utc


def _id(value: str, info: ValidationInfo) -> str:
    return check_id(value, info.field_name or "id")


# Ids are caller-supplied idempotency keys: printable, no spaces, short enough for an index
# (`incentives.domain.inputs.check_id`).
Id = Annotated[str, Strict(), AfterValidator(_id)]


def _to_utc(instant: datetime, info: ValidationInfo) -> datetime:
    return to_utc(instant, info.field_name or "instant")


# One representation per instant, so that the same request always has the same digest.
Instant = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def _request_instant(instant: datetime, info: ValidationInfo) -> datetime:
    return check_instant(instant, info.field_name or "instant")


# An instant a request carries: UTC, and within what Temporal's timers can reach.
RequestInstant = Annotated[AwareDatetime, AfterValidator(_request_instant)]


def _duration(duration: timedelta, info: ValidationInfo) -> timedelta:
    return check_duration(duration, info.field_name or "duration")


# A duration a request carries: whole seconds, positive, at most ten years.
Duration = Annotated[timedelta, AfterValidator(_duration)]


def _reason(text: str, info: ValidationInfo) -> str:
    return check_reason(text, info.field_name or "reason")


# Text a person reads later: not blank, printable, at most 500 characters.
Reason = Annotated[str, Strict(), AfterValidator(_reason)]

PERCENT_OFF = (1, 100)
USES = (1, 10_000)

LotKind = Literal["credit", "coupon"]
LotStatus = Literal["pending", "active", "used_up", "expired", "revoked"]
EntryType = Literal["grant", "redeem", "reverse", "expire", "revoke"]
EventType = Literal["granted", "activated", "reminder", "expired", "redeemed", "reversed", "revoked"]


def wallet_id(customer_id: str) -> str:
    """The id of a customer's wallet workflow, which keeps the clock of the lots granted to it."""
    return f"wallet:{customer_id}"


class Model(BaseModel):
    """Immutable, strict about unknown fields: a typo in a spec or a payload is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def digest(self) -> str:
        """A stable fingerprint of the payload: same digest, same request (idempotency checks)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class CouponTerms(Model):
    """What a coupon takes off an order: a fixed amount, or a percentage with an optional cap."""

    amount_off: RequestPositiveMinorUnits | None = None
    percent_off: Annotated[int, Strict(), Field(ge=PERCENT_OFF[0], le=PERCENT_OFF[1])] | None = None
    cap: RequestPositiveMinorUnits | None = None
    min_order: RequestPositiveMinorUnits | None = None
    uses: Annotated[int, Strict(), Field(ge=USES[0], le=USES[1])] = 1

    # Errors name fields in backquotes, so that a command can show its own flag names instead.
    @model_validator(mode="after")
    def _one_kind_of_discount(self) -> CouponTerms:
        if (self.amount_off is None) == (self.percent_off is None):
            raise InvalidCombination("amount_off", "a coupon takes off exactly one of `amount_off` or `percent_off`")
        if self.cap is not None and self.percent_off is None:
            raise InvalidCombination("cap", "applies to `percent_off` coupons only")
        return self


class GrantRequest(Model):
    """A lot to put into a customer's wallet. `lot_id` is the idempotency key of the grant.

    The expiry is either absolute (`expires_at`) or relative to the grant (`expires_in`); the
    wallet resolves a relative one against its clock when the grant is first applied, so a retry
    of the same request is the same request.
    """

    lot_id: Id
    customer_id: Id
    currency: Currency
    kind: LotKind
    amount: RequestPositiveMinorUnits | None = None
    coupon: CouponTerms | None = None
    promotion_id: Id | None = None
    effective_at: RequestInstant | None = None
    expires_at: RequestInstant | None = None
    expires_in: Duration | None = None
    remind_before: Duration | None = None

    @model_validator(mode="after")
    def _consistent(self) -> GrantRequest:
        if self.kind == "credit" and (self.amount is None or self.coupon is not None):
            raise InvalidCombination("amount", "a credit has an `amount` and no `coupon` terms")
        if self.kind == "coupon" and (self.coupon is None or self.amount is not None):
            raise InvalidCombination("coupon", "a coupon has `coupon` terms and no `amount`")
        if self.expires_at is not None and self.expires_in is not None:
            raise InvalidCombination("expires_in", "give `expires_at` or `expires_in`, not both")
        if self.effective_at and self.expires_at and self.expires_at <= self.effective_at:
            raise InvalidCombination("expires_at", "must be after `effective_at`")
        self._check_reminder()
        return self

    def _check_reminder(self) -> None:
        """A reminder is due before the expiry and after the lot is usable; one due earlier would
        be sent at once, telling the customer about an expiry that is not near."""
        if self.remind_before is None:
            return
        lifetime = self.expires_in
        if self.expires_at is not None:
            if self.effective_at is None:
                return  # known only when applied: `check_reminder_at`
            lifetime = self.expires_at - self.effective_at
        if lifetime is None:
            raise InvalidCombination("remind_before", "needs an expiry (`expires_at` or `expires_in`)")
        if self.remind_before >= lifetime:
            raise InvalidCombination(
                "remind_before",
                f"{format_duration(self.remind_before)} is not shorter than the lot's life "
                f"({format_duration(lifetime)}): the reminder would be due before the lot is usable",
            )

    def check_reminder_at(self, now: datetime) -> None:
        """The reminder check for an absolute expiry without `effective_at`, against the caller's
        clock: a reminder due already is refused before anything is sent. An expiry already past
        is left to the ledger, which refuses it as `ExpiryInPast`."""
        if self.remind_before is None or self.expires_at is None or self.effective_at is not None:
            return
        now = now.astimezone(UTC)
        if now < self.expires_at <= now + self.remind_before:
            raise InvalidCombination(
                "remind_before",
                f"{format_duration(self.remind_before)} before `expires_at` is already past: "
                "the reminder would be sent at once",
            )

    def resolve_expiry(self, granted_at: datetime) -> datetime | None:
        """The absolute expiry of this grant if it is applied at `granted_at`."""
        if self.expires_in is not None:
            return granted_at + self.expires_in
        return self.expires_at


class Lot(Model):
    """A customer's lot as the ledger holds it. Credits hold value; coupons hold uses.

    For a credit, `remaining` = `amount` − redeemed + reversed − expired − revoked, and
    0 ≤ `remaining` ≤ `amount`. A coupon holds no stored value (`amount` = `remaining` = 0): its
    cost is what each redemption takes off an order, and `uses_left` counts down from `coupon.uses`.
    """

    lot_id: Id
    customer_id: Id
    promotion_id: Id | None
    kind: LotKind
    currency: Currency
    amount: MinorUnits
    remaining: MinorUnits
    coupon: CouponTerms | None
    uses_left: int | None
    status: LotStatus
    effective_at: Instant | None
    expires_at: Instant | None
    remind_before: timedelta | None
    reminded: bool
    granted_at: Instant
    # None in payloads recorded before promotions: those lots were all their wallet's.
    clock_workflow_id: str | None = Field(
        default=None, description="the workflow that activates, reminds and expires the lot"
    )

    @property
    def has_value(self) -> bool:
        """Whether the lot can still give anything: credit left, or coupon uses left."""
        return self.remaining > 0 if self.kind == "credit" else bool(self.uses_left)

    def clock_kept_by(self, workflow_id: str) -> bool:
        return (self.clock_workflow_id or wallet_id(self.customer_id)) == workflow_id

    @property
    def remind_at(self) -> datetime | None:
        if self.expires_at is None or self.remind_before is None:
            return None
        return self.expires_at - self.remind_before


class RedeemRequest(Model):
    """Redeem a customer's incentives against an order. `order_id` is the idempotency key."""

    customer_id: Id
    order_id: Id
    currency: Currency
    total: RequestPositiveMinorUnits
    coupon_lot_id: Id | None = None
    max_credit: RequestMinorUnits | None = None


class Applied(Model):
    """The part of a discount (or of a reversal) that one lot gave (or got back)."""

    lot_id: Id
    kind: LotKind
    amount: PositiveMinorUnits


class Redemption(Model):
    """What an order got: the breakdown returned to checkout, the same on every retry."""

    customer_id: Id
    order_id: Id
    currency: Currency
    total: PositiveMinorUnits
    discount: PositiveMinorUnits
    to_pay: MinorUnits
    applied: list[Applied]
    redeemed_at: Instant


class ReverseRequest(Model):
    """Give back what an order redeemed, all of it or `amount`. `reversal_id` is the idempotency key."""

    customer_id: Id
    order_id: Id
    reversal_id: Id
    amount: RequestPositiveMinorUnits | None = None


class Reversal(Model):
    """What a reversal gave back, lot by lot (last applied, first restored)."""

    customer_id: Id
    order_id: Id
    reversal_id: Id
    currency: Currency
    amount: PositiveMinorUnits
    restored: list[Applied]
    written_off: list[Applied] = Field(
        description="value restored into lots already expired or revoked, written off again at once"
    )
    reversible_left: MinorUnits
    reversed_at: Instant


class RevokeRequest(Model):
    """Remove what is left of a lot (support, fraud). Revoking a lot twice returns the first result."""

    customer_id: Id
    lot_id: Id
    reason: Reason


class Revocation(Model):
    lot_id: Id
    currency: Currency
    amount: MinorUnits = Field(description="value removed; 0 for a coupon or a used-up credit")
    reason: str
    revoked_at: Instant


class LedgerEntry(Model):
    entry_id: int
    entry_type: EntryType
    lot_id: Id
    customer_id: Id
    promotion_id: Id | None
    order_id: Id | None
    reversal_id: Id | None
    amount: int = Field(description="signed minor units: + into the lot, - out of it")
    currency: Currency
    reason: str | None
    workflow_id: str | None
    run_id: str | None
    created_at: Instant


class RedemptionSummary(Model):
    """What a wallet remembers of an order to validate reversals without a database call."""

    order_id: Id
    currency: Currency
    discount: PositiveMinorUnits
    reversed: MinorUnits
    reversal_ids: list[Id] = Field(description="reversals applied to this order, so that a retry is recognised")
    redeemed_at: Instant

    @property
    def reversible(self) -> int:
        return self.discount - self.reversed


class WalletView(Model):
    """`incentives wallet --json`: the customer's balances, lots and ledger, read from Postgres."""

    customer_id: Id
    balances: dict[str, int] = Field(description="currency -> minor units available now")
    pending: dict[str, int] = Field(description="currency -> minor units granted but not yet effective")
    lots: list[Lot]
    ledger: list[LedgerEntry] = Field(description="oldest first: every row, or the newest ones when limited")
    ledger_total: int = Field(ge=0, description="how many ledger rows the customer has in all")
