"""Every event type's JSON Schema is committed (docs/events) and is what its models state; every
type, written by the wallet's path and the promotion's, reaches the stream conforming to it."""

from __future__ import annotations

from datetime import timedelta

from activities.ledger import LedgerActivities
from activities.promotions import PromotionActivities
from incentives.adapters.db import Pool
from incentives.app.audience import stage_audience
from incentives.devstack.servers import EmbeddedNats
from incentives.domain.events import CLOUD_EVENT_TYPES
from incentives.domain.messages import LotTransition, RedeemInput, ReverseInput, RevokeInput
from incentives.domain.models import RedeemRequest, ReverseRequest, RevokeRequest
from incentives.domain.promotions import ClockInput, GrantBatchInput, OpenPromotion, Validity
from tests.events.schemas import schema_files
from tests.helpers import eventually
from tests.helpers.builders import T0, NewId, at, credit, promotion
from tests.helpers.events import broker, conforms, running_relay, stream_events

DAY = timedelta(days=1)


def test_the_committed_schemas_are_what_the_models_state() -> None:
    for path, text in schema_files().items():
        assert path.exists(), f"{path.name} is missing: run ./dev schemas"
        assert path.read_text() == text, f"{path.name} differs from its models: run ./dev schemas and review"


async def every_event_type(pool: Pool, new_id: NewId) -> tuple[str, str]:
    """A customer whose lots, through the wallet's activities, go through every lot and order event,
    and a promotion that grants (and crosses a budget threshold) and ticks: (customer, promotion)."""
    ledger, customer, lot_id, order_id = LedgerActivities(pool), new_id("c"), new_id("lot"), new_id("o")
    await ledger.grant_lot(
        at(credit(lot_id, customer, 500, effective_at=T0 + DAY, expires_in=3 * DAY, remind_before=DAY))
    )
    for days, call in ((1, ledger.activate_lot), (2.5, ledger.record_reminder)):
        await call(LotTransition(customer_id=customer, lot_id=lot_id, as_of=T0 + days * DAY))
    request = RedeemRequest(customer_id=customer, order_id=order_id, currency="USD", total=100)
    await ledger.redeem(RedeemInput(request=request, as_of=T0 + 2 * DAY))
    reversal = ReverseRequest(customer_id=customer, order_id=order_id, reversal_id=new_id("r"), amount=40)
    await ledger.reverse(ReverseInput(request=reversal, as_of=T0 + 2 * DAY))
    await ledger.expire_lot(LotTransition(customer_id=customer, lot_id=lot_id, as_of=T0 + 4 * DAY))
    other = new_id("lot")
    await ledger.grant_lot(at(credit(other, customer, 300)))
    await ledger.revoke_lot(
        RevokeInput(request=RevokeRequest(customer_id=customer, lot_id=other, reason="x"), as_of=T0)
    )
    promotion_id = new_id("p")
    terms = promotion(promotion_id, T0, amount=300, budget=500, validity=Validity(expires_after=3 * DAY))
    load = await stage_audience(pool, promotion_id, [new_id("c")], first_load=True, terms_digest=terms.digest())
    activities = PromotionActivities(pool)
    await activities.open_promotion(OpenPromotion(terms=terms, audience=load))
    await activities.grant_batch(GrantBatchInput(promotion_id=promotion_id, first_position=1, last_position=1, wave=T0))
    await activities.tick_clock(ClockInput(promotion_id=promotion_id, as_of=T0 + 4 * DAY))
    return customer, promotion_id


async def test_every_event_type_reaches_the_stream_conforming_to_its_schema(
    pool: Pool, worker_database_url: str, nats_server: EmbeddedNats, new_id: NewId
) -> None:
    customer, promotion_id = await every_event_type(pool, new_id)

    async def published() -> None:
        left = await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE (customer_id = $1 OR promotion_id = $2) AND published_at IS NULL",
            customer,
            promotion_id,
        )
        assert left == 0

    async with broker(nats_server) as (_, js), running_relay(js, worker_database_url):
        await eventually(published, timeout=30)
        events = await stream_events(
            js,
            keep=lambda e: e["subject"] in (customer, promotion_id) or e["data"].get("promotion_id") == promotion_id,
        )
    seen = {event["type"] for event, _ in events}
    assert seen == {cloud_type for _, cloud_type in CLOUD_EVENT_TYPES.values()}
    for event, _ in events:
        conforms(event)
