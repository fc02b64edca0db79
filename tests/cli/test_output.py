"""Output that hides nothing: `wallet` says what it left out and which run wrote each row, and works
with Postgres alone; a reversal into a coupon that expired meanwhile says so."""

from __future__ import annotations

import pytest

from activities.ledger import LedgerActivities
from incentives.adapters.db import Pool
from tests.cli.conftest import CLOSED_TEMPORAL, Cli, grant
from tests.helpers import eventually
from tests.helpers.builders import NewId, at, credit

MANY = 401  # one more than twice the default page


@pytest.fixture
async def busy_customer(pool: Pool, new_id: NewId) -> str:
    """A customer with 401 ledger rows (401 grants), the first of them the one that explains most."""
    customer = new_id("busy")
    ledger = LedgerActivities(pool)
    await ledger.grant_lot(at(credit(new_id("big"), customer, 100_000)))
    for _ in range(MANY - 1):
        await ledger.grant_lot(at(credit(new_id("small"), customer, 1)))
    return customer


class TestWalletPages:
    async def test_the_newest_200_rows_by_default_saying_how_many_were_left_out_or_all_or_n(
        self, cli: Cli, busy_customer: str
    ) -> None:
        shown = await cli("wallet", busy_customer)
        assert shown.code == 0, shown.err
        assert f"the newest 200 of {MANY} rows; {MANY - 200} older rows not shown (--all shows every row)" in shown.out
        view = (await cli("wallet", busy_customer, "--json")).json()
        assert (len(view["ledger"]), view["ledger_total"]) == (200, MANY)

        everything = (await cli("wallet", busy_customer, "--all", "--json")).json()
        assert (len(everything["ledger"]), everything["ledger_total"]) == (MANY, MANY)
        assert everything["ledger"][0]["amount"] == 100_000  # the grant that explains the balance
        assert "older rows not shown" not in (await cli("wallet", busy_customer, "--all")).out
        newest = (await cli("wallet", busy_customer, "--limit", "3", "--json")).json()
        assert [e["entry_id"] for e in newest["ledger"]] == [e["entry_id"] for e in everything["ledger"][-3:]]


class TestWallet:
    async def test_each_ledger_row_shows_the_run_that_wrote_it(self, cli: Cli, new_id: NewId) -> None:
        customer = new_id("c")
        assert (await cli(*grant(customer, new_id("l"), "--credit", "1"))).code == 0
        run_id = (await cli("wallet", customer, "--json")).json()["ledger"][0]["run_id"]
        assert run_id
        shown = await cli("wallet", customer)
        assert " run " in shown.out
        assert run_id in shown.out

    async def test_needs_only_postgres(self, cli: Cli, new_id: NewId, monkeypatch: pytest.MonkeyPatch) -> None:
        customer = new_id("c")
        assert (await cli(*grant(customer, new_id("l"), "--credit", "1"))).code == 0
        monkeypatch.setenv("TEMPORAL_ADDRESS", CLOSED_TEMPORAL)
        shown = await cli("wallet", customer, "--json")
        assert shown.code == 0, shown.err
        assert shown.json()["balances"] == {"USD": 100}


class TestReverse:
    async def test_a_use_given_back_to_a_coupon_that_expired_meanwhile_is_noted(self, cli: Cli, new_id: NewId) -> None:
        customer, coupon, order = new_id("c"), new_id("cpn"), new_id("o")
        granted = await cli(*grant(customer, coupon, "--coupon-off", "2.00", "--uses", "2", "--expires-in", "2s"))
        assert granted.code == 0, granted.err
        redeemed = await cli(
            "redeem", customer, "--order", order, "--total", "10", "--currency", "USD", "--coupon", coupon
        )
        assert redeemed.code == 0, redeemed.err

        async def coupon_expired() -> None:
            lots = (await cli("wallet", customer, "--json")).json()["lots"]
            assert lots[0]["status"] == "expired"

        await eventually(coupon_expired, timeout=20)
        reversed_ = await cli("reverse", customer, "--order", order, "--reversal", new_id("r"))
        assert reversed_.code == 0, reversed_.err
        assert "coupon had expired or was revoked: the use it got back cannot be redeemed" in reversed_.out
