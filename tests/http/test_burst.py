"""The checkout rush over HTTP: 400 concurrent redeems on one wallet, each with a 5 s deadline,
with credit for 300 of them. Every answer is true: 201 with the breakdown the ledger holds, 422
NothingToRedeem for an order the ledger never charged, or 504 (outcome unknown), which the same
request again resolves to 201 or 200 (the first result) or 422; no order is charged twice."""

from __future__ import annotations

import asyncio

import httpx

from incentives.adapters.db import Pool
from incentives.adapters.rows import redemption_from_row
from incentives.domain.models import Redemption
from tests.helpers.builders import NewId
from tests.helpers.ledger import assert_ledger_balances
from tests.http.conftest import Keys, bearer

ORDERS = 400
TOTAL = 100


async def test_a_rush_of_400_concurrent_redeems_is_answered_truly(
    http: httpx.AsyncClient, keys: Keys, pool: Pool, new_id: NewId
) -> None:
    customer = new_id("rush")
    grant = {"lot_id": f"{customer}-credit", "currency": "USD", "kind": "credit", "amount": 300 * TOTAL}
    granted = await http.post(f"/v1/customers/{customer}/grants", json=grant, headers=bearer(keys.grant))
    assert granted.status_code == 201, granted.text

    async def redeem(order_id: str, timeout: str) -> httpx.Response:
        order = {"order_id": order_id, "currency": "USD", "total": TOTAL}
        return await http.post(
            f"/v1/customers/{customer}/redemptions?timeout={timeout}", json=order, headers=bearer(keys.checkout)
        )

    orders = [f"{customer}-{i}" for i in range(ORDERS)]
    first = dict(zip(orders, await asyncio.gather(*(redeem(o, "5s") for o in orders)), strict=True))
    assert {r.status_code for r in first.values()} <= {201, 422, 504}, {r.status_code for r in first.values()}
    answers = dict(first)
    for order_id in [o for o, r in first.items() if r.status_code == 504]:
        assert "same request again is safe" in first[order_id].json()["detail"]
        answers[order_id] = await redeem(order_id, "60s")
        assert answers[order_id].status_code in (200, 201, 422), answers[order_id].text
    rows = {r["order_id"]: r for r in await pool.fetch("SELECT * FROM redemptions WHERE customer_id = $1", customer)}
    for order_id, response in answers.items():
        if response.status_code in (200, 201):
            assert Redemption.model_validate_json(response.content) == redemption_from_row(rows[order_id])
        else:
            assert response.json()["error_type"] == "NothingToRedeem"
            assert order_id not in rows
    assert len(rows) == 300
    await assert_ledger_balances(pool, customer)
