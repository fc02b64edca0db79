"""After the run: the books against the independent model, in one snapshot of Postgres.

The model (`chaos.model`) replays, customer by customer and in the ledger's commit order, what the
engine accepted (the requests the run sent, the instants the engine applied them at) and says what
each step should have done; every disagreement is a violation, as is anything `reconcile` finds,
an answer that differs from the ledger, a refusal that wrote something, a promotion past its
budget, or an event published twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chaos import model
from chaos.driver import Outcome
from incentives.adapters.db import Pool
from incentives.adapters.rows import Row
from incentives.app.reconcile import reconcile
from incentives.domain.models import GrantRequest, RedeemRequest, ReverseRequest
from incentives.domain.promotions import PromotionTerms


@dataclass
class Snapshot:
    lots: dict[str, Row]
    ledger: list[Row]
    activations: list[Row]
    redemptions: dict[tuple[str, str], Row]
    reversals: dict[tuple[str, str], Row]
    events: Counter[tuple[str, str]]
    promotions: dict[str, Row]
    pool_committed: dict[str, int]


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    checked: Counter[str] = field(default_factory=Counter)

    def fail(self, what: str) -> None:
        self.violations.append(what)


async def check(pool: Pool, outcomes: list[Outcome], terms: dict[str, PromotionTerms]) -> Verdict:
    verdict = Verdict()
    books = await reconcile(pool)
    for violation in books.violations:
        verdict.fail(f"reconcile {violation.check}: {violation.subject}: {violation.detail}")
    snapshot = await _snapshot(pool)
    _answers_match_the_ledger(snapshot, outcomes, verdict)
    _refusals_wrote_nothing(snapshot, outcomes, verdict)
    _model_agrees(snapshot, outcomes, terms, verdict)
    _promotions_within_budget(snapshot, terms, verdict)
    _one_event_each(snapshot, verdict)
    _closed_promotions_take_nothing_back(outcomes, verdict)
    for outcome in outcomes:
        if outcome.status == "unresolved":
            verdict.fail(f"op {outcome.op.index} ({outcome.op.kind}) never answered: {outcome.rule}")
        if outcome.op.kind == "hostile" and outcome.status != "refused":
            verdict.fail(f"op {outcome.op.index}: hostile input accepted: {outcome.op.fields}")
    return verdict


async def _snapshot(pool: Pool) -> Snapshot:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        lots = {row["lot_id"]: row for row in await conn.fetch("SELECT * FROM lots")}
        ledger = list(
            await conn.fetch(
                "SELECT *, pg_xact_commit_timestamp(xmin) AS committed_at FROM ledger_entries ORDER BY entry_id"
            )
        )
        activations = list(
            await conn.fetch(
                """SELECT lot_id, created_at, pg_xact_commit_timestamp(xmin) AS committed_at
                   FROM outbox WHERE event_type = 'activated' ORDER BY event_id"""
            )
        )
        redemptions = {(r["customer_id"], r["order_id"]): r for r in await conn.fetch("SELECT * FROM redemptions")}
        reversals = {(r["customer_id"], r["reversal_id"]): r for r in await conn.fetch("SELECT * FROM reversals")}
        events = Counter(
            (row["event_type"], row["subject"])
            for row in await conn.fetch(
                """SELECT event_type, CASE WHEN event_type IN ('redeemed', 'reversed')
                                           THEN customer_id || '/' || coalesce(payload->>'reversal_id', order_id)
                                           ELSE coalesce(lot_id, '') || '/' || coalesce(payload->>'reversal_id', '')
                                      END AS subject
                   FROM outbox WHERE event_type <> 'budget_threshold'"""
            )
        )
        promotions = {row["promotion_id"]: row for row in await conn.fetch("SELECT * FROM promotions")}
        pools = {r["pool_id"]: r["committed_minor"] for r in await conn.fetch("SELECT * FROM promotion_pools")}
    return Snapshot(lots, ledger, activations, redemptions, reversals, events, promotions, pools)


def _answers_match_the_ledger(snapshot: Snapshot, outcomes: list[Outcome], verdict: Verdict) -> None:
    for outcome in outcomes:
        request, result = outcome.request, outcome.result
        if outcome.status != "done" or result is None:
            continue
        if isinstance(request, RedeemRequest):
            row = snapshot.redemptions.get((request.customer_id, request.order_id))
            verdict.checked["redemption answers"] += 1
            if row is None or _parts(row["breakdown"]) != _parts(result["applied"]):
                verdict.fail(
                    f"redeem {request.order_id}: answered {result['applied']}, ledger has {row and row['breakdown']}"
                )
        elif isinstance(request, ReverseRequest):
            row = snapshot.reversals.get((request.customer_id, request.reversal_id))
            verdict.checked["reversal answers"] += 1
            if row is None or _parts(row["breakdown"]["restored"]) != _parts(result["restored"]):
                verdict.fail(f"reverse {request.reversal_id}: answered {result['restored']}, ledger disagrees")


def _parts(parts: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(part["lot_id"], part["amount"]) for part in parts]


def _refusals_wrote_nothing(snapshot: Snapshot, outcomes: list[Outcome], verdict: Verdict) -> None:
    """A refused operation's write is not in the ledger, unless the same request was accepted by
    another send of it (a refusal is true when given and writes nothing; a later retry may pass)."""
    accepted = {o.request.digest() for o in outcomes if o.status == "done" and o.request is not None}
    for outcome in outcomes:
        request = outcome.request
        if outcome.status != "rejected" or request is None or request.digest() in accepted:
            continue
        verdict.checked["refusals"] += 1
        digest = request.digest()
        if isinstance(request, RedeemRequest):
            row = snapshot.redemptions.get((request.customer_id, request.order_id))
            wrote = row is not None and row["request_digest"] == digest
        elif isinstance(request, ReverseRequest):
            row = snapshot.reversals.get((request.customer_id, request.reversal_id))
            wrote = row is not None and row["request_digest"] == digest
        elif isinstance(request, GrantRequest):
            row = snapshot.lots.get(request.lot_id)
            wrote = row is not None and row["grant_digest"] == digest
        else:
            wrote = False
        if wrote:
            verdict.fail(f"op {outcome.op.index} was refused ({outcome.rule}) but its write is in the ledger")


def _model_agrees(
    snapshot: Snapshot, outcomes: list[Outcome], terms: dict[str, PromotionTerms], verdict: Verdict
) -> None:
    sent: dict[tuple[str, str, str], Any] = {}
    for outcome in outcomes:
        request = outcome.request
        if outcome.status == "done" and isinstance(request, GrantRequest):
            sent["grant", request.customer_id, request.lot_id] = request
        if outcome.status == "done" and isinstance(request, RedeemRequest):
            sent["redeem", request.customer_id, request.order_id] = request
        if outcome.status == "done" and isinstance(request, ReverseRequest):
            sent["reverse", request.customer_id, request.reversal_id] = request
    customers: dict[str, model.Customer] = defaultdict(model.Customer)
    for step in _steps(snapshot):
        _apply(step, snapshot, sent, terms, customers, verdict)
    for lot_id, row in snapshot.lots.items():
        lot = customers[row["customer_id"]].lots.get(lot_id)
        verdict.checked["lots"] += 1
        ours = (row["remaining_minor"], row["uses_left"] or 0, row["status"])
        if lot is None or (lot.remaining, lot.uses_left, lot.status) != ours:
            theirs = None if lot is None else (lot.remaining, lot.uses_left, lot.status)
            verdict.fail(f"lot {lot_id}: ledger {ours}, model {theirs}")


Step = tuple[datetime, str, Row]


def _steps(snapshot: Snapshot) -> list[Step]:
    """Each operation once, in the order its transaction took effect: its commit timestamp, then
    its first row's time within the transaction. (Insertion order is not that order: a promotion's
    batch inserts a customer's lot, a redeem of theirs commits, then the batch commits.)"""
    steps: list[Step] = []
    seen: set[tuple[str, str, str]] = set()
    for row in snapshot.ledger:
        key = _operation(row)
        if key not in seen:
            seen.add(key)
            steps.append((row["created_at"], key[0], row))
    steps += [(row["created_at"], "activate", row) for row in snapshot.activations]
    order = {id(step): (step[2]["committed_at"], step[0]) for step in steps}
    _place_grants_a_redeem_did_not_see(snapshot, steps, order)
    return sorted(steps, key=lambda step: order[id(step)])


def _place_grants_a_redeem_did_not_see(
    snapshot: Snapshot, steps: list[Step], order: dict[int, tuple[datetime, datetime]]
) -> None:
    """A promotion grant takes no customer lock, so a redeem of the same customer that began before
    the grant committed and committed after it may or may not have read the lot (its rows are read
    mid-transaction). If the redeem did not use the lot, it did not need it or did not see it:
    either way the grant takes effect after the redeem; if it used it, before, by commit order."""
    redeems = defaultdict(list)
    for step in steps:
        if step[1] == "redeem":
            stored = snapshot.redemptions[(step[2]["customer_id"], step[2]["order_id"])]
            used = {part["lot_id"] for part in stored["breakdown"]}
            redeems[step[2]["customer_id"]].append((stored["created_at"], step, used))
    for step in steps:
        row = step[2]
        if step[1] != "grant" or not snapshot.lots[row["lot_id"]]["clock_workflow_id"].startswith("promotion:"):
            continue  # a grant through a wallet holds the customer's lock: commit order is the order
        for began, redeem, used in redeems[row["customer_id"]]:
            committed = redeem[2]["committed_at"]
            if began < row["committed_at"] < committed and row["lot_id"] not in used:
                order[id(step)] = max(order[id(step)], (committed, redeem[0] + timedelta(microseconds=1)))


def _operation(row: Row) -> tuple[str, str, str]:
    if row["reversal_id"] is not None:
        return "reverse", row["customer_id"], row["reversal_id"]
    if row["entry_type"] == "redeem":
        return "redeem", row["customer_id"], row["order_id"]
    return row["entry_type"], row["customer_id"], row["lot_id"]


def _apply(
    step: tuple[datetime, str, Row],
    snapshot: Snapshot,
    sent: dict[tuple[str, str, str], Any],
    terms: dict[str, PromotionTerms],
    customers: dict[str, model.Customer],
    verdict: Verdict,
) -> None:
    _, kind, row = step
    if kind == "activate":
        lot = snapshot.lots[row["lot_id"]]
        customers[lot["customer_id"]].activate(row["lot_id"])
        return
    customer = customers[row["customer_id"]]
    try:
        if kind == "grant":
            _grant(customer, row, snapshot, sent, terms)
        elif kind == "redeem":
            _redeem(customer, row, snapshot, sent, verdict)
        elif kind == "reverse":
            _reverse(customer, row, snapshot, sent, verdict)
        elif kind in ("expire", "revoke"):
            amount = customer.expire(row["lot_id"]) if kind == "expire" else customer.revoke(row["lot_id"])
            if amount != -row["amount_minor"]:
                verdict.fail(f"{kind} of lot {row['lot_id']}: ledger took {-row['amount_minor']}, model {amount}")
    except model.Refused as refused:
        verdict.fail(
            f"{kind} {row['lot_id']}/{row['order_id']}: the ledger accepted what the model refuses ({refused})"
        )


def _grant(
    customer: model.Customer,
    row: Row,
    snapshot: Snapshot,
    sent: dict[tuple[str, str, str], Any],
    terms: dict[str, PromotionTerms],
) -> None:
    lot_row = snapshot.lots[row["lot_id"]]
    granted_at = lot_row["granted_at"]
    request = sent.get(("grant", row["customer_id"], row["lot_id"]))
    if request is None:  # a promotion's lot: its terms, at its wave's instant
        promotion = terms[lot_row["promotion_id"]]
        expires_at = promotion.validity.expires_at_for(granted_at)
        lot = model.Lot(row["lot_id"], "credit", "USD", promotion.grant_cost, granted_at, None, expires_at)
        customer.grant(lot, pending=False)
        return
    expires_at = request.resolve_expiry(granted_at)
    coupon = request.coupon
    lot = model.Lot(
        request.lot_id, request.kind, request.currency, request.amount or 0, granted_at, request.effective_at, expires_at,
        amount_off=coupon and coupon.amount_off, percent_off=coupon and coupon.percent_off, cap=coupon and coupon.cap,
        min_order=coupon and coupon.min_order, uses=coupon.uses if coupon else 0,
    )  # fmt: skip
    customer.grant(lot, pending=request.effective_at is not None and request.effective_at > granted_at)


def _redeem(
    customer: model.Customer, row: Row, snapshot: Snapshot, sent: dict[tuple[str, str, str], Any], verdict: Verdict
) -> None:
    stored = snapshot.redemptions[(row["customer_id"], row["order_id"])]
    request = sent.get(("redeem", row["customer_id"], row["order_id"]))
    if request is None or request.digest() != stored["request_digest"]:
        verdict.fail(f"order {row['order_id']}: charged, but no accepted request of the run has its payload")
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
    if [(lot_id, amount) for lot_id, _, amount in applied] != _parts(stored["breakdown"]):
        verdict.fail(
            f"order {row['order_id']}: ledger {_parts(stored['breakdown'])}, model {applied}"
            f"{_timing(snapshot, stored, row, applied)}"
        )


def _timing(snapshot: Snapshot, stored: Row, row: Row, applied: list[tuple[str, str, int]]) -> str:
    """For a lot the model used and the ledger did not: when its grant committed, against when the
    redeem's transaction began and committed (what decides whether the redeem could see it)."""
    used = {part["lot_id"] for part in stored["breakdown"]}
    grants = {r["lot_id"]: r["committed_at"] for r in snapshot.ledger if r["entry_type"] == "grant"}
    missed = [f"{lot_id} granted {grants.get(lot_id)}" for lot_id, _, _ in applied if lot_id not in used]
    if not missed:
        return ""
    return f" (redeem began {stored['created_at']}, committed {row['committed_at']}; {', '.join(missed)})"


def _reverse(
    customer: model.Customer, row: Row, snapshot: Snapshot, sent: dict[tuple[str, str, str], Any], verdict: Verdict
) -> None:
    stored = snapshot.reversals[(row["customer_id"], row["reversal_id"])]
    request = sent.get(("reverse", row["customer_id"], row["reversal_id"]))
    if request is None:
        verdict.fail(f"reversal {row['reversal_id']}: in the ledger, but no accepted request of the run")
        return
    restored, written_off = customer.reverse(request.order_id, request.amount, stored["reversed_at"])
    verdict.checked["reversals against the model"] += 1
    breakdown = stored["breakdown"]
    if restored != _parts(breakdown["restored"]) or written_off != [p["lot_id"] for p in breakdown["written_off"]]:
        verdict.fail(f"reversal {row['reversal_id']}: ledger {breakdown['restored']}, model {restored} / {written_off}")


def _promotions_within_budget(snapshot: Snapshot, terms: dict[str, PromotionTerms], verdict: Verdict) -> None:
    for promotion_id, row in snapshot.promotions.items():
        granted = sum(1 for r in snapshot.ledger if r["promotion_id"] == promotion_id and r["entry_type"] == "grant")
        amount = terms[promotion_id].grant_cost
        verdict.checked["promotions"] += 1
        if (row["granted_count"], row["committed_minor"]) != (granted, granted * amount):
            verdict.fail(
                f"promotion {promotion_id}: counters {row['granted_count']}/{row['committed_minor']}, ledger {granted}"
            )
        if row["committed_minor"] > row["budget_minor"]:
            verdict.fail(f"promotion {promotion_id}: committed {row['committed_minor']} past its budget")
    for pool_id, committed in snapshot.pool_committed.items():
        if committed > 15_000:
            verdict.fail(f"pool {pool_id}: committed {committed} past its cap")


def _closed_promotions_take_nothing_back(outcomes: list[Outcome], verdict: Verdict) -> None:
    """A reversal into the lot of a promotion that closed (cancelled with its outstanding lots
    revoked) gives the customer nothing back: all it restored is written off again at once."""
    for outcome in outcomes:
        if outcome.op.kind != "close_then_reverse" or outcome.status != "done" or outcome.result is None:
            continue
        verdict.checked["reversals after close"] += 1
        if _parts(outcome.result["restored"]) != _parts(outcome.result["written_off"]):
            verdict.fail(
                f"op {outcome.op.index}: reversal after close restored {outcome.result['restored']}, "
                f"wrote off {outcome.result['written_off']}"
            )


def _one_event_each(snapshot: Snapshot, verdict: Verdict) -> None:
    for (event, subject), count in snapshot.events.items():
        verdict.checked["events"] += 1
        if count != 1 and event != "activated":
            verdict.fail(f"event {event} for {subject} published {count} times")
