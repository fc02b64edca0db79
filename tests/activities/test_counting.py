"""What the activities count (the worker's registry, read in-process): once per decision, after
its transaction; a retry's first result as `replayed`; a rolled-back attempt's value never; and
nothing at all through `UNCOUNTED`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from temporalio.exceptions import ApplicationError

from activities.counting import UNCOUNTED
from activities.ledger import LedgerActivities
from activities.promotions import PromotionActivities
from incentives.adapters.db import Pool, create_pool
from incentives.adapters.metrics import REGISTRY
from incentives.app.audience import stage_audience
from incentives.domain.messages import RedeemInput
from incentives.domain.models import RedeemRequest
from incentives.domain.promotions import ClockInput, GrantBatchInput, OpenPromotion, Validity
from tests.helpers.builders import T0, NewId, at, credit, promotion

DAY = timedelta(days=1)


def reading() -> Callable[..., float]:
    """A function of (name, labels) giving how far the series moved since this call."""
    before = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
    }

    def moved(name: str, **labels: str) -> float:
        now = REGISTRY.get_sample_value(name, labels) or 0.0
        return now - before.get((name, tuple(sorted(labels.items()))), 0.0)

    return moved


def redeem(customer: str, order_id: str, total: int, currency: str = "CHF") -> RedeemInput:
    return RedeemInput(
        request=RedeemRequest(customer_id=customer, order_id=order_id, currency=currency, total=total), as_of=T0
    )


async def test_each_decision_is_counted_once_with_its_outcome_and_value(pool: Pool, new_id: NewId) -> None:
    ledger, customer, order_id = LedgerActivities(pool), new_id("c"), new_id("o")
    moved = reading()
    await ledger.grant_lot(at(credit(new_id("lot"), customer, 400, "CHF", expires_in=DAY)))
    await ledger.redeem(redeem(customer, order_id, 150))
    await ledger.redeem(redeem(customer, order_id, 150))  # the same order: the first result
    with pytest.raises(ApplicationError) as refused:
        await ledger.redeem(redeem(customer, new_id("o"), 150, currency="SEK"))
    assert refused.value.type == "NothingToRedeem"
    operations = "incentives_operations_total"
    assert moved(operations, operation="grant", outcome="applied", reason="none") == 1
    assert moved(operations, operation="redeem", outcome="applied", reason="none") == 1
    assert moved(operations, operation="redeem", outcome="replayed", reason="none") == 1
    assert moved(operations, operation="redeem", outcome="refused", reason="NothingToRedeem") == 1
    assert moved("incentives_value_minor_total", movement="granted", currency="CHF") == 400
    assert moved("incentives_value_minor_total", movement="redeemed", currency="CHF") == 150  # not twice
    assert moved("incentives_operation_duration_seconds_count", operation="redeem") == 3


async def test_an_attempt_the_database_fails_is_counted_as_failed(database_url: str, new_id: NewId) -> None:
    closed = await create_pool(database_url, max_size=1)
    await closed.close()
    moved = reading()
    with pytest.raises(Exception, match=r"clos(ed|ing)"):
        await LedgerActivities(closed).redeem(redeem(new_id("c"), new_id("o"), 100))
    assert moved("incentives_operations_total", operation="redeem", outcome="failed", reason="none") == 1


async def test_promotion_batches_and_clocks_count_lots_and_value_once(pool: Pool, new_id: NewId) -> None:
    promotion_id = new_id("p")
    terms = promotion(promotion_id, T0, amount=250, validity=Validity(expires_after=3 * DAY)).model_copy(
        update={"currency": "NOK"}
    )
    audience = [new_id("c") for _ in range(3)]
    load = await stage_audience(pool, promotion_id, audience, first_load=True, terms_digest=terms.digest())
    activities = PromotionActivities(pool)
    await activities.open_promotion(OpenPromotion(terms=terms, audience=load))
    moved = reading()
    batch = GrantBatchInput(promotion_id=promotion_id, first_position=1, last_position=3, wave=T0)
    await activities.grant_batch(batch)
    await activities.grant_batch(batch)  # a retry: the recorded outcome, nothing granted again
    await activities.tick_clock(ClockInput(promotion_id=promotion_id, as_of=T0 + 4 * DAY))
    assert moved("incentives_promotion_grants_total") == 3
    assert moved("incentives_value_minor_total", movement="granted", currency="NOK") == 750
    assert moved("incentives_value_minor_total", movement="expired", currency="NOK") == 750


async def test_uncounted_activities_count_nothing(pool: Pool, new_id: NewId) -> None:
    ledger, customer = LedgerActivities(pool, UNCOUNTED), new_id("c")
    moved = reading()
    await ledger.grant_lot(at(credit(new_id("lot"), customer, 400, "CHF", expires_in=DAY)))
    await ledger.redeem(redeem(customer, new_id("o"), 100))
    assert moved("incentives_operations_total", operation="grant", outcome="applied", reason="none") == 0
    assert moved("incentives_value_minor_total", movement="redeemed", currency="CHF") == 0
