"""The ledger activities against a real Postgres: exact rows, idempotency, guards, concurrency."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.ledger import LedgerActivities
from incentives.adapters.db import Pool, create_pool
from incentives.domain.messages import (
    LoadWalletInput,
    LotTransition,
    RedeemInput,
    RedeemTogether,
    ReverseInput,
    RevokeInput,
)
from incentives.domain.models import CouponTerms, RedeemRequest, ReverseRequest, RevokeRequest
from tests.helpers.builders import T0, NewId, at, coupon, credit
from tests.helpers.ledger import assert_ledger_balances, counts, entry_amounts, events, ledger_rows, remaining


@pytest.fixture
def ledger(pool: Pool) -> LedgerActivities:
    return LedgerActivities(pool)


def redeem_at(customer: str, order: str, total: int, as_of_days: float = 0, **extra: object) -> RedeemInput:
    request = RedeemRequest.model_validate(
        {"customer_id": customer, "order_id": order, "currency": "USD", "total": total, **extra}
    )
    return RedeemInput(request=request, as_of=T0 + timedelta(days=as_of_days))


def reverse_at(customer: str, order: str, reversal: str, amount: int | None = None, days: float = 0) -> ReverseInput:
    request = ReverseRequest(customer_id=customer, order_id=order, reversal_id=reversal, amount=amount)
    return ReverseInput(request=request, as_of=T0 + timedelta(days=days))


async def rejected(call: object) -> ApplicationError:
    """The ApplicationError a rejected activity call raised (it must be non-retryable)."""
    assert asyncio.iscoroutine(call)
    with pytest.raises(ApplicationError) as raised:
        await call
    assert raised.value.non_retryable
    return raised.value


class TestGrant:
    async def test_a_credit_writes_one_lot_one_grant_row_and_one_event(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        lot = await ledger.grant_lot(at(credit(lot_id, customer, 1000, expires_in_days=14)))
        assert (lot.amount, lot.remaining, lot.status) == (1000, 1000, "active")
        assert lot.expires_at == T0 + timedelta(days=14)
        assert await ledger_rows(pool, customer) == [("grant", lot_id, 1000, None)]
        assert await events(pool, customer) == ["granted"]

    async def test_the_same_grant_twice_writes_once_and_returns_the_first_lot(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        request = credit(lot_id, customer, 1000, expires_in_days=14)
        first = await ledger.grant_lot(at(request))
        # A retry an hour later resolves nothing anew: the first expiry stands.
        again = await ledger.grant_lot(at(request, T0 + timedelta(hours=1)))
        assert again == first
        assert await ledger_rows(pool, customer) == [("grant", lot_id, 1000, None)]

    async def test_a_different_payload_under_the_same_lot_id_is_a_conflict(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        await ledger.grant_lot(at(credit(lot_id, customer, 1000)))
        other = new_id("other")
        before = await counts(pool, customer, lot_id, other)
        error = await rejected(ledger.grant_lot(at(credit(lot_id, customer, 2000))))
        assert error.type == "LotConflict"
        error = await rejected(ledger.grant_lot(at(credit(lot_id, other, 1000))))
        assert error.type == "LotConflict"
        assert await counts(pool, customer, lot_id, other) == before

    async def test_an_expiry_before_the_grant_is_rejected(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        before = await counts(pool, customer, lot_id)
        request = credit(lot_id, customer, 100, expires_at=T0 - timedelta(seconds=1))
        assert (await rejected(ledger.grant_lot(at(request)))).type == "ExpiryInPast"
        assert await counts(pool, customer, lot_id) == before

    async def test_a_pending_lot_activates_once_at_its_time(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        lot = await ledger.grant_lot(at(credit(lot_id, customer, 500, effective_at=T0 + timedelta(days=1))))
        assert lot.status == "pending"
        # A pending lot gives nothing before it is effective.
        early_order = redeem_at(customer, new_id("o"), 100, as_of_days=23 / 24)
        assert (await rejected(ledger.redeem(early_order))).type == "NothingToRedeem"
        assert await remaining(pool, lot_id) == (500, "pending")
        early = LotTransition(customer_id=customer, lot_id=lot_id, as_of=T0 + timedelta(hours=23))
        assert (await rejected(ledger.activate_lot(early))).type == "NotDue"
        due = LotTransition(customer_id=customer, lot_id=lot_id, as_of=T0 + timedelta(days=1))
        assert (await ledger.activate_lot(due)).status == "active"
        assert (await ledger.activate_lot(due)).status == "active"
        assert await events(pool, customer) == ["granted", "activated"]
        assert await remaining(pool, lot_id) == (500, "active")

    async def test_the_ledger_rows_carry_the_calling_workflow(self, pool: Pool, new_id: NewId) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        env = ActivityEnvironment()
        env.info = env.info.__class__(
            **{**env.info.__dict__, "workflow_id": f"wallet:{customer}", "workflow_run_id": "run-1"}
        )
        await env.run(LedgerActivities(pool).grant_lot, at(credit(lot_id, customer, 100)))
        row = await pool.fetchrow("SELECT workflow_id, run_id FROM ledger_entries WHERE lot_id = $1", lot_id)
        assert row is not None
        assert (row["workflow_id"], row["run_id"]) == (f"wallet:{customer}", "run-1")


class TestRedeemTogether:
    async def test_each_redeem_applies_in_order_and_a_refusal_is_only_its_own_answer(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        await ledger.grant_lot(at(credit(lot_id, customer, 1000)))
        orders = [new_id("o") for _ in range(4)]
        # 600 then 600 (only 400 left: partial), then nothing left, then an unknown coupon.
        batch = RedeemTogether(
            redeems=[
                redeem_at(customer, orders[0], 600),
                redeem_at(customer, orders[1], 600),
                redeem_at(customer, orders[2], 100),
                redeem_at(customer, orders[3], 100, coupon_lot_id=new_id("nope")),
            ]
        )
        answers = (await ledger.redeem_together(batch)).answers
        assert [
            a.outcome.redemption.discount if a.outcome else a.refusal.type if a.refusal else None for a in answers
        ] == [
            600,
            400,
            "NothingToRedeem",
            "UnknownLot",
        ]
        assert all((a.outcome is None) != (a.refusal is None) for a in answers)
        assert await remaining(pool, lot_id) == (0, "used_up")
        assert await pool.fetchval("SELECT count(*) FROM redemptions WHERE customer_id = $1", customer) == 2
        await assert_ledger_balances(pool, customer)

    async def test_a_retry_after_a_partial_commit_returns_the_first_results_and_applies_the_rest(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        """A worker that dies mid-batch has committed some redeems: the retried batch answers those
        from the ledger (same breakdown) and applies the others once."""
        customer, lot_id = new_id("c"), new_id("lot")
        await ledger.grant_lot(at(credit(lot_id, customer, 1000)))
        redeems = [redeem_at(customer, new_id("o"), 300) for _ in range(4)]
        first = await ledger.redeem_together(RedeemTogether(redeems=redeems[:2]))
        retried = await ledger.redeem_together(RedeemTogether(redeems=redeems))
        # The same redemptions (their lots are returned as they are now, so those differ).
        assert [a.outcome.redemption for a in retried.answers[:2] if a.outcome] == [
            a.outcome.redemption for a in first.answers if a.outcome
        ]
        assert [a.outcome.redemption.discount for a in retried.answers if a.outcome] == [300, 300, 300, 100]
        again = await ledger.redeem_together(RedeemTogether(redeems=redeems))
        assert [a.outcome.redemption for a in again.answers if a.outcome] == [
            a.outcome.redemption for a in retried.answers if a.outcome
        ]
        assert [row[2] for row in await ledger_rows(pool, customer)] == [1000, -300, -300, -300, -100]


class TestRedeem:
    async def test_credits_go_soonest_expiry_first_then_oldest_then_lot_id(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer = new_id("c")
        never, late, soon = new_id("never"), new_id("late"), new_id("soon")
        await ledger.grant_lot(at(credit(never, customer, 1000)))
        await ledger.grant_lot(at(credit(late, customer, 1000, expires_in_days=30)))
        await ledger.grant_lot(at(credit(soon, customer, 1000, expires_in_days=7)))
        order = new_id("order")
        outcome = await ledger.redeem(redeem_at(customer, order, 2500))
        assert [(p.lot_id, p.amount) for p in outcome.redemption.applied] == [(soon, 1000), (late, 1000), (never, 500)]
        assert (outcome.redemption.discount, outcome.redemption.to_pay) == (2500, 0)
        assert await remaining(pool, soon) == (0, "used_up")
        assert await remaining(pool, late) == (0, "used_up")
        assert await remaining(pool, never) == (500, "active")
        assert (await ledger_rows(pool, customer))[3:] == [
            ("redeem", soon, -1000, order),
            ("redeem", late, -1000, order),
            ("redeem", never, -500, order),
        ]
        await assert_ledger_balances(pool, customer)

    async def test_never_more_than_the_total_nor_the_credit_cap(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        await ledger.grant_lot(at(credit(lot_id, customer, 5000)))
        small = await ledger.redeem(redeem_at(customer, new_id("o"), 1200))
        assert (small.redemption.discount, small.redemption.to_pay) == (1200, 0)
        capped = await ledger.redeem(redeem_at(customer, new_id("o"), 3000, max_credit=1000))
        assert (capped.redemption.discount, capped.redemption.to_pay) == (1000, 2000)
        assert await remaining(pool, lot_id) == (2800, "active")

    async def test_the_same_order_twice_is_charged_once(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id, order = new_id("c"), new_id("lot"), new_id("order")
        await ledger.grant_lot(at(credit(lot_id, customer, 1000)))
        first = await ledger.redeem(redeem_at(customer, order, 700))
        again = await ledger.redeem(redeem_at(customer, order, 700, as_of_days=1))
        assert again.redemption == first.redemption
        assert await remaining(pool, lot_id) == (300, "active")
        assert [row[0] for row in await ledger_rows(pool, customer)] == ["grant", "redeem"]
        before = await counts(pool, customer)
        assert (await rejected(ledger.redeem(redeem_at(customer, order, 800)))).type == "OrderConflict"
        assert await counts(pool, customer) == before

    async def test_a_due_lot_whose_clock_has_not_fired_is_redeemable_and_activated_once(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        """A late timer (a worker or the server down at the effective time) costs the customer nothing."""
        customer, lot_id = new_id("c"), new_id("lot")
        await ledger.grant_lot(at(credit(lot_id, customer, 500, effective_at=T0 + timedelta(days=1))))
        redemption = await ledger.redeem(redeem_at(customer, new_id("o"), 200, as_of_days=1))
        assert [(p.lot_id, p.amount) for p in redemption.redemption.applied] == [(lot_id, 200)]
        assert await remaining(pool, lot_id) == (300, "active")
        due = LotTransition(customer_id=customer, lot_id=lot_id, as_of=T0 + timedelta(days=1, seconds=5))
        assert (await ledger.activate_lot(due)).status == "active"  # the late timer: nothing to do
        assert await events(pool, customer) == ["granted", "activated", "redeemed"]

    async def test_pending_expired_and_foreign_currency_credits_give_nothing(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer = new_id("c")
        await ledger.grant_lot(at(credit(new_id("pending"), customer, 100, effective_at=T0 + timedelta(days=2))))
        await ledger.grant_lot(at(credit(new_id("eur"), customer, 100, currency="EUR")))
        await ledger.grant_lot(at(credit(new_id("short"), customer, 100, expires_in_days=1)))
        before = await counts(pool, customer)
        error = await rejected(ledger.redeem(redeem_at(customer, new_id("o"), 500, as_of_days=1)))
        assert error.type == "NothingToRedeem"
        assert await counts(pool, customer) == before

    async def test_fixed_coupon_then_credit(self, ledger: LedgerActivities, pool: Pool, new_id: NewId) -> None:
        customer, coupon_id, credit_id = new_id("c"), new_id("cpn"), new_id("cr")
        await ledger.grant_lot(at(coupon(coupon_id, customer, CouponTerms(amount_off=500, min_order=2000))))
        await ledger.grant_lot(at(credit(credit_id, customer, 300)))
        outcome = await ledger.redeem(redeem_at(customer, new_id("o"), 2000, coupon_lot_id=coupon_id))
        assert [(p.lot_id, p.kind, p.amount) for p in outcome.redemption.applied] == [
            (coupon_id, "coupon", 500),
            (credit_id, "credit", 300),
        ]
        assert outcome.redemption.to_pay == 1200
        row = await pool.fetchrow("SELECT uses_left, status FROM lots WHERE lot_id = $1", coupon_id)
        assert row is not None
        assert (row["uses_left"], row["status"]) == (0, "used_up")
        before = await counts(pool, customer)
        again = await rejected(ledger.redeem(redeem_at(customer, new_id("o"), 2000, coupon_lot_id=coupon_id)))
        assert again.type == "CouponNotUsable"
        assert await counts(pool, customer) == before

    @pytest.mark.parametrize(
        ("terms", "total", "discount"),
        [
            (CouponTerms(percent_off=20), 5000, 1000),
            (CouponTerms(percent_off=20, cap=1500), 10000, 1500),
            (CouponTerms(percent_off=15), 999, 149),  # rounded down: never more than the percentage
            (CouponTerms(amount_off=2000), 1500, 1500),  # never more than the order
        ],
    )
    async def test_coupon_arithmetic(
        self, ledger: LedgerActivities, new_id: NewId, terms: CouponTerms, total: int, discount: int
    ) -> None:
        customer, coupon_id = new_id("c"), new_id("cpn")
        await ledger.grant_lot(at(coupon(coupon_id, customer, terms)))
        outcome = await ledger.redeem(redeem_at(customer, new_id("o"), total, coupon_lot_id=coupon_id))
        assert outcome.redemption.discount == discount
        assert outcome.redemption.to_pay == total - discount

    async def test_coupon_rules_reject_and_write_nothing(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, coupon_id = new_id("c"), new_id("cpn")
        await ledger.grant_lot(at(coupon(coupon_id, customer, CouponTerms(amount_off=500, min_order=2000, uses=2))))
        cases = {
            "MinimumNotMet": redeem_at(customer, new_id("o"), 1999, coupon_lot_id=coupon_id),
            "UnknownLot": redeem_at(customer, new_id("o"), 5000, coupon_lot_id=new_id("nope")),
            "CurrencyMismatch": RedeemInput(
                request=RedeemRequest(
                    customer_id=customer, order_id=new_id("o"), currency="EUR", total=5000, coupon_lot_id=coupon_id
                ),
                as_of=T0,
            ),
        }
        before = await counts(pool, customer)
        for expected, call in cases.items():
            assert (await rejected(ledger.redeem(call))).type == expected
        # Another customer's coupon is unknown to this customer.
        other = redeem_at(new_id("c"), new_id("o"), 5000, coupon_lot_id=coupon_id)
        assert (await rejected(ledger.redeem(other))).type == "UnknownLot"
        assert await counts(pool, customer) == before

    async def test_fifty_concurrent_orders_never_overspend(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer = new_id("c")
        lots = [new_id("lot") for _ in range(3)]
        for i, lot_id in enumerate(lots):
            await ledger.grant_lot(at(credit(lot_id, customer, 1000, expires_in_days=10 + i)))
        orders = [new_id("order") for _ in range(50)]
        results = await asyncio.gather(
            *(ledger.redeem(redeem_at(customer, order, 70)) for order in orders), return_exceptions=True
        )
        redeemed = [r.redemption.discount for r in results if not isinstance(r, BaseException)]
        failures = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(f, ApplicationError) and f.type == "NothingToRedeem" for f in failures)
        assert sum(redeemed) == 3000  # 42 orders of 70 and one of 60: all there was, no more
        assert len(redeemed) == 43
        for lot_id in lots:
            assert await remaining(pool, lot_id) == (0, "used_up")
        per_order = await pool.fetch(
            "SELECT order_id, count(*) AS n FROM redemptions WHERE customer_id = $1 GROUP BY order_id", customer
        )
        assert all(row["n"] == 1 for row in per_order)
        assert len(per_order) == 43
        await assert_ledger_balances(pool, customer)

    async def test_a_committed_redeem_whose_reply_was_lost_is_charged_once(
        self, pool: Pool, new_id: NewId, database_url: str
    ) -> None:
        customer, lot_id, order = new_id("c"), new_id("lot"), new_id("order")
        own_pool = await create_pool(database_url, min_size=1, max_size=1)
        try:
            ledger = LedgerActivities(own_pool)
            await ledger.grant_lot(at(credit(lot_id, customer, 1000)))
            first = await ledger.redeem(redeem_at(customer, order, 400))
            # The worker's connection dies after the commit: the reply never reached the workflow.
            backend = await own_pool.fetchval("SELECT pg_backend_pid()")
            assert await pool.fetchval("SELECT pg_terminate_backend($1)", backend)
            # Temporal retries the activity; the first attempts may fail on the dead connection.
            retried = None
            for _attempt in range(3):
                try:
                    retried = await ledger.redeem(redeem_at(customer, order, 400))
                    break
                except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.InternalClientError):
                    continue
            assert retried is not None
            assert retried.redemption == first.redemption
        finally:
            await own_pool.close()
        assert await remaining(pool, lot_id) == (600, "active")
        assert [row[0] for row in await ledger_rows(pool, customer)] == ["grant", "redeem"]


class TestReverse:
    async def test_partial_reverse_goes_back_last_applied_first(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, first, second, order = new_id("c"), new_id("a"), new_id("b"), new_id("o")
        await ledger.grant_lot(at(credit(first, customer, 300, expires_in_days=5)))
        await ledger.grant_lot(at(credit(second, customer, 1000, expires_in_days=9)))
        await ledger.redeem(redeem_at(customer, order, 800))  # 300 from first, 500 from second
        outcome = await ledger.reverse(reverse_at(customer, order, new_id("r"), 600))
        assert [(p.lot_id, p.amount) for p in outcome.reversal.restored] == [(second, 500), (first, 100)]
        assert outcome.reversal.reversible_left == 200
        assert await remaining(pool, second) == (1000, "active")
        assert await remaining(pool, first) == (100, "active")
        rest = await ledger.reverse(reverse_at(customer, order, new_id("r")))
        assert rest.reversal.amount == 200
        assert await remaining(pool, first) == (300, "active")
        await assert_ledger_balances(pool, customer)

    async def test_the_same_reversal_twice_is_a_no_op_returning_the_first_result(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id, order, reversal = new_id("c"), new_id("lot"), new_id("o"), new_id("r")
        await ledger.grant_lot(at(credit(lot_id, customer, 1000)))
        await ledger.redeem(redeem_at(customer, order, 500))
        first = await ledger.reverse(reverse_at(customer, order, reversal, 200))
        again = await ledger.reverse(reverse_at(customer, order, reversal, 200, days=1))
        assert again.reversal == first.reversal
        assert await remaining(pool, lot_id) == (700, "active")
        before = await counts(pool, customer)
        assert (await rejected(ledger.reverse(reverse_at(customer, order, reversal, 100)))).type == "ReversalConflict"
        assert (await rejected(ledger.reverse(reverse_at(customer, order, new_id("r"), 301)))).type == (
            "ReversalExceedsRedeemed"
        )
        assert (await rejected(ledger.reverse(reverse_at(customer, new_id("o"), new_id("r"))))).type == "UnknownOrder"
        assert await counts(pool, customer) == before

    async def test_value_reversed_into_an_expired_lot_expires_again_at_once(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id, order = new_id("c"), new_id("lot"), new_id("o")
        await ledger.grant_lot(at(credit(lot_id, customer, 1000, expires_in_days=7)))
        await ledger.redeem(redeem_at(customer, order, 600))
        expired = await ledger.expire_lot(
            LotTransition(customer_id=customer, lot_id=lot_id, as_of=T0 + timedelta(days=7))
        )
        assert expired.expiry.amount == 400
        outcome = await ledger.reverse(reverse_at(customer, order, new_id("r"), 250, days=8))
        assert [(p.lot_id, p.amount) for p in outcome.reversal.written_off] == [(lot_id, 250)]
        assert await remaining(pool, lot_id) == (0, "expired")
        assert await entry_amounts(pool, customer) == [
            ("grant", 1000),
            ("redeem", -600),
            ("expire", -400),
            ("reverse", 250),
            ("expire", -250),
        ]
        await assert_ledger_balances(pool, customer)

    async def test_a_coupon_use_comes_back_only_when_its_part_is_fully_reversed(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, coupon_id, credit_id, order = new_id("c"), new_id("cpn"), new_id("cr"), new_id("o")
        await ledger.grant_lot(at(coupon(coupon_id, customer, CouponTerms(amount_off=500))))
        await ledger.grant_lot(at(credit(credit_id, customer, 300)))
        await ledger.redeem(redeem_at(customer, order, 2000, coupon_lot_id=coupon_id))
        await ledger.reverse(reverse_at(customer, order, new_id("r"), 400))  # 300 credit, 100 coupon
        row = await pool.fetchrow("SELECT uses_left, status FROM lots WHERE lot_id = $1", coupon_id)
        assert row is not None
        assert (row["uses_left"], row["status"]) == (0, "used_up")
        await ledger.reverse(reverse_at(customer, order, new_id("r")))  # the last 400 of the coupon
        row = await pool.fetchrow("SELECT uses_left, status FROM lots WHERE lot_id = $1", coupon_id)
        assert row is not None
        assert (row["uses_left"], row["status"]) == (1, "active")

    async def test_a_partial_reversal_reaching_a_used_up_coupon_past_its_expiry_marks_it_expired(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        """Its timer never expires a used-up lot; the reversal catches its status up (no value, so no row)."""
        customer, coupon_id, order = new_id("c"), new_id("cpn"), new_id("o")
        await ledger.grant_lot(
            at(coupon(coupon_id, customer, CouponTerms(amount_off=500), expires_in=timedelta(days=7)))
        )
        await ledger.redeem(redeem_at(customer, order, 2000, coupon_lot_id=coupon_id))
        outcome = await ledger.reverse(reverse_at(customer, order, new_id("r"), 100, days=8))
        assert outcome.reversal.written_off == []
        row = await pool.fetchrow("SELECT uses_left, status FROM lots WHERE lot_id = $1", coupon_id)
        assert row is not None
        assert (row["uses_left"], row["status"]) == (0, "expired")
        assert [entry for entry, _ in await entry_amounts(pool, customer)] == ["grant", "redeem", "reverse"]


class TestRevokeExpireRemind:
    async def test_revoke_removes_what_is_left_with_its_reason_once(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        await ledger.grant_lot(at(credit(lot_id, customer, 1000)))
        await ledger.redeem(redeem_at(customer, new_id("o"), 100))
        request = RevokeRequest(customer_id=customer, lot_id=lot_id, reason="fraud ticket 42")
        first = await ledger.revoke_lot(RevokeInput(request=request, as_of=T0))
        assert (first.revocation.amount, first.lot.status) == (900, "revoked")
        again = await ledger.revoke_lot(RevokeInput(request=request, as_of=T0 + timedelta(days=1)))
        assert again == first  # the first result, exactly: the same time, amount, reason and lot
        reasons = await pool.fetch(
            "SELECT reason FROM ledger_entries WHERE lot_id = $1 AND entry_type = 'revoke'", lot_id
        )
        assert [r["reason"] for r in reasons] == ["fraud ticket 42"]
        assert await remaining(pool, lot_id) == (0, "revoked")

    async def test_an_expired_lot_cannot_be_revoked_and_an_unknown_one_is_unknown(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        await ledger.grant_lot(at(credit(lot_id, customer, 1000, expires_in_days=1)))
        await ledger.expire_lot(LotTransition(customer_id=customer, lot_id=lot_id, as_of=T0 + timedelta(days=1)))
        before = await counts(pool, customer)
        revoke = RevokeInput(request=RevokeRequest(customer_id=customer, lot_id=lot_id, reason="x"), as_of=T0)
        assert (await rejected(ledger.revoke_lot(revoke))).type == "LotNotRevocable"
        unknown = RevokeInput(request=RevokeRequest(customer_id=customer, lot_id=new_id("no"), reason="x"), as_of=T0)
        assert (await rejected(ledger.revoke_lot(unknown))).type == "UnknownLot"
        assert await counts(pool, customer) == before

    async def test_expiry_writes_off_exactly_what_is_left_once_and_not_before_time(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        await ledger.grant_lot(at(credit(lot_id, customer, 1000, expires_in_days=14)))
        await ledger.redeem(redeem_at(customer, new_id("o"), 333))
        early = LotTransition(customer_id=customer, lot_id=lot_id, as_of=T0 + timedelta(days=13))
        assert (await rejected(ledger.expire_lot(early))).type == "NotDue"
        due = LotTransition(customer_id=customer, lot_id=lot_id, as_of=T0 + timedelta(days=14))
        assert (await ledger.expire_lot(due)).expiry.amount == 667
        assert (await ledger.expire_lot(due)).expiry.amount == 667
        assert [t for t, *_ in await ledger_rows(pool, customer)] == ["grant", "redeem", "expire"]
        assert await events(pool, customer) == ["granted", "redeemed", "expired"]

    async def test_the_reminder_is_recorded_once(self, ledger: LedgerActivities, pool: Pool, new_id: NewId) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        await ledger.grant_lot(at(credit(lot_id, customer, 1000, expires_in_days=14, remind_before=timedelta(days=3))))
        due = LotTransition(customer_id=customer, lot_id=lot_id, as_of=T0 + timedelta(days=11))
        assert (await ledger.record_reminder(due)).reminded
        assert (await ledger.record_reminder(due)).reminded
        assert await events(pool, customer) == ["granted", "reminder"]

    async def test_load_wallet_returns_live_lots_and_reversible_orders(
        self, ledger: LedgerActivities, new_id: NewId
    ) -> None:
        customer, live, dead, order = new_id("c"), new_id("live"), new_id("dead"), new_id("o")
        await ledger.grant_lot(at(credit(live, customer, 1000)))
        await ledger.grant_lot(at(credit(dead, customer, 100, expires_in_days=1)))
        await ledger.expire_lot(LotTransition(customer_id=customer, lot_id=dead, as_of=T0 + timedelta(days=1)))
        await ledger.redeem(redeem_at(customer, order, 250))
        snapshot = await ledger.load_wallet(
            LoadWalletInput(customer_id=customer, redeemed_since=T0 - timedelta(days=1), max_orders=10)
        )
        assert [lot.lot_id for lot in snapshot.lots] == [live]
        assert [(r.order_id, r.discount, r.reversed) for r in snapshot.redemptions] == [(order, 250, 0)]


class TestDatabaseGuards:
    async def test_ledger_entries_are_append_only(self, ledger: LedgerActivities, pool: Pool, new_id: NewId) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        await ledger.grant_lot(at(credit(lot_id, customer, 1000)))
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await pool.execute("UPDATE ledger_entries SET amount_minor = 1 WHERE lot_id = $1", lot_id)
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await pool.execute("DELETE FROM ledger_entries WHERE lot_id = $1", lot_id)
        assert await ledger_rows(pool, customer) == [("grant", lot_id, 1000, None)]

    @pytest.mark.parametrize(
        ("assignment", "constraint"),
        [
            ("remaining_minor = -1", "remaining_not_negative"),
            ("remaining_minor = 1001", "remaining_within_amount"),
            ("status = 'spent'", "lots_status_check"),
        ],
    )
    async def test_a_lot_cannot_go_below_zero_or_above_its_amount(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId, assignment: str, constraint: str
    ) -> None:
        lot_id = new_id("lot")
        await ledger.grant_lot(at(credit(lot_id, new_id("c"), 1000)))
        with pytest.raises(asyncpg.CheckViolationError, match=constraint):
            await pool.execute(f"UPDATE lots SET {assignment} WHERE lot_id = $1", lot_id)

    @pytest.mark.parametrize(
        ("assignment", "constraint"),
        [
            ("uses_left = -1", "uses_within_allowed"),
            ("coupon_percent_off = 101", "percent_off_in_range"),
            ("coupon_percent_off = 0", "percent_off_in_range"),
        ],
    )
    async def test_coupon_terms_are_checked(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId, assignment: str, constraint: str
    ) -> None:
        lot_id = new_id("cpn")
        await ledger.grant_lot(at(coupon(lot_id, new_id("c"), CouponTerms(percent_off=10))))
        with pytest.raises(asyncpg.CheckViolationError, match=constraint):
            await pool.execute(f"UPDATE lots SET {assignment} WHERE lot_id = $1", lot_id)


class TestIdempotencyKeys:
    """Keys are columns with a composite UNIQUE constraint, not strings joined with ':'."""

    async def test_ids_containing_colons_never_collide(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, run = new_id("c"), new_id("k")
        # Joined as 'redeem:<customer>:<order>:<lot>', these two keys were the same string.
        await ledger.grant_lot(at(credit(f"y:{run}", customer, 500, expires_in_days=1)))
        await ledger.grant_lot(at(credit(run, customer, 500, expires_in_days=2)))
        first = await ledger.redeem(redeem_at(customer, "x:y", 500))
        second = await ledger.redeem(redeem_at(customer, "x", 500))
        assert [(p.lot_id, p.amount) for p in first.redemption.applied] == [(f"y:{run}", 500)]
        assert [(p.lot_id, p.amount) for p in second.redemption.applied] == [(run, 500)]
        assert [row[3] for row in await ledger_rows(pool, customer) if row[0] == "redeem"] == ["x:y", "x"]

    async def test_reversal_ids_belong_to_their_customer(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        alice, bob = new_id("alice"), new_id("bob")
        for customer in (alice, bob):
            await ledger.grant_lot(at(credit(new_id("lot"), customer, 1000)))
            await ledger.redeem(redeem_at(customer, "o-1", 400))
            reversed_ = await ledger.reverse(reverse_at(customer, "o-1", "refund-1"))
            assert reversed_.reversal.amount == 400
        assert [t for t, _ in await entry_amounts(pool, bob)] == ["grant", "redeem", "reverse"]

    async def test_revoking_again_with_another_reason_is_a_conflict(
        self, ledger: LedgerActivities, pool: Pool, new_id: NewId
    ) -> None:
        customer, lot_id = new_id("c"), new_id("lot")
        await ledger.grant_lot(at(credit(lot_id, customer, 1000)))
        first = RevokeRequest(customer_id=customer, lot_id=lot_id, reason="fraud ticket 42")
        await ledger.revoke_lot(RevokeInput(request=first, as_of=T0))
        before = await counts(pool, customer)
        other = RevokeRequest(customer_id=customer, lot_id=lot_id, reason="customer asked")
        refusal = await rejected(ledger.revoke_lot(RevokeInput(request=other, as_of=T0)))
        assert refusal.type == "RevocationConflict"
        assert "fraud ticket 42" in refusal.message
        assert await counts(pool, customer) == before
