"""Promotions: the terms a promotion grants under, and what its workflow and activities exchange.

A promotion grants one lot per audience entry, in set-based batches written straight into the
ledger (no wallet is started), and keeps the clock of the lots it granted. Amounts are minor units
of the promotion's one currency; instants are UTC. The spec file a product team writes is parsed
into `PromotionTerms` by `incentives.domain.promotion_spec`.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationInfo, model_validator

from incentives.domain.errors import InvalidCombination, InvalidId
from incentives.domain.inputs import shown
from incentives.domain.models import CouponTerms, Duration, Instant, LotKind, Model, RequestInstant
from incentives.domain.money import Currency, MinorUnits, PositiveMinorUnits

# A promotion id names its workflow (`promotion:<id>`) and prefixes its lots' ids
# (`<promotion>:<customer>`, `<promotion>@<n>:<customer>` for a customer's n-th lot), so it holds
# no ':' or '@' (no two (promotion, customer, n) can then share a lot id) and is short enough to
# leave room for a customer id.
PROMOTION_ID_MAX_LENGTH = 64
_PROMOTION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
MAX_PER_CUSTOMER = 100

# A promotion workflow's batch and history sizes (its input carries them, for tests to shrink).
BATCH_SIZE = 10_000
# Continue-as-new well before Temporal's own limits, so a run's history stays readable.
MAX_HISTORY_EVENTS = 1_500
# A promotion far from its limits has this many batches in flight at once: each is one Postgres
# backend, and two keep both cores of a small machine busy (three measured slower there).
BATCHES_IN_FLIGHT = 2

PromotionState = Literal["scheduled", "granting", "paused", "active", "ended", "cancelled", "failed", "closed"]
# Why an audience entry got no lot.
SkipReason = Literal["budget", "pool", "max_grants", "per_customer", "lot_id_taken", "ended", "cancelled"]


def check_promotion_id(value: str, field: str = "id", *, what: str = "promotion id") -> str:
    """A promotion's (or a budget pool's) id, by its own rule alone, which is narrower than
    `check_id`'s: 1 to 64 letters, digits and . _ / -, starting with a letter or digit."""
    rule = (
        f"at most {PROMOTION_ID_MAX_LENGTH} letters, digits and . _ / - (ASCII, starting with a letter or digit; "
        "no ':' or '@': they separate the promotion from the customer in lot ids)"
    )
    if not value:
        raise InvalidId(field, f"is empty: give a {what} of {rule}")
    if len(value) > PROMOTION_ID_MAX_LENGTH:
        raise InvalidId(field, f"{shown(value)} is longer than {PROMOTION_ID_MAX_LENGTH} characters")
    if _PROMOTION_ID.fullmatch(value) is None:
        raise InvalidId(field, f"{shown(value)} is not a {what}: {rule}")
    return value


def _promotion_id(value: str, info: ValidationInfo) -> str:
    return check_promotion_id(value, info.field_name or "id")


PromotionId = Annotated[str, Strict(), AfterValidator(_promotion_id)]


def promotion_workflow_id(promotion_id: str) -> str:
    return f"promotion:{promotion_id}"


class PoolTerms(Model):
    """A budget several promotions draw on; promotions naming one pool must agree on its cap."""

    pool_id: PromotionId
    amount: PositiveMinorUnits


class Budget(Model):
    """The most a promotion may ever commit: for credits the value granted, for coupons the
    discounts actually redeemed (enforced at checkout). Never exceeded, enforced in Postgres."""

    amount: PositiveMinorUnits
    max_grants: Annotated[int, Field(ge=1)] | None = None
    per_customer: Annotated[int, Field(ge=1, le=MAX_PER_CUSTOMER)] = 1
    pool: PoolTerms | None = None


class Validity(Model):
    """When a promotion's lots are usable. Relative times count from the lot's grant wave."""

    expires_after: Duration | None = None
    expires_at: RequestInstant | None = None
    effective_after: Duration | None = None
    remind_before: Duration | None = None

    @model_validator(mode="after")
    def _one_expiry(self) -> Validity:
        if (self.expires_after is None) == (self.expires_at is None):
            raise InvalidCombination("validity", "give expires_after or expires_at, not both and not neither")
        lifetime = self.expires_after
        if lifetime is not None and self.effective_after is not None and self.effective_after >= lifetime:
            raise InvalidCombination("validity.effective_after", "must be shorter than expires_after")
        if self.remind_before is not None and lifetime is not None:
            usable = lifetime - (self.effective_after or timedelta(0))
            if self.remind_before >= usable:
                raise InvalidCombination("validity.remind_before", "must be shorter than the time the lot is usable")
        return self

    def effective_at(self, wave: datetime) -> datetime | None:
        return wave + self.effective_after if self.effective_after is not None else None

    def expires_at_for(self, wave: datetime) -> datetime:
        if self.expires_at is not None:
            return self.expires_at
        assert self.expires_after is not None, "checked by _one_expiry"
        return wave + self.expires_after


def check_grants_outlive(validity: Validity, ends_at: datetime, field: str) -> None:
    """A lot granted at the last instant of granting must still be usable before a fixed expiry:
    Postgres refuses a lot that expires before it becomes effective (`expiry_after_effective`)."""
    if validity.expires_at is None:
        return
    if validity.expires_at <= ends_at:
        raise InvalidCombination(
            "validity.expires_at", f"must be after {field}: lots granted at the end must be usable"
        )
    if validity.effective_after is not None and ends_at + validity.effective_after >= validity.expires_at:
        raise InvalidCombination(
            "validity.effective_after",
            f"a lot granted at {field} would become usable at {ends_at + validity.effective_after:%Y-%m-%dT%H:%M:%SZ}, "
            f"not before validity.expires_at ({validity.expires_at:%Y-%m-%dT%H:%M:%SZ})",
        )


class PromotionTerms(Model):
    """What a promotion grants, to whom at most, and when. Carried in the workflow's input: no
    audience here (it lives in Postgres), so the history stays small whatever the audience size."""

    promotion_id: PromotionId
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: LotKind
    currency: Currency
    amount: PositiveMinorUnits | None = Field(default=None, description="a credit's value per lot")
    coupon: CouponTerms | None = None
    validity: Validity
    budget: Budget
    starts_at: Instant | None = Field(default=None, description="when granting begins; None: once started")
    ends_at: Instant | None = Field(
        default=None, description="when granting stops; None: no end of its own (it ends when its last lot closes)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> PromotionTerms:
        if self.kind == "credit" and (self.amount is None or self.coupon is not None):
            raise InvalidCombination("value", "a credit promotion gives an amount")
        if self.kind == "coupon" and (self.coupon is None or self.amount is not None):
            raise InvalidCombination("value", "a coupon promotion gives percent or amount off")
        if self.ends_at is not None and self.starts_at is not None and self.ends_at <= self.starts_at:
            raise InvalidCombination("schedule.ends_at", "must be after schedule.starts_at")
        if self.ends_at is not None:
            check_grants_outlive(self.validity, self.ends_at, "schedule.ends_at")
        return self

    def grant_until(self, ends_at: datetime | None) -> datetime | None:
        """When granting must stop, given the promotion's current end (`ends_at`, which `extend`
        moves): that end, or, without one, the last instant a lot granted could still become
        usable before a fixed expiry; None when nothing bounds it."""
        if ends_at is not None:
            return ends_at
        validity = self.validity
        if validity.expires_at is None:
            return None
        return validity.expires_at - (validity.effective_after or timedelta(0))

    @property
    def grant_cost(self) -> int:
        """What one grant commits against the budget: a credit's value; a coupon commits at checkout."""
        return self.amount if self.amount is not None else 0

    def grants_that_fit(self, audience: int) -> int:
        """How many of `audience` customers (one lot each) the limits let this promotion grant."""
        limits = [audience]
        if self.budget.max_grants is not None:
            limits.append(self.budget.max_grants)
        if self.amount is not None:
            limits.append(self.budget.amount // self.amount)
            if self.budget.pool is not None:
                limits.append(self.budget.pool.amount // self.amount)
        return min(limits)

    def worst_case(self, grants: int) -> int | None:
        """The most `grants` lots could ever cost, before the budget caps it (None: no bound)."""
        if self.amount is not None:
            return self.amount * grants
        assert self.coupon is not None, "a coupon promotion has coupon terms"
        per_use = self.coupon.amount_off or self.coupon.cap
        return None if per_use is None else per_use * self.coupon.uses * grants


def refuse_grants_nothing(terms: PromotionTerms, now: datetime) -> None:
    """Refuses terms under which the promotion could grant nothing, as of `now`: a credit worth
    more than the whole budget (or pool), or granting that can only begin after it must stop. An
    error, not a warning: a promotion that grants nothing is never what its team meant, and a
    warning line is easy to miss where only the exit code is read (a CI job, a script)."""
    if terms.amount is not None and terms.budget.amount < terms.amount:
        raise InvalidCombination(
            "budget.amount", f"{terms.budget.amount} is less than one grant ({terms.amount}): nothing could be granted"
        )
    pool = terms.budget.pool
    if terms.amount is not None and pool is not None and pool.amount < terms.amount:
        raise InvalidCombination(
            "budget.pool.amount", f"{pool.amount} is less than one grant ({terms.amount}): nothing could be granted"
        )
    until = terms.grant_until(terms.ends_at)
    if until is not None and until <= max(now, terms.starts_at or now):
        field = "schedule.ends_at" if terms.ends_at is not None else "validity.expires_at"
        raise InvalidCombination(field, f"granting would end at {until:%Y-%m-%dT%H:%M:%SZ}, before it can begin")


class AudienceLoad(Model):
    """One staged audience (the spec's, or one `add-audience`): positions first..first+size-1."""

    load_no: Annotated[int, Field(ge=0)]
    first_position: Annotated[int, Field(ge=1)]
    size: Annotated[int, Field(ge=0)]
    duplicates: Annotated[int, Field(ge=0)] = 0
    checksum: str = Field(description="SHA-256 of the ids as staged, in order: the same file twice is one load")


class GrantBatchInput(Model):
    """Grant positions [first, last] of a promotion's audience, as of its wave's instant."""

    promotion_id: PromotionId
    first_position: int
    last_position: int
    wave: Instant


class BatchOutcome(Model):
    """What one batch did; the same on a retry (the first result is recorded)."""

    granted: MinorUnits
    skipped: dict[SkipReason, int]
    committed: MinorUnits = Field(description="value committed by this batch")
    budget_met: bool


class ClockInput(Model):
    promotion_id: PromotionId
    as_of: Instant


class ClockOutcome(Model):
    """One tick of a promotion's clock: what it did to the lots due, and when the next is due."""

    activated: int
    reminded: int
    expired: int
    expired_value: MinorUnits
    holding: int = Field(description="lots of the promotion still pending or active")
    next_due: Instant | None


class OpenPromotion(Model):
    terms: PromotionTerms
    audience: AudienceLoad


class PromotionFigures(Model):
    """A promotion's books, from the ledger. Value in minor units of `currency`."""

    promotion_id: PromotionId
    currency: Currency
    customers_granted: int
    lots_granted: int
    granted: MinorUnits
    redeemed: MinorUnits
    reversed: MinorUnits
    expired: MinorUnits = Field(description="breakage: value that expired unused")
    revoked: MinorUnits
    outstanding: MinorUnits = Field(description="liability: value still held by live lots")
    coupon_uses_left: int


class PromotionStatus(Model):
    """`incentives promotion status --json`."""

    promotion_id: PromotionId
    name: str
    state: PromotionState
    kind: LotKind
    currency: Currency
    audience: int
    processed: int = Field(description="audience entries granted or skipped so far")
    granted: int
    skipped: dict[str, int]
    committed: MinorUnits
    budget: MinorUnits
    redeemed: MinorUnits
    reversed: MinorUnits
    expired: MinorUnits
    revoked: MinorUnits
    starts_at: Instant = Field(description="when granting began, or begins (the spec's, or when it was started)")
    ends_at: Instant | None = Field(description="when granting stops; null: no end of its own")
    report: PromotionFigures | None = Field(description="the report written when it ended or closed")
    failure: str | None = Field(default=None, description="why granting stopped for good, when a batch failed")


class Extend(Model):
    ends_at: RequestInstant


class StateChange(Model):
    """`record_state` input: the promotion's new state, and whether to write its report."""

    promotion_id: PromotionId
    state: PromotionState
    ends_at: Instant | None
    as_of: Instant
    write_report: bool = False
    failure: str | None = None


class RevokeOutstanding(Model):
    promotion_id: PromotionId
    as_of: Instant
    reason: str


# -- the promotion workflow's input and state: defined here, not in the workflow module, because
# the workflow sandbox re-imports workflow modules for every run and building pydantic models is
# most of what a run's start costs; domain modules are imported once and passed through.


class PromotionProgress(BaseModel):
    """What the promotion knows about itself: carried across continue-as-new, answered by queries.
    The workflow's own mutable state (every other model is frozen)."""

    model_config = ConfigDict(extra="forbid")

    promotion_id: str
    state: PromotionState = "scheduled"
    resume_to: PromotionState | None = Field(default=None, description="the state a pause interrupted")
    ends_at: Instant | None = Field(description="when granting stops; None: no end of its own")
    loads: list[AudienceLoad]
    waves: dict[int, Instant] = Field(default_factory=dict, description="load number -> when its granting began")
    next_position: int = 1
    processed: int = 0
    granted: int = 0
    committed: int = 0
    skipped: dict[str, int] = Field(default_factory=dict)
    holding: int = Field(default=0, description="lots granted and still pending or active, as last counted")
    next_due: Instant | None = None
    opened: bool = False
    recorded: tuple[PromotionState, datetime | None] | None = Field(
        default=None, description="the state and end last written to Postgres"
    )
    revoke_outstanding: bool = False
    failure: str | None = Field(default=None, description="why granting stopped for good (state failed)")

    @property
    def audience(self) -> int:
        return sum(load.size for load in self.loads)


class PromotionInput(Model):
    terms: PromotionTerms
    audience: AudienceLoad
    batch_size: int = Field(default=BATCH_SIZE, ge=1)
    history_limit: int = Field(default=MAX_HISTORY_EVENTS, ge=20, description="events before continue-as-new")
    progress: PromotionProgress | None = None


class CancelRequest(Model):
    revoke_outstanding: bool = False


class ControlOutcome(PromotionProgress):
    """A control's answer: what this control did (`effect`), then the promotion as it is once its
    state is recorded. A later control may have changed that state meanwhile; `effect` says so."""

    effect: str = Field(
        description="what this control did: 'paused', 'already paused', 'paused, then superseded by cancel', ..."
    )
