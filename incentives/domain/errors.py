"""Every failure a caller can act on, one class each.

Two families, mapped one-to-one onto the CLI's exit codes:

- `InvalidInput` (exit 2): the request itself is malformed (which field, why). Raised at the
  boundary, before anything is sent or written.
- `Rejected` (exit 1): a well-formed request that the business rules refuse (unknown coupon,
  minimum not met, nothing to redeem, a conflicting duplicate id...). Inside Temporal these travel
  as a non-retryable `ApplicationError` whose `type` is the class name, and come back out as the
  same class: `to_failure` and `from_failure` below are the one mapping, both ways.

`Unavailable` (exit 3) is for an unreachable Temporal or Postgres; `OutcomeUnknown` (exit 3) for a
call whose deadline passed before an answer: a retry with the same ids resolves it.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError


class IncentivesError(Exception):
    """Base of the project's own errors."""


class InvalidInput(IncentivesError, ValueError):
    """A field of a request is malformed; nothing was sent or written.

    A `ValueError` so that pydantic validators raising it produce an ordinary `ValidationError`.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidAmount(InvalidInput):
    """An amount is not a positive decimal with at most the currency's minor digits."""


class UnknownCurrency(InvalidInput):
    """A currency is not an active ISO 4217 code."""


class InvalidDuration(InvalidInput):
    """A duration is neither `<int><unit>` (30s, 15m, 2h, 14d, 2w) nor ISO 8601 (P14D, PT2H)."""


class InvalidInstant(InvalidInput):
    """An instant is not ISO 8601 with a time zone."""


class InvalidId(InvalidInput):
    """An id is empty, longer than 128 characters, or not letters, digits and . _ : @ / - (no spaces)."""


class InvalidText(InvalidInput):
    """A free-text field (a reason) is blank, too long, or holds a character that does not print."""


class InvalidNumber(InvalidInput):
    """A whole number is not ASCII digits, or is outside its bounds."""


class InvalidCombination(InvalidInput):
    """Fields that are each well formed contradict each other (a reminder due before its lot exists)."""


class Rejected(IncentivesError):
    """A well-formed request refused by the business rules; nothing was written.

    Subclasses name the rule. Their class name is the `ApplicationError.type` on the wire.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LotConflict(Rejected):
    """A lot id already exists with a different payload (customer, amount, terms or dates)."""


class OrderConflict(Rejected):
    """An order id was already redeemed with a different total, currency, coupon or credit cap."""


class ReversalConflict(Rejected):
    """A reversal id was already used for a different order or amount."""


class RevocationConflict(Rejected):
    """A lot already revoked is revoked again with a different reason."""


class UnknownLot(Rejected):
    """No lot with this id belongs to this customer."""


class UnknownCustomer(Rejected):
    """Nothing was ever granted to this customer."""


class UnknownOrder(Rejected):
    """No redemption of this order exists for this customer."""


class CouponNotUsable(Rejected):
    """The coupon is not a coupon, not active yet, expired, revoked or used up."""


class CurrencyMismatch(Rejected):
    """The order's currency differs from the coupon's."""


class MinimumNotMet(Rejected):
    """The order total is below the coupon's minimum order."""


class NothingToRedeem(Rejected):
    """No coupon and no active credit in the order's currency could give a discount."""


class ReversalExceedsRedeemed(Rejected):
    """A reversal asks for more than what is left to reverse on the order."""


class LotNotRevocable(Rejected):
    """The lot is already expired or revoked."""


class ExpiryInPast(Rejected):
    """A grant whose expiry is not after the moment it is applied."""


class NotDue(Rejected):
    """A time-driven transition (activate, expire) asked for before its time: a stale caller."""


class WrongWallet(Rejected):
    """A request for one customer sent to another customer's wallet (a programming error upstream)."""


class InsufficientValue(Rejected):
    """A guard in SQL fired: a lot no longer holds what the caller expected (a stale caller)."""


class PromotionConflict(Rejected):
    """A promotion id already runs with different terms, or a control its state does not allow."""


class PoolConflict(Rejected):
    """A budget pool named with another cap or currency than the promotions already drawing on it."""


class AudienceNotStaged(Rejected):
    """A promotion's audience load is missing from Postgres, or differs from what was staged."""


class BudgetExhausted(Rejected):
    """A coupon's discount would take its promotion (or its pool) past the budget."""


class BatchRefused(Rejected):
    """The database refused a promotion's grant batch for good (a constraint, or a value out of
    range): retrying cannot help, so granting stops and the promotion is `failed`."""


class Unavailable(IncentivesError):
    """Temporal or Postgres cannot be reached; nothing was sent."""


class OutcomeUnknown(IncentivesError):
    """No answer within the caller's deadline: the operation may or may not have been applied.

    A retry with the same ids is safe: it returns the first result, or applies it once.
    """


REJECTIONS: dict[str, type[Rejected]] = {
    cls.__name__: cls
    for cls in (
        Rejected,
        LotConflict,
        OrderConflict,
        ReversalConflict,
        RevocationConflict,
        UnknownLot,
        UnknownCustomer,
        UnknownOrder,
        CouponNotUsable,
        CurrencyMismatch,
        MinimumNotMet,
        NothingToRedeem,
        ReversalExceedsRedeemed,
        LotNotRevocable,
        ExpiryInPast,
        NotDue,
        WrongWallet,
        InsufficientValue,
        PromotionConflict,
        PoolConflict,
        AudienceNotStaged,
        BudgetExhausted,
        BatchRefused,
    )
}


def to_failure(rejected: Rejected) -> ApplicationError:
    """The failure Temporal carries to the caller: non-retryable, typed by the rule's class name."""
    return ApplicationError(rejected.message, type=type(rejected).__name__, non_retryable=True)


def from_failure(failure: BaseException | None) -> Rejected | None:
    """The `Rejected` a Temporal failure stands for, or None if it is not one of ours."""
    if not isinstance(failure, ApplicationError):
        return None
    cls = REJECTIONS.get(failure.type or "")
    return cls(failure.message) if cls else None
