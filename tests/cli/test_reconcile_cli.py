"""`incentives reconcile`: exit 0 on clean books, exit 1 listing each violation."""

from __future__ import annotations

from incentives.adapters.db import Pool
from tests.cli.conftest import Cli
from tests.helpers.books import Books


async def test_the_command_exits_1_listing_violations(cli: Cli, pool: Pool, books: Books) -> None:
    clean = await cli("reconcile", "--customer", books.customer, "--json")
    assert clean.code == 0, clean.err
    assert clean.json()["ok"] is True
    await pool.execute("UPDATE lots SET remaining_minor = remaining_minor - 1 WHERE lot_id = $1", books.big_lot)
    broken = await cli("reconcile", "--customer", books.customer)
    assert broken.code == 1
    assert "1 violations" in broken.out
    assert books.big_lot in broken.out
