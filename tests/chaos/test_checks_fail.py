"""The chaos checker can fail: on real books (a scripted run through the real clients, worker and
Postgres of a chaos stack), one fault planted in the ledger is reported by the check that owns it,
and by no other.

Each fault is planted in its own customers (or promotion), and each check is scoped to them: the
books are clean there before the plant (every check passes), and only the planted fault differs
after it. Planted as the database owner; a fault the ledger's append-only trigger would refuse is
planted with the trigger disabled inside the plant's own transaction.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from chaos.books import Scope, Verdict
from chaos.checks import check
from chaos.driver import Driver, Outcome
from chaos.stack import Stack
from chaos.workload import Op, Plan
from incentives.adapters.db import Connection, Pool
from incentives.adapters.temporal import DATA_CONVERTER
from incentives.domain.models import RedeemRequest
from incentives.domain.promotions import PromotionTerms
from tests.helpers import eventually


def _grant(index: int, customer: str, lot_id: str, amount: int, **timing: timedelta) -> Op:
    return Op(index, "grant", customer, {"lot_id": lot_id, "kind": "credit", "amount": amount, **timing})


def _redeem(index: int, customer: str, order_id: str, total: int) -> Op:
    fields = {"order_id": order_id, "total": total, "currency": "USD", "coupon_lot_id": None, "max_credit": None}
    return Op(index, "redeem", customer, dict(fields))


PROMOTION: dict[str, object] = {
    "promotion": "t-p",
    "kind": "credit",
    "amount": 500,
    "budget": 1000,
    "audience": ["b1", "b2", "b3"],
    "expires_in": timedelta(hours=1),
    "pooled": False,
}
# One small story per check, each in its own customers (or promotion).
SCRIPT = [
    # model: an order charged from one lot (all of it, less than the order), then a second lot.
    _grant(0, "x", "x1", 300),
    _redeem(1, "x", "o-x", 1000),
    _grant(2, "x", "x2", 1000),
    # expiries: a lot that expires three seconds after its grant.
    _grant(3, "e", "e1", 500, expires_in=timedelta(seconds=3)),
    # refusals_wrote_nothing: nothing left to redeem, refused; then a new lot.
    _grant(4, "r", "r1", 300),
    _redeem(5, "r", "o-r1", 300),
    _redeem(6, "r", "o-r2", 200),
    _grant(7, "r", "r2", 1000),
    # activations: a lot effective two seconds after its grant.
    _grant(8, "m", "m1", 500, effective_in=timedelta(seconds=2)),
    # events: an order with its one event.
    _grant(9, "d", "d1", 500),
    _redeem(10, "d", "o-d", 100),
    # budgets: a promotion whose budget grants two of its three customers.
    Op(11, "promotion", "", PROMOTION),
    # refusals_wrote_nothing, for a revoke: a lot not granted yet, refused; then granted.
    Op(12, "revoke", "k", {"lot_id": "k1", "reason": "support: revoked it"}),
    _grant(13, "k", "k1", 500),
    # refusals_justified: a lot whose customer no refusal of the run concerns.
    _grant(14, "j", "j1", 500),
]
REFUSED = {6: "NothingToRedeem", 12: "UnknownLot"}


@dataclass
class Books:
    pool: Pool
    outcomes: list[Outcome]
    terms: dict[str, PromotionTerms]
    clock_stopped: datetime
    unplanted: Verdict | None = None  # every check over the whole books, before any plant

    async def check(self, scope: Scope) -> Verdict:
        # The clock ran until the worker stopped; no timer of this script is due near that instant.
        return await check(self.pool, self.outcomes, self.terms, due_by=self.clock_stopped, scope=scope)

    async def plant(self, statements: Callable[[Connection], Awaitable[None]]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await statements(conn)


@pytest.fixture(scope="module")
async def books() -> AsyncIterator[Books]:
    with tempfile.TemporaryDirectory(prefix="chaos-checks-") as home:
        stack = Stack(Path(home))
        await stack.start()
        try:
            temporal = await Client.connect(stack.temporal.address, data_converter=DATA_CONVERTER)
            pool = await stack.pool()
            driver = Driver(stack, temporal, pool, Plan(seed=0, ops=SCRIPT, fault_at={}), concurrency=1)
            outcomes = await driver.run()
            await driver.settle()
            await eventually(lambda: _status(pool, "e1", "expired"), timeout=60)
            await eventually(lambda: _status(pool, "m1", "active"), timeout=60)
            stack.stop_worker()
            books = Books(pool, outcomes, driver.terms, datetime.now(UTC))
            books.unplanted = await check(pool, outcomes, driver.terms, due_by=books.clock_stopped)
            yield books
            await pool.close()
        finally:
            stack.stop()


async def _status(pool: Pool, lot_id: str, status: str) -> None:
    assert await pool.fetchval("SELECT status FROM lots WHERE lot_id = $1", lot_id) == status


async def _planted(books: Books, scope: Scope, statements: Callable[[Connection], Awaitable[None]]) -> Verdict:
    """The scope's verdict after the plant, the scope proved clean before it."""
    before = await books.check(scope)
    assert before.violations == []
    await books.plant(statements)
    return await books.check(scope)


async def test_the_scripted_books_are_clean_and_went_where_the_plants_need_them(books: Books) -> None:
    verdict = books.unplanted
    assert verdict is not None
    assert verdict.violations == []
    answers = {outcome.op.index: (outcome.status, outcome.rule) for outcome in books.outcomes}
    assert {index: rule for index, (status, rule) in answers.items() if status != "done"} == REFUSED
    assert {status for status, _ in answers.values()} == {"done", "rejected"}
    assert await books.pool.fetchval("SELECT granted_count FROM promotions WHERE promotion_id = 't-p'") == 2
    assert verdict.checked["refusals justified by the model"] == 2
    assert verdict.checked["refusals wrote nothing"] == 2


async def test_an_extra_redeem_row_the_engine_s_own_books_agree_with_is_found_by_the_model(books: Books) -> None:
    async def extra_redeem_row(conn: Connection) -> None:
        # The order took 100 more from x2: its row, the lot and the order's discount all agree.
        await conn.execute(
            """INSERT INTO ledger_entries (entry_type, lot_id, customer_id, order_id, amount_minor, currency)
               VALUES ('redeem', 'x2', 'x', 'o-x', -100, 'USD')"""
        )
        await conn.execute("UPDATE lots SET remaining_minor = remaining_minor - 100 WHERE lot_id = 'x2'")
        await conn.execute(
            """UPDATE redemptions SET discount_minor = discount_minor + 100, to_pay_minor = to_pay_minor - 100
               WHERE customer_id = 'x' AND order_id = 'o-x'"""
        )

    verdict = await _planted(books, Scope(customers=frozenset({"x"})), extra_redeem_row)
    assert verdict.reported_by == {"model"}, verdict.violations


async def test_a_lot_left_active_past_its_expiry_is_found_by_the_expiry_check(books: Books) -> None:
    async def never_expired(conn: Connection) -> None:
        # As if its clock never fired: no expire row, no event, its value still in it.
        await conn.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_no_update_delete")
        await conn.execute("DELETE FROM ledger_entries WHERE entry_type = 'expire' AND lot_id = 'e1'")
        await conn.execute("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_no_update_delete")
        await conn.execute("DELETE FROM outbox WHERE event_type = 'expired' AND lot_id = 'e1'")
        await conn.execute("UPDATE lots SET status = 'active', remaining_minor = amount_minor WHERE lot_id = 'e1'")

    verdict = await _planted(books, Scope(customers=frozenset({"e"})), never_expired)
    assert verdict.reported_by == {"expiries"}, verdict.violations


async def test_a_refusal_that_wrote_its_redemption_is_found_by_the_refusal_check(books: Books) -> None:
    refused = next(outcome for outcome in books.outcomes if outcome.op.index == 6)
    assert refused.request is not None
    digest = refused.request.digest()

    async def refused_but_written(conn: Connection) -> None:
        # o-r2's redemption, as the model would have made it now (from r2, granted since): only the
        # refusal it was answered with says it must not be there.
        await conn.execute(
            """INSERT INTO redemptions (customer_id, order_id, currency, total_minor, discount_minor, to_pay_minor,
                                        breakdown, request_digest, redeemed_at)
               VALUES ('r', 'o-r2', 'USD', 200, 200, 0, $1, $2, now())""",
            [{"lot_id": "r2", "kind": "credit", "amount": 200}],
            digest,
        )
        await conn.execute(
            """INSERT INTO ledger_entries (entry_type, lot_id, customer_id, order_id, amount_minor, currency)
               VALUES ('redeem', 'r2', 'r', 'o-r2', -200, 'USD')"""
        )
        await conn.execute("UPDATE lots SET remaining_minor = remaining_minor - 200 WHERE lot_id = 'r2'")
        await conn.execute(
            "INSERT INTO outbox (event_type, customer_id, order_id, payload) VALUES ('redeemed', 'r', 'o-r2', '{}')"
        )

    verdict = await _planted(books, Scope(customers=frozenset({"r"})), refused_but_written)
    assert verdict.reported_by == {"refusals_wrote_nothing"}, verdict.violations


async def test_a_missed_activation_is_found_by_the_activation_check(books: Books) -> None:
    async def never_activated(conn: Connection) -> None:
        await conn.execute("UPDATE lots SET status = 'pending' WHERE lot_id = 'm1'")
        await conn.execute("DELETE FROM outbox WHERE event_type = 'activated' AND lot_id = 'm1'")

    verdict = await _planted(books, Scope(customers=frozenset({"m"})), never_activated)
    assert verdict.reported_by == {"activations"}, verdict.violations


async def test_an_event_published_twice_is_found_by_the_event_check(books: Books) -> None:
    async def published_twice(conn: Connection) -> None:
        await conn.execute(
            """INSERT INTO outbox (event_type, customer_id, order_id, payload)
               SELECT event_type, customer_id, order_id, payload FROM outbox
               WHERE event_type = 'redeemed' AND customer_id = 'd' AND order_id = 'o-d'"""
        )

    verdict = await _planted(books, Scope(customers=frozenset({"d"})), published_twice)
    assert verdict.reported_by == {"events"}, verdict.violations


async def test_a_promotion_past_its_budget_is_found_by_the_budget_check(books: Books) -> None:
    async def granted_past_budget(conn: Connection) -> None:
        # A third lot, as its batch would have granted it, with the promotion's counters, committed
        # value and budget moved to agree: only the promotion's terms say it is past its budget.
        await conn.execute(
            "UPDATE promotions SET budget_minor = 1500, committed_minor = 1500, granted_count = 3 "
            "WHERE promotion_id = 't-p'"
        )
        await conn.execute(
            """INSERT INTO lots
               SELECT * FROM jsonb_populate_record(NULL::lots, (
                   SELECT to_jsonb(l) || '{"lot_id": "t-p:b3", "customer_id": "b3"}' FROM lots l
                   WHERE lot_id = 't-p:b1'))"""
        )
        await conn.execute(
            """INSERT INTO ledger_entries (entry_type, lot_id, customer_id, promotion_id, amount_minor, currency)
               VALUES ('grant', 't-p:b3', 'b3', 't-p', 500, 'USD')"""
        )
        await conn.execute(
            """INSERT INTO outbox (event_type, customer_id, lot_id, promotion_id, payload)
               VALUES ('granted', 'b3', 't-p:b3', 't-p', '{}')"""
        )

    verdict = await _planted(books, Scope(promotions=frozenset({"t-p"})), granted_past_budget)
    assert verdict.reported_by == {"budgets"}, verdict.violations


async def test_a_revoke_refused_that_revoked_the_lot_anyway_is_found_by_the_refusal_check(books: Books) -> None:
    async def refused_but_revoked(conn: Connection) -> None:
        # k1 revoked for the refused request's reason, consistently with its lot and its event.
        await conn.execute("UPDATE lots SET remaining_minor = 0, status = 'revoked' WHERE lot_id = 'k1'")
        await conn.execute(
            """INSERT INTO ledger_entries (entry_type, lot_id, customer_id, amount_minor, currency, reason)
               VALUES ('revoke', 'k1', 'k', -500, 'USD', 'support: revoked it')"""
        )
        await conn.execute(
            "INSERT INTO outbox (event_type, customer_id, lot_id, payload) VALUES ('revoked', 'k', 'k1', '{}')"
        )

    verdict = await _planted(books, Scope(customers=frozenset({"k"})), refused_but_revoked)
    assert verdict.reported_by == {"refusals_wrote_nothing"}, verdict.violations


async def test_a_refusal_the_books_do_not_justify_is_found_by_the_refusal_check(books: Books) -> None:
    """A refusal's fault is in what the caller was told: j1 held 500 when these were refused, and no
    order o-j1 or o-j2 was ever charged (planted in the run's answers, the ledger untouched)."""
    scope = Scope(customers=frozenset({"j"}))
    assert (await books.check(scope)).violations == []
    at = books.clock_stopped
    wrong = [
        Outcome(Op(100, "redeem", "j"), "rejected", request, rule=rule, sent_at=at, answered_at=at)
        for request, rule in [
            (RedeemRequest(customer_id="j", order_id="o-j1", currency="USD", total=100), "NothingToRedeem"),
            (RedeemRequest(customer_id="j", order_id="o-j2", currency="USD", total=100), "OrderConflict"),
        ]
    ]
    verdict = await check(books.pool, [*books.outcomes, *wrong], books.terms, due_by=at, scope=scope)
    assert verdict.reported_by == {"refusals_justified"}, verdict.violations
    assert len(verdict.by_check["refusals_justified"]) == 2
