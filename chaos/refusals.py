"""Refused operations: each wrote nothing, and each had to be refused, for the rule it was refused by.

A refusal was decided at some instant between the first send of its request and its answer (a
request sent again, with the same ids and payload, may be answered by the first decision:
Temporal answers a repeated Update id with its first outcome), while other operations committed.
It is justified if the books, as they stood at some point of that window, refuse it for the same
rule:
- a business rule (nothing to redeem, an unknown or unusable coupon, an unknown order, more than
  is left to reverse, a lot not revocable...): the model, in the customer's state at the start of
  the window or after any of that customer's steps inside it, at any instant of the window;
- a conflict (the same id with another payload): the ledger held that id, with another payload,
  before the answer;
- an expiry in the past: the request's own expiry, for a grant applied inside the window.
Rules the model does not know (a promotion's controls and terms, a coupon promotion's budget) are
counted as not judged, never as checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from chaos import model
from chaos.books import Snapshot, Verdict
from chaos.driver import Outcome
from chaos.replay import Replayed
from incentives.adapters.rows import Row
from incentives.domain.models import GrantRequest, Model, RedeemRequest, ReverseRequest, RevokeRequest

NOT_JUDGED = frozenset({"BudgetExhausted", "PromotionConflict", "PoolConflict", "AudienceNotStaged", "BatchRefused"})
CONFLICTS = frozenset({"OrderConflict", "ReversalConflict", "RevocationConflict", "LotConflict"})
WALLET_REQUESTS = (GrantRequest, RedeemRequest, ReverseRequest, RevokeRequest)


def refused(outcomes: Iterable[Outcome]) -> list[Outcome]:
    return [outcome for outcome in outcomes if outcome.status == "rejected"]


# -- a refusal writes nothing -----------------------------------------------------------------------


def wrote_nothing(snapshot: Snapshot, outcomes: list[Outcome], verdict: Verdict) -> None:
    """A refused operation's write is not in the ledger, unless the same request was accepted by
    another send of it (a refusal is true when given and writes nothing; a later retry may pass)."""
    accepted = {o.request.digest() for o in outcomes if o.status == "done" and o.request is not None}
    revokes = {r["lot_id"]: r for r in snapshot.ledger if r["entry_type"] == "revoke" and r["order_id"] is None}
    for outcome in refused(outcomes):
        request = outcome.request
        if not isinstance(request, WALLET_REQUESTS) or request.digest() in accepted:
            continue
        verdict.checked["refusals wrote nothing"] += 1
        if _wrote(snapshot, revokes, request):
            verdict.fail(
                "refusals_wrote_nothing",
                f"op {outcome.op.index} was refused ({outcome.rule}) but its write is in the ledger: {_ids(request)}",
            )


def _wrote(snapshot: Snapshot, revokes: dict[str, Row], request: Model) -> bool:
    digest = request.digest()
    if isinstance(request, RedeemRequest):
        row = snapshot.redemptions.get((request.customer_id, request.order_id))
        return row is not None and row["request_digest"] == digest
    if isinstance(request, ReverseRequest):
        row = snapshot.reversals.get((request.customer_id, request.reversal_id))
        return row is not None and row["request_digest"] == digest
    if isinstance(request, GrantRequest):
        row = snapshot.lots.get(request.lot_id)
        return row is not None and row["grant_digest"] == digest
    assert isinstance(request, RevokeRequest)
    # Its revocation row, with its reason; or the lot revoked with no revocation row at all.
    entry, lot = revokes.get(request.lot_id), snapshot.lots.get(request.lot_id)
    if entry is not None:
        return bool(entry["customer_id"] == request.customer_id and entry["reason"] == request.reason)
    return lot is not None and lot["customer_id"] == request.customer_id and lot["status"] == "revoked"


def _ids(request: Model) -> str:
    fields = request.model_dump(include={"customer_id", "lot_id", "order_id", "reversal_id"})
    return ", ".join(f"{name} {value}" for name, value in fields.items())


# -- a refusal was right ---------------------------------------------------------------------------


def justified(snapshot: Snapshot, outcomes: list[Outcome], replayed: Replayed, verdict: Verdict) -> None:
    first_sent: dict[tuple[type, str], datetime] = {}
    for outcome in outcomes:
        if outcome.request is not None:
            key = (type(outcome.request), outcome.request.digest())
            first_sent[key] = min(first_sent.get(key, outcome.sent_at), outcome.sent_at)
    committed = _first_commits(snapshot)
    for outcome in refused(outcomes):
        request, rule = outcome.request, outcome.rule or ""
        if not isinstance(request, WALLET_REQUESTS) or rule in NOT_JUDGED:
            verdict.checked["refusals not judged"] += 1
            continue
        start, end = first_sent[(type(request), request.digest())], outcome.answered_at
        if rule in CONFLICTS:
            verdict.checked["refusals justified by the ledger"] += 1
            right = _conflict(snapshot, committed, request, end)
        elif rule == "ExpiryInPast":
            verdict.checked["refusals justified by the request"] += 1
            right = isinstance(request, GrantRequest) and _expiry_in_past(request, start, end)
        else:
            verdict.checked["refusals justified by the model"] += 1
            right = _model_refuses(replayed.timelines.get(request.customer_id, []), request, rule, start, end)
        if not right:
            verdict.fail(
                "refusals_justified",
                f"op {outcome.op.index} refused {rule} between {start} and {end}, which the books do not "
                f"justify: {request.model_dump(mode='json')}",
            )


def _first_commits(snapshot: Snapshot) -> dict[tuple[str, str, str], Row]:
    """Each operation's first ledger row (with its commit time): a grant by lot, a redemption by
    order, a reversal by id, a revocation by lot."""
    first: dict[tuple[str, str, str], Row] = {}
    for row in snapshot.ledger:
        if row["reversal_id"] is not None:
            key = ("reverse", row["customer_id"], row["reversal_id"])
        elif row["entry_type"] == "redeem":
            key = ("redeem", row["customer_id"], row["order_id"])
        else:
            key = (row["entry_type"], row["customer_id"], row["lot_id"])
        first.setdefault(key, row)
    return first


def _conflict(snapshot: Snapshot, committed: dict[tuple[str, str, str], Row], request: Model, end: datetime) -> bool:
    """The ledger held the request's id with another payload before the refusal was answered."""
    digest = request.digest()
    if isinstance(request, RedeemRequest):
        stored = snapshot.redemptions.get((request.customer_id, request.order_id))
        differs = stored is not None and stored["request_digest"] != digest
        row = committed.get(("redeem", request.customer_id, request.order_id))
    elif isinstance(request, ReverseRequest):
        stored = snapshot.reversals.get((request.customer_id, request.reversal_id))
        differs = stored is not None and stored["request_digest"] != digest
        row = committed.get(("reverse", request.customer_id, request.reversal_id))
    elif isinstance(request, RevokeRequest):
        row = committed.get(("revoke", request.customer_id, request.lot_id))
        differs = row is not None and row["reason"] != request.reason
    else:
        assert isinstance(request, GrantRequest)
        lot = snapshot.lots.get(request.lot_id)
        differs = lot is not None and lot["grant_digest"] != digest
        row = None if lot is None else committed.get(("grant", lot["customer_id"], request.lot_id))
    return differs and row is not None and row["committed_at"] <= end


def _expiry_in_past(request: GrantRequest, start: datetime, end: datetime) -> bool:
    """Whether, applied at some instant t of the window, the grant would expire by the time it is
    usable (max(t, effective_at)): what the ledger refuses as `ExpiryInPast`."""
    if request.expires_in is not None:
        return request.effective_at is not None and start + request.expires_in <= request.effective_at
    if request.expires_at is None:
        return False
    return request.expires_at <= max(end, request.effective_at or end)


def _model_refuses(
    timeline: list[tuple[datetime, model.Customer]], request: Model, rule: str, start: datetime, end: datetime
) -> bool:
    """Whether the model refuses the request for `rule` in one of the customer's states between
    `start` and `end`, at one of the instants that tell that window apart (its bounds, and every
    effective time and expiry inside it: usability changes only there)."""
    for state in _states(timeline, start, end):
        instants = {start, end}
        for lot in state.lots.values():
            instants.update(t for t in (lot.effective_at, lot.expires_at) if t is not None and start <= t <= end)
        attempt = _attempt(state, request)
        if attempt is None:
            continue
        for instant in sorted(instants):
            try:
                attempt(state.copy(), instant)
            except model.Refused as refusal:
                if str(refusal) == rule:
                    return True
    return False


def _states(timeline: list[tuple[datetime, model.Customer]], start: datetime, end: datetime) -> list[model.Customer]:
    """The customer's state as it stood at `start`, then after each of its steps up to `end`."""
    states = [model.Customer()]
    for at, state in timeline:
        if at <= start:
            states = [state]
        elif at <= end:
            states.append(state)
    return states


def _attempt(state: model.Customer, request: Model) -> Callable[[model.Customer, datetime], object] | None:
    """The request as the model applies it, or None in a state where the ledger answers from its
    idempotency key (the order or reversal id is taken) and no business rule is consulted."""
    if isinstance(request, RedeemRequest):
        if request.order_id in state.orders:
            return None
        return lambda c, at: c.redeem(
            request.order_id, request.currency, request.total, request.coupon_lot_id, request.max_credit, at
        )
    if isinstance(request, ReverseRequest):
        if request.reversal_id in state.reversal_ids:
            return None
        return lambda c, at: c.reverse(request.order_id, request.amount, at)
    if isinstance(request, RevokeRequest):
        return lambda c, at: c.revoke(request.lot_id)
    return None  # a grant: the model refuses none (conflicts and expiries are judged above)
