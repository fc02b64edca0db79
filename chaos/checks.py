"""After the run: the books against the independent model, in one snapshot of Postgres.

Every check has a name (`chaos.books.CHECKS`) and records its violations under it:
- `reconcile`: the engine's own invariants, as `incentives reconcile` states them (its check that
  lots expire on time is `expiries` here, judged against when the run's clock stopped, not now);
- `answers`: every redemption's and reversal's answer is what the ledger holds;
- `refusals_wrote_nothing` and `refusals_justified` (`chaos.refusals`): a refused operation wrote
  nothing, and had to be refused, for that rule;
- `model`, `activations`, `expiries` (`chaos.replay`): the ledger replayed through the model in
  the order its transactions took effect, every step and every lot as the model says; every
  activation and expiry due applied on time, each activation announced once;
- `budgets`: each promotion's grants and commitment as its terms and the model say (a credit
  promotion commits its grants, a coupon promotion what its coupons took off orders, net of
  reversals), within its budget, and each pool within its cap;
- `events`: no event published twice; `closed_promotions`: a reversal into a closed promotion's
  lot gives nothing back; `answered`: every operation answered, every hostile input refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from chaos import model, refusals
from chaos.books import Scope, Snapshot, Verdict, load
from chaos.driver import Control, Outcome
from chaos.replay import Replayed, compare_lots, parts, replay
from incentives.adapters.db import Pool
from incentives.app.reconcile import reconcile
from incentives.domain.models import GrantRequest, RedeemRequest, ReverseRequest, RevokeRequest
from incentives.domain.promotions import PromotionTerms

# How late a timer may fire (a worker or the server restarting) and its transition still count as on
# time: an activation or expiry due more than this before the clock stopped must have been applied.
CLOCK_GRACE = timedelta(seconds=20)
# Judged by `expiries` instead, against the instant the run's clock stopped.
_RECONCILE_SKIPS = {"expired_on_time"}


async def check(
    pool: Pool,
    outcomes: list[Outcome],
    terms: dict[str, PromotionTerms],
    *,
    due_by: datetime,
    scope: Scope | None = None,
) -> Verdict:
    """The books (those in `scope`, or all) against the run's operations: `due_by` is the instant by
    which every activation and expiry due must have been applied (the clock stopped, less its grace)."""
    verdict = Verdict()
    snapshot = await load(pool, scope)
    await _reconcile(pool, snapshot, scope, verdict)
    outcomes = [outcome for outcome in outcomes if _in_scope(outcome, snapshot, scope)]
    _answers_match_the_ledger(snapshot, outcomes, verdict)
    replayed = replay(snapshot, outcomes, terms, verdict)
    compare_lots(snapshot, replayed, due_by, verdict)
    refusals.wrote_nothing(snapshot, outcomes, verdict)
    refusals.justified(snapshot, outcomes, replayed, verdict)
    _promotions_within_budget(snapshot, replayed, terms, scope is None, verdict)
    _one_event_each(snapshot, verdict)
    _closed_promotions_take_nothing_back(outcomes, verdict)
    _every_operation_answered(outcomes, verdict)
    return verdict


async def _reconcile(pool: Pool, snapshot: Snapshot, scope: Scope | None, verdict: Verdict) -> None:
    if scope is None or snapshot.customers is None:
        books = [await reconcile(pool)]
    else:
        books = [await reconcile(pool, customer=c) for c in sorted(snapshot.customers)]
        books += [await reconcile(pool, promotion=p) for p in sorted(scope.promotions)]
    found = {(v.check, v.subject, v.detail) for b in books for v in b.violations if v.check not in _RECONCILE_SKIPS}
    for name, subject, detail in sorted(found):
        verdict.fail("reconcile", f"{name}: {subject}: {detail}")


def _in_scope(outcome: Outcome, snapshot: Snapshot, scope: Scope | None) -> bool:
    if scope is None or snapshot.customers is None:
        return True
    request = outcome.request
    if isinstance(request, GrantRequest | RedeemRequest | ReverseRequest | RevokeRequest):
        return request.customer_id in snapshot.customers
    if isinstance(request, PromotionTerms):
        return request.promotion_id in scope.promotions
    if isinstance(request, Control):
        return request.promotion in scope.promotions
    return outcome.op.customer in snapshot.customers


def _answers_match_the_ledger(snapshot: Snapshot, outcomes: list[Outcome], verdict: Verdict) -> None:
    for outcome in outcomes:
        request, result = outcome.request, outcome.result
        if outcome.status != "done" or result is None:
            continue
        if isinstance(request, RedeemRequest):
            row = snapshot.redemptions.get((request.customer_id, request.order_id))
            verdict.checked["redemption answers"] += 1
            if row is None or parts(row["breakdown"]) != parts(result["applied"]):
                verdict.fail(
                    "answers",
                    f"redeem {request.order_id}: answered {result['applied']}, ledger has {row and row['breakdown']}",
                )
        elif isinstance(request, ReverseRequest):
            row = snapshot.reversals.get((request.customer_id, request.reversal_id))
            verdict.checked["reversal answers"] += 1
            if row is None or parts(row["breakdown"]["restored"]) != parts(result["restored"]):
                verdict.fail(
                    "answers", f"reverse {request.reversal_id}: answered {result['restored']}, ledger disagrees"
                )


def _promotions_within_budget(
    snapshot: Snapshot, replayed: Replayed, terms: dict[str, PromotionTerms], every_promotion: bool, verdict: Verdict
) -> None:
    """Each promotion's counters as its grant rows and the model say, its commitment within the
    budget of its terms; each pool's commitment the sum of its promotions', within its cap (when
    all of them are in view)."""
    committed: dict[str, int] = {}
    for promotion_id, row in snapshot.promotions.items():
        promotion = terms.get(promotion_id)
        if promotion is None:
            verdict.fail(
                "budgets", f"promotion {promotion_id}: in the books, but the run started no promotion of that id"
            )
            continue
        granted = sum(
            1
            for r in snapshot.ledger
            if r["entry_type"] == "grant"
            and r["promotion_id"] == promotion_id
            and snapshot.lots[r["lot_id"]]["clock_workflow_id"] == f"promotion:{promotion_id}"
        )
        committed[promotion_id] = granted * promotion.grant_cost + sum(
            model.net_coupon_discounts(customer, promotion_id) for customer in replayed.customers.values()
        )
        verdict.checked["promotions"] += 1
        ours = (row["granted_count"], row["committed_minor"], row["budget_minor"])
        if ours != (granted, committed[promotion_id], promotion.budget.amount):
            verdict.fail(
                "budgets",
                f"promotion {promotion_id}: granted, committed, budget {ours}; "
                f"its grant rows, the model and its terms {(granted, committed[promotion_id], promotion.budget.amount)}",
            )
        if committed[promotion_id] > promotion.budget.amount:
            verdict.fail("budgets", f"promotion {promotion_id}: {committed[promotion_id]} committed past its budget")
    _pools_within_caps(snapshot, committed, terms.values(), every_promotion, verdict)


def _pools_within_caps(
    snapshot: Snapshot,
    committed: dict[str, int],
    terms: Iterable[PromotionTerms],
    every_promotion: bool,
    verdict: Verdict,
) -> None:
    members: dict[str, list[str]] = {}
    caps: dict[str, int] = {}
    for promotion in terms:
        if promotion.budget.pool is not None:
            members.setdefault(promotion.budget.pool.pool_id, []).append(promotion.promotion_id)
            caps[promotion.budget.pool.pool_id] = promotion.budget.pool.amount
    for pool_id, promotion_ids in members.items():
        row = snapshot.pools.get(pool_id)
        if row is None or not every_promotion:
            continue
        verdict.checked["pools"] += 1
        expected = sum(committed.get(p, 0) for p in promotion_ids)
        if row["committed_minor"] != expected or expected > caps[pool_id]:
            verdict.fail(
                "budgets",
                f"pool {pool_id}: committed {row['committed_minor']}, its promotions {expected}, cap {caps[pool_id]}",
            )


def _closed_promotions_take_nothing_back(outcomes: list[Outcome], verdict: Verdict) -> None:
    """A reversal into the lot of a promotion that closed (cancelled with its outstanding lots
    revoked) gives the customer nothing back: all it restored is written off again at once."""
    for outcome in outcomes:
        if outcome.op.kind != "close_then_reverse" or outcome.status != "done" or outcome.result is None:
            continue
        verdict.checked["reversals after close"] += 1
        if parts(outcome.result["restored"]) != parts(outcome.result["written_off"]):
            verdict.fail(
                "closed_promotions",
                f"op {outcome.op.index}: reversal after close restored {outcome.result['restored']}, "
                f"wrote off {outcome.result['written_off']}",
            )


def _one_event_each(snapshot: Snapshot, verdict: Verdict) -> None:
    """Every event once: a lot's grant, activation, reminder, expiry and revocation, an order's
    redemption, each reversal (an activation too: a redeem's and the clock's both activate only a
    lot still pending, on its locked row, so one of them does)."""
    for (event, subject), count in snapshot.events.items():
        verdict.checked["events"] += 1
        if count != 1:
            verdict.fail("events", f"event {event} for {subject} published {count} times")


def _every_operation_answered(outcomes: list[Outcome], verdict: Verdict) -> None:
    for outcome in outcomes:
        if outcome.status == "unresolved":
            verdict.fail("answered", f"op {outcome.op.index} ({outcome.op.kind}) never answered: {outcome.rule}")
        if outcome.op.kind == "hostile" and outcome.status != "refused":
            verdict.fail("answered", f"op {outcome.op.index}: hostile input accepted: {outcome.op.fields}")
