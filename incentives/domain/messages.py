"""Workflow ⇄ activity payloads: what a workflow sends the ledger and what the ledger answers.

Internal to the engine (they appear in workflow histories, so fields are only ever added with
defaults). The models users send and receive are in `incentives.domain.models`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Generic, TypeVar

from pydantic import Field

from incentives.domain.models import (
    GrantRequest,
    Id,
    Instant,
    Lot,
    Model,
    RedeemRequest,
    Redemption,
    RedemptionSummary,
    Reversal,
    ReverseRequest,
    Revocation,
    RevokeRequest,
)
from incentives.domain.money import Currency, MinorUnits

# How long a wallet stays open after a redemption, waiting for reversals (a reversal after it
# still works: it restarts the wallet). Not a business cutoff.
DEFAULT_REVERSAL_WINDOW = timedelta(days=90)


class GrantInput(Model):
    """`grant_lot` activity input: the request and the wallet's clock when it applies it."""

    request: GrantRequest
    granted_at: Instant


class RedeemInput(Model):
    """`redeem` activity input. Lots not effective or already expired at `as_of` are not used."""

    request: RedeemRequest
    as_of: Instant


class RedeemOutcome(Model):
    redemption: Redemption
    order: RedemptionSummary = Field(description="the order as it is now (reversals included)")
    lots: list[Lot] = Field(description="the lots the redemption touched, as they are now")


class RedeemTogether(Model):
    """Redeems of one customer that reached the wallet while the ledger was busy, in arrival order."""

    redeems: list[RedeemInput] = Field(min_length=1)


class Refusal(Model):
    """A business rule's refusal carried as data: one redeem's answer in a batch, not the batch's failure."""

    type: str = Field(description="the `Rejected` subclass' name, as `to_failure` types it")
    message: str


class RedeemAnswer(Model):
    """Exactly one of the two."""

    outcome: RedeemOutcome | None = None
    refusal: Refusal | None = None


class RedeemAnswers(Model):
    answers: list[RedeemAnswer] = Field(description="one per redeem, in the order they were sent")


class ReverseInput(Model):
    request: ReverseRequest
    as_of: Instant


class ReverseOutcome(Model):
    reversal: Reversal
    order: RedemptionSummary = Field(description="the order as it is now (all reversals included)")
    lots: list[Lot]


class RevokeInput(Model):
    request: RevokeRequest
    as_of: Instant


class RevokeOutcome(Model):
    revocation: Revocation
    lot: Lot


class LotTransition(Model):
    """Input of the time-driven activities: `activate_lot`, `record_reminder`, `expire_lot`."""

    customer_id: Id
    lot_id: Id
    as_of: Instant


class Expiry(Model):
    lot_id: Id
    currency: Currency
    amount: MinorUnits = Field(description="value written off; 0 for a coupon or a used-up credit")


class ExpireOutcome(Model):
    expiry: Expiry
    lot: Lot


class WalletMemory(Model):
    """What a wallet holds: loaded from the ledger when a run starts afresh, carried across
    continue-as-new otherwise. Its live lots (pending or active), the digests of their grants (to
    tell a retried grant from a conflicting one), and the orders still inside the reversal window."""

    customer_id: Id
    lots: list[Lot]
    grant_digests: dict[str, str]
    redemptions: list[RedemptionSummary]


class WalletInput(Model):
    """The wallet workflow's input: whose wallet, and the memory carried across continue-as-new.

    Defined here rather than beside the workflow: the sandbox re-runs the workflow's module for
    every new run, and building two pydantic models there cost ~5 ms of CPU per new wallet."""

    customer_id: str
    reversal_window: timedelta = DEFAULT_REVERSAL_WINDOW
    memory: WalletMemory | None = None


class WalletClosed(Model):
    """The result of a wallet run that completed (rather than continued-as-new)."""

    customer_id: str
    closed_at: datetime


class LoadWalletInput(Model):
    customer_id: Id
    redeemed_since: Instant
    max_orders: int = Field(gt=0, description="the most recent orders to load")


Operation = TypeVar("Operation", bound=Model)
Result = TypeVar("Result", bound=Model)


class FirstCall(Model, Generic[Operation]):
    """The first ledger call of a run started without memory: the operation, and the load.

    A new wallet, or one restarted after completing, would otherwise pay for two ledger calls
    (`load_wallet`, then the operation); the `load_and_*` activities do both in one transaction."""

    operation: Operation
    load: LoadWalletInput


class Loaded(Model, Generic[Result]):
    """The operation's result and the wallet's memory as the ledger has it right after it."""

    result: Result
    memory: WalletMemory
