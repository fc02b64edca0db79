"""The ledger replayed through the independent model (`chaos.model`), customer by customer, in the
order its transactions took effect, with the requests the run sent; then every lot compared with
the model's, and the clock's work (activations, expiries) with what the model says was due.

What each step was is the ledger's (its rows, the instant the engine applied it at); what it should
have done is the model's. The model's state of each customer after each step is kept (a timeline),
so that a refused operation can be judged against the states the books passed through while it
was decided (`chaos.refusals`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from chaos import model
from chaos.books import Snapshot, Verdict
from chaos.driver import Outcome
from incentives.adapters.rows import Row
from incentives.domain.models import CouponTerms, GrantRequest, Model, RedeemRequest, ReverseRequest
from incentives.domain.promotions import PromotionTerms

NEVER = datetime.min.replace(tzinfo=UTC)
Key = tuple[str, str, str]  # (operation, customer, its id: lot, order or reversal)


@dataclass
class Step:
    kind: str  # grant | redeem | reverse | expire | revoke
    row: Row  # the operation's first ledger row
    at: tuple[datetime, datetime]  # when it took effect: its commit, then its first row's time

    @property
    def customer(self) -> str:
        customer: str = self.row["customer_id"]
        return customer


def request_key(request: Model | None) -> Key | None:
    if isinstance(request, GrantRequest):
        return "grant", request.customer_id, request.lot_id
    if isinstance(request, RedeemRequest):
        return "redeem", request.customer_id, request.order_id
    if isinstance(request, ReverseRequest):
        return "reverse", request.customer_id, request.reversal_id
    return None


def sent_requests(outcomes: Iterable[Outcome]) -> dict[Key, list[Any]]:
    """Every request the run sent, by its idempotency key: the accepted ones first, then the
    refused ones (a refused request whose write is in the ledger anyway is replayed with its own
    payload, so that the refusal check, not the model, reports it)."""
    sent: dict[Key, list[Any]] = defaultdict(list)
    for accepted in (True, False):
        for outcome in outcomes:
            request, key = outcome.request, request_key(outcome.request)
            if request is None or key is None or outcome.status not in ("done", "rejected"):
                continue
            if (outcome.status == "done") == accepted and all(
                known.digest() != request.digest() for known in sent[key]
            ):
                sent[key].append(request)
    return sent


def _payload(sent: dict[Key, list[Any]], key: Key, digest: str) -> Any:
    return next((request for request in sent.get(key, []) if request.digest() == digest), None)


# -- the order the ledger's operations took effect in ------------------------------------------------


def steps(snapshot: Snapshot) -> tuple[list[Step], int]:
    """Each operation once, in the order its transaction took effect: its commit timestamp, then
    its first row's time within the transaction. (Insertion order is not that order: a promotion's
    batch inserts a customer's lot, a redeem of theirs commits, then the batch commits.)

    One exception, decided exactly: a promotion grant takes no customer lock, so it may commit
    while a redemption of that customer runs, after the redemption read its credits. The
    redemption recorded what its credit query could see (`redemptions.credit_snapshot`); a grant
    it could not see takes effect after it, whatever their commit order. Returns the steps, and
    how many grants were so placed."""
    found: dict[Key, Step] = {}
    placed = 0
    for row in snapshot.ledger:
        key = _operation(row)
        if key not in found:
            found[key] = Step(key[0], row, (row["committed_at"], row["created_at"]))
    for customer, order_id, lot_id in snapshot.unseen:
        grant, redeem = found.get(("grant", customer, lot_id)), found.get(("redeem", customer, order_id))
        if grant is not None and redeem is not None and grant.at < redeem.at:
            grant.at = (redeem.at[0], redeem.at[1] + timedelta(microseconds=1))
            placed += 1
    return sorted(found.values(), key=lambda step: (step.at, step.row["entry_id"])), placed


def _operation(row: Row) -> Key:
    if row["reversal_id"] is not None:
        return "reverse", row["customer_id"], row["reversal_id"]
    if row["entry_type"] == "redeem":
        return "redeem", row["customer_id"], row["order_id"]
    return row["entry_type"], row["customer_id"], row["lot_id"]


# -- the replay ------------------------------------------------------------------------------------


@dataclass
class Replayed:
    customers: dict[str, model.Customer]
    # customer -> [(when, the model's state from then on)], oldest first, from an empty wallet.
    timelines: dict[str, list[tuple[datetime, model.Customer]]]


def replay(snapshot: Snapshot, outcomes: list[Outcome], terms: dict[str, PromotionTerms], verdict: Verdict) -> Replayed:
    sent = sent_requests(outcomes)
    customers: dict[str, model.Customer] = defaultdict(model.Customer)
    timelines: dict[str, list[tuple[datetime, model.Customer]]] = defaultdict(list)
    ordered, placed = steps(snapshot)
    verdict.checked["grants placed after a redemption that could not see them"] += placed
    for step in ordered:
        customer = customers[step.customer]
        if not timelines[step.customer]:
            timelines[step.customer].append((NEVER, customer.copy()))
        try:
            _apply(step, customer, snapshot, sent, terms, verdict)
        except model.Refused as refused:
            row = step.row
            verdict.fail(
                "model",
                f"{step.kind} {row['lot_id']}/{row['order_id']}: the ledger accepted what the model refuses ({refused})",
            )
        timelines[step.customer].append((step.at[0], customer.copy()))
    return Replayed(customers, timelines)


def _apply(
    step: Step,
    customer: model.Customer,
    snapshot: Snapshot,
    sent: dict[Key, list[Any]],
    terms: dict[str, PromotionTerms],
    verdict: Verdict,
) -> None:
    row = step.row
    if step.kind == "grant":
        lot = _granted_lot(row, snapshot, sent, terms)
        if lot is None:
            verdict.fail("model", f"lot {row['lot_id']}: granted, but the run sent no grant or promotion of its terms")
            return
        customer.grant(lot, pending=lot.effective_at is not None and lot.effective_at > lot.granted_at)
    elif step.kind == "redeem":
        _redeem(customer, row, snapshot, sent, verdict)
    elif step.kind == "reverse":
        _reverse(customer, row, snapshot, sent, verdict)
    else:
        _expire_or_revoke(step.kind, customer, row, verdict)


def _granted_lot(
    row: Row, snapshot: Snapshot, sent: dict[Key, list[Any]], terms: dict[str, PromotionTerms]
) -> model.Lot | None:
    """The lot as the model grants it: a wallet grant by its request, a promotion's by its terms,
    each at the instant the engine granted it (a promotion's: its wave)."""
    lot_row = snapshot.lots[row["lot_id"]]
    granted_at = lot_row["granted_at"]
    promotion_id = lot_row["promotion_id"]
    if lot_row["clock_workflow_id"] == f"promotion:{promotion_id}":
        promotion = terms.get(promotion_id)
        if promotion is None:
            return None
        validity = promotion.validity
        return model.Lot(
            row["lot_id"], promotion.kind, promotion.currency, promotion.grant_cost, granted_at,
            validity.effective_at(granted_at), validity.expires_at_for(granted_at), promotion_id=promotion_id,
            **_coupon_terms(promotion.coupon),
        )  # fmt: skip
    request = _payload(sent, ("grant", row["customer_id"], row["lot_id"]), lot_row["grant_digest"])
    if request is None:
        return None
    return model.Lot(
        request.lot_id, request.kind, request.currency, request.amount or 0, granted_at, request.effective_at,
        request.resolve_expiry(granted_at), promotion_id=request.promotion_id, **_coupon_terms(request.coupon),
    )  # fmt: skip


def _coupon_terms(coupon: CouponTerms | None) -> dict[str, Any]:
    if coupon is None:
        return {}
    return {
        "amount_off": coupon.amount_off,
        "percent_off": coupon.percent_off,
        "cap": coupon.cap,
        "min_order": coupon.min_order,
        "uses": coupon.uses,
    }


def _redeem(
    customer: model.Customer, row: Row, snapshot: Snapshot, sent: dict[Key, list[Any]], verdict: Verdict
) -> None:
    stored = snapshot.redemptions.get((row["customer_id"], row["order_id"]))
    request = stored and _payload(sent, ("redeem", row["customer_id"], row["order_id"]), stored["request_digest"])
    if stored is None or request is None:
        verdict.fail("model", f"order {row['order_id']}: charged, but no request of the run has its payload")
        return
    applied = customer.redeem(
        request.order_id,
        request.currency,
        request.total,
        request.coupon_lot_id,
        request.max_credit,
        stored["redeemed_at"],
    )
    verdict.checked["redemptions against the model"] += 1
    ours = (parts(stored["breakdown"]), stored["discount_minor"])
    if ours != ([(lot_id, amount) for lot_id, _, amount in applied], sum(amount for _, _, amount in applied)):
        verdict.fail(
            "model",
            f"order {row['order_id']}: ledger {ours[0]} (discount {ours[1]}), model {applied}"
            f"{timing(snapshot, stored, row, applied)}",
        )


def parts(breakdown: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(part["lot_id"], part["amount"]) for part in breakdown]


def timing(snapshot: Snapshot, stored: Row, row: Row, applied: list[tuple[str, str, int]]) -> str:
    """For a lot the model used and the ledger did not: when its grant committed, against when the
    redeem's transaction began and committed, and whether its credit query could see it."""
    used = {part["lot_id"] for part in stored["breakdown"]}
    grants = {r["lot_id"]: r["committed_at"] for r in snapshot.ledger if r["entry_type"] == "grant"}
    unseen = {
        lot for customer, order, lot in snapshot.unseen if (customer, order) == (row["customer_id"], row["order_id"])
    }
    missed = [
        f"{lot_id} granted {grants.get(lot_id)}{' (not seen)' if lot_id in unseen else ''}"
        for lot_id, _, _ in applied
        if lot_id not in used
    ]
    if not missed:
        return ""
    return f" (redeem began {stored['created_at']}, committed {row['committed_at']}; {', '.join(missed)})"


def _reverse(
    customer: model.Customer, row: Row, snapshot: Snapshot, sent: dict[Key, list[Any]], verdict: Verdict
) -> None:
    stored = snapshot.reversals.get((row["customer_id"], row["reversal_id"]))
    request = stored and _payload(sent, ("reverse", row["customer_id"], row["reversal_id"]), stored["request_digest"])
    if stored is None or request is None:
        verdict.fail(
            "model", f"reversal {row['reversal_id']}: in the ledger, but no request of the run has its payload"
        )
        return
    restored, written_off = customer.reverse(request.order_id, request.amount, stored["reversed_at"])
    customer.record_reversal(request.reversal_id)
    verdict.checked["reversals against the model"] += 1
    breakdown = stored["breakdown"]
    if restored != parts(breakdown["restored"]) or written_off != [p["lot_id"] for p in breakdown["written_off"]]:
        verdict.fail(
            "model", f"reversal {row['reversal_id']}: ledger {breakdown['restored']}, model {restored} / {written_off}"
        )


def _expire_or_revoke(kind: str, customer: model.Customer, row: Row, verdict: Verdict) -> None:
    lot = customer.lots.get(row["lot_id"])
    if lot is None:
        verdict.fail("model", f"{kind} of lot {row['lot_id']}, which the model never granted")
        return
    if kind == "expire" and lot.expires_at is not None and row["created_at"] < lot.expires_at:
        verdict.fail(
            "expiries", f"lot {row['lot_id']} expired at {row['created_at']}, before its expiry {lot.expires_at}"
        )
    amount = customer.expire(row["lot_id"]) if kind == "expire" else customer.revoke(row["lot_id"])
    if amount != -row["amount_minor"]:
        verdict.fail("model", f"{kind} of lot {row['lot_id']}: ledger took {-row['amount_minor']}, model {amount}")


# -- the lots at the end -----------------------------------------------------------------------------


def compare_lots(snapshot: Snapshot, replayed: Replayed, due_by: datetime, verdict: Verdict) -> None:
    """Every lot as the model left it; then the clock's work: every activation and expiry due by
    `due_by` applied, each activation announced once (an activation is the clock's or a redeem's,
    whichever came first: the model knows when one was certain, and when none could have been)."""
    revoked_at = {
        r["lot_id"]: r["created_at"] for r in snapshot.ledger if r["entry_type"] == "revoke" and r["order_id"] is None
    }
    for lot_id, row in snapshot.lots.items():
        lot = replayed.customers[row["customer_id"]].lots.get(lot_id)
        verdict.checked["lots against the model"] += 1
        if row["clock_workflow_id"].startswith("promotion:"):
            verdict.checked["promotion lots against the model"] += 1
        ours = (
            row["remaining_minor"],
            row["uses_left"] or 0,
            _state(row["status"]),
            row["effective_at"],
            row["expires_at"],
        )
        theirs = (
            None
            if lot is None
            else (lot.remaining, lot.uses_left, _state(lot.status), lot.effective_at, lot.expires_at)
        )
        if ours != theirs:
            verdict.fail("model", f"lot {lot_id}: ledger {ours}, model {theirs}")
        if lot is None:
            continue
        _clock(lot, row, revoked_at.get(lot_id), snapshot, due_by, verdict)


def _state(status: str) -> str:
    """Pending and active are one state to compare: which of them a lot is in is the clock's
    work, judged by `activations`."""
    return "live" if status in ("pending", "active") else status


def _clock(
    lot: model.Lot, row: Row, revoked_at: datetime | None, snapshot: Snapshot, due_by: datetime, verdict: Verdict
) -> None:
    verdict.checked["expiries on time"] += 1
    if row["status"] in ("pending", "active") and lot.expires_at is not None and lot.expires_at <= due_by:
        verdict.fail("expiries", f"lot {lot.lot_id} is still {row['status']}, past its expiry {lot.expires_at}")
    if not lot.pending_at_grant:
        expected: int | None = 0
    else:
        verdict.checked["activations"] += 1
        if row["status"] == "pending" and lot.due(due_by):
            verdict.fail("activations", f"lot {lot.lot_id} is still pending, effective since {lot.effective_at}")
        expected = _activations_expected(lot, row["status"], revoked_at)
    announced = snapshot.events[("activated", f"{lot.lot_id}/")]
    if expected is not None and announced != expected and announced <= 1:  # more than once: `events`
        verdict.fail(
            "activations", f"lot {lot.lot_id} ({row['status']}): {announced} activated events, {expected} expected"
        )


def _activations_expected(lot: model.Lot, status: str, revoked_at: datetime | None) -> int | None:
    """How many `activated` events a lot granted pending must have: one once it was ever active (a
    redeem activated it, or it is active, used up or expired: the clocks activate before they
    expire); none while it is pending, or if it was revoked before its effective time; either,
    for one revoked after it (its clock may or may not have come first)."""
    if lot.activated_by_redeem or status in ("active", "used_up", "expired"):
        return 1
    if status == "pending" or (revoked_at is not None and not lot.due(revoked_at)):
        return 0
    return None
