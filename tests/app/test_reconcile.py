"""`reconcile` on books with a known ledger: clean, then each kind of violation planted directly in
Postgres (one test per kind) is found and named. Every check here is scoped to the test's own
customer or promotion: the session's database is shared, and these tests break it on purpose."""

from __future__ import annotations

from incentives.adapters.db import Pool
from incentives.app.reconcile import reconcile
from tests.helpers.books import Books


async def found(pool: Pool, books: Books) -> set[str]:
    by_customer = await reconcile(pool, customer=books.customer)
    by_promotion = await reconcile(pool, promotion=books.promotion_id)
    return {violation.check for violation in [*by_customer.violations, *by_promotion.violations]}


class TestReconcile:
    async def test_clean_books_pass_every_check(self, pool: Pool, books: Books) -> None:
        by_customer = await reconcile(pool, customer=books.customer)
        assert by_customer.ok, by_customer.violations
        assert (by_customer.lots, by_customer.ledger_rows) == (3, 6)  # 3 grants, 2 redeems, 1 reverse
        assert (await reconcile(pool, promotion=books.promotion_id)).ok

    async def test_a_lot_whose_remaining_disagrees_with_its_ledger_rows(self, pool: Pool, books: Books) -> None:
        await pool.execute("UPDATE lots SET remaining_minor = remaining_minor - 1 WHERE lot_id = $1", books.big_lot)
        assert await found(pool, books) == {"lot_balance"}

    async def test_an_order_charged_twice(self, pool: Pool, books: Books) -> None:
        promotion_lot = f"{books.promotion_id}:{books.customer}"
        await pool.execute(
            """INSERT INTO ledger_entries (entry_type, lot_id, customer_id, order_id, amount_minor, currency)
               VALUES ('redeem', $1, $2, $3, -1, 'USD')""",
            promotion_lot,
            books.customer,
            books.order_id,
        )
        assert {"order_charged_once", "lot_balance"} <= await found(pool, books)

    async def test_a_promotion_whose_counters_disagree_with_its_ledger(self, pool: Pool, books: Books) -> None:
        await pool.execute(
            "UPDATE promotions SET granted_count = granted_count - 1 WHERE promotion_id = $1", books.promotion_id
        )
        assert await found(pool, books) == {"promotion_counters"}

    async def test_a_pool_apart_from_its_promotions(self, pool: Pool, books: Books) -> None:
        await pool.execute(
            "UPDATE promotion_pools SET committed_minor = committed_minor + 1 WHERE pool_id = $1", books.pool_id
        )
        assert await found(pool, books) == {"budgets"}

    async def test_a_ledger_row_without_its_event(self, pool: Pool, books: Books) -> None:
        await pool.execute("DELETE FROM outbox WHERE lot_id = $1 AND event_type = 'granted'", books.small_lot)
        assert await found(pool, books) == {"outbox"}

    async def test_a_lot_past_its_expiry_still_holding_value(self, pool: Pool, books: Books) -> None:
        await pool.execute("UPDATE lots SET expires_at = now() - interval '2 minutes' WHERE lot_id = $1", books.big_lot)
        assert await found(pool, books) == {"expired_on_time"}

    async def test_a_lot_holding_value_whose_promotion_has_closed(self, pool: Pool, books: Books) -> None:
        await pool.execute("UPDATE promotions SET state = 'closed' WHERE promotion_id = $1", books.promotion_id)
        assert await found(pool, books) == {"clock_running"}
