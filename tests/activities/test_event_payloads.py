"""One payload per event type: a lot's events written by the wallet's ledger activities (one lot at a
time) and by a promotion's batches and clock (set-based) have the same shape, `LotEvent`; budget
thresholds have one shape whether a grant batch or a coupon's discount crossed them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from activities.ledger import LedgerActivities
from activities.promotions import PromotionActivities
from incentives.adapters.db import Pool
from incentives.app.audience import stage_audience
from incentives.domain.events import BudgetThreshold, LotEvent
from incentives.domain.messages import LotTransition, RevokeInput
from incentives.domain.models import RevokeRequest
from incentives.domain.promotions import ClockInput, GrantBatchInput, OpenPromotion, RevokeOutstanding, Validity
from tests.helpers.builders import T0, NewId, at, credit, promotion

DAY = timedelta(days=1)
VALIDITY = Validity(effective_after=DAY, expires_after=3 * DAY, remind_before=DAY)


async def payloads(pool: Pool, column: str, value: str) -> dict[str, dict[str, Any]]:
    """Event type -> payload of the events whose `column` is `value` (one event of each type)."""
    rows = await pool.fetch(f"SELECT event_type, payload FROM outbox WHERE {column} = $1 ORDER BY event_id", value)
    return {row["event_type"]: row["payload"] for row in rows}


async def wallet_events(pool: Pool, new_id: NewId) -> dict[str, dict[str, Any]]:
    ledger, customer, lot_id, other = LedgerActivities(pool), new_id("c"), new_id("lot"), new_id("lot")
    await ledger.grant_lot(
        at(credit(lot_id, customer, 500, effective_at=T0 + DAY, expires_in=3 * DAY, remind_before=DAY))
    )
    for as_of, call in ((1, ledger.activate_lot), (2.5, ledger.record_reminder), (4, ledger.expire_lot)):
        await call(LotTransition(customer_id=customer, lot_id=lot_id, as_of=T0 + as_of * DAY))
    await ledger.grant_lot(at(credit(other, customer, 300)))
    await ledger.revoke_lot(
        RevokeInput(request=RevokeRequest(customer_id=customer, lot_id=other, reason="x"), as_of=T0)
    )
    return {**await payloads(pool, "lot_id", lot_id), "revoked": (await payloads(pool, "lot_id", other))["revoked"]}


async def promotion_events(pool: Pool, new_id: NewId, *, revoke: bool) -> dict[str, dict[str, Any]]:
    promotion_id, customer = new_id("p"), new_id("c")
    terms = promotion(promotion_id, T0, amount=300, budget=500, validity=VALIDITY)
    activities = PromotionActivities(pool)
    load = await stage_audience(pool, promotion_id, [customer], first_load=True, terms_digest=terms.digest())
    await activities.open_promotion(OpenPromotion(terms=terms, audience=load))
    await activities.grant_batch(GrantBatchInput(promotion_id=promotion_id, first_position=1, last_position=1, wave=T0))
    if revoke:
        await activities.revoke_outstanding(RevokeOutstanding(promotion_id=promotion_id, as_of=T0, reason="x"))
    for days in (1, 2.5, 3.5):
        await activities.tick_clock(ClockInput(promotion_id=promotion_id, as_of=T0 + days * DAY))
    return {
        **await payloads(pool, "lot_id", f"{promotion_id}:{customer}"),
        **await payloads(pool, "promotion_id", promotion_id),
    }


async def test_a_lots_events_have_one_shape_whichever_path_wrote_them(pool: Pool, new_id: NewId) -> None:
    wallet = await wallet_events(pool, new_id)
    granted_by_promotion = await promotion_events(pool, new_id, revoke=False)
    revoked_by_promotion = await promotion_events(pool, new_id, revoke=True)
    by_promotion = {**granted_by_promotion, "revoked": revoked_by_promotion["revoked"]}
    for event in ("granted", "activated", "reminder", "expired", "revoked"):
        assert wallet[event].keys() == by_promotion[event].keys(), event
        LotEvent.model_validate(wallet[event])
        LotEvent.model_validate(by_promotion[event])
    assert [wallet[e]["change"] for e in ("granted", "activated", "reminder", "expired")] == [500, 0, 0, -500]
    assert [by_promotion[e]["change"] for e in ("granted", "activated", "reminder", "expired")] == [300, 0, 0, -300]
    assert (wallet["revoked"]["change"], by_promotion["revoked"]["change"]) == (-300, -300)
    assert wallet["granted"]["expires_at"] == "2026-12-04T12:00:00.000000Z"
    assert by_promotion["expired"]["status"] == "expired"


async def test_a_budget_threshold_has_one_shape(pool: Pool, new_id: NewId) -> None:
    """A grant of 300 of a 500 budget crosses 50% (and only that): one event, of the one shape."""
    events = await promotion_events(pool, new_id, revoke=False)
    threshold = BudgetThreshold.model_validate(events["budget_threshold"])
    assert (threshold.threshold, threshold.committed, threshold.budget) == (50, 300, 500)
