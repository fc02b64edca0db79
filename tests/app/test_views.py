"""The read side refuses a malformed id before the driver sees it: a NUL byte through the Python
API is an input error naming the field, not a raw Postgres error."""

from __future__ import annotations

import pytest

from incentives.adapters.db import Pool
from incentives.app import views
from incentives.domain.errors import InvalidId


@pytest.mark.parametrize("customer", ["nul\x00byte", "", "a b", "\u202e"])
async def test_wallet_view_checks_the_customer_id(pool: Pool, customer: str) -> None:
    with pytest.raises(InvalidId) as raised:
        await views.wallet_view(pool, customer)
    assert raised.value.field == "customer_id"


async def test_order_currency_checks_both_ids(pool: Pool) -> None:
    with pytest.raises(InvalidId, match="customer_id"):
        await views.order_currency(pool, "c\x00", "o")
    with pytest.raises(InvalidId, match="order_id"):
        await views.order_currency(pool, "c", "o\x00")
