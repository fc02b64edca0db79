"""The wallet routes over the wire, each status the ledger decides: 201 applied now, 200 the same
request again (the first body, `Idempotent-Replayed: true`, nothing written twice), 409 the same
id with another payload, 422 a business refusal (nothing written), 404 a wallet never granted."""

from __future__ import annotations

from typing import Any

import httpx

from incentives.adapters.db import Pool
from incentives.domain.models import Lot, Redemption, Reversal, Revocation, WalletView
from tests.helpers import eventually
from tests.helpers.builders import NewId
from tests.helpers.ledger import counts, ledger_rows, remaining
from tests.http.api_process import ApiProcess
from tests.http.conftest import Keys, bearer, problem


async def _post(http: httpx.AsyncClient, key: str, customer: str, route: str, body: dict[str, Any]) -> httpx.Response:
    return await http.post(f"/v1/customers/{customer}/{route}", json=body, headers=bearer(key))


async def _twice(
    http: httpx.AsyncClient, key: str, customer: str, route: str, body: dict[str, Any]
) -> tuple[httpx.Response, httpx.Response]:
    """The same request twice: applied now (201), then replayed (200, the same body)."""
    first = await _post(http, key, customer, route, body)
    again = await _post(http, key, customer, route, body)
    assert (first.status_code, again.status_code) == (201, 200), (first.text, again.text)
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert first.headers["content-type"] == again.headers["content-type"] == "application/json"
    return first, again


async def test_a_grant_is_applied_once_replayed_after_and_a_conflict_changes_nothing(
    http: httpx.AsyncClient, keys: Keys, pool: Pool, new_id: NewId
) -> None:
    customer, lot_id = new_id("c"), new_id("lot")
    body = {"lot_id": lot_id, "currency": "USD", "kind": "credit", "amount": 1000, "expires_in": "P14D"}
    first, _ = await _twice(http, keys.grant, customer, "grants", body)
    lot = Lot.model_validate_json(first.content)
    assert (lot.customer_id, lot.amount, lot.remaining, lot.status) == (customer, 1000, 1000, "active")
    conflict = await _post(http, keys.grant, customer, "grants", {**body, "amount": 2000})
    problem(conflict, 409, "LotConflict")
    assert await ledger_rows(pool, customer) == [("grant", lot_id, 1000, None)]
    assert await remaining(pool, lot_id) == (1000, "active")


async def test_a_redemption_is_applied_once_and_every_refusal_writes_nothing(
    http: httpx.AsyncClient, keys: Keys, pool: Pool, new_id: NewId
) -> None:
    customer, lot_id, coupon_id, order_id = new_id("c"), new_id("lot"), new_id("cpn"), new_id("o")
    await _post(
        http, keys.grant, customer, "grants", {"lot_id": lot_id, "currency": "USD", "kind": "credit", "amount": 500}
    )
    coupon = {"amount_off": 300, "min_order": 2000}
    grant = {"lot_id": coupon_id, "currency": "USD", "kind": "coupon", "coupon": coupon}
    assert (await _post(http, keys.grant, customer, "grants", grant)).status_code == 201
    order = {"order_id": order_id, "currency": "USD", "total": 400, "customer_id": customer}
    first, _ = await _twice(http, keys.checkout, customer, "redemptions", order)
    redemption = Redemption.model_validate_json(first.content)
    assert (redemption.discount, redemption.to_pay, [p.lot_id for p in redemption.applied]) == (400, 0, [lot_id])
    problem(await _post(http, keys.checkout, customer, "redemptions", {**order, "total": 401}), 409, "OrderConflict")
    other_id, none_left_id = new_id("o"), new_id("o")
    other = {"order_id": other_id, "currency": "USD", "total": 1000, "coupon_lot_id": coupon_id}
    problem(await _post(http, keys.checkout, customer, "redemptions", other), 422, "MinimumNotMet")
    none_left = {"order_id": none_left_id, "currency": "USD", "total": 100, "max_credit": 0}
    problem(await _post(http, keys.checkout, customer, "redemptions", none_left), 422, "NothingToRedeem")
    assert [(t, a, o) for t, _, a, o in await ledger_rows(pool, customer)] == [
        ("grant", 500, None),
        ("grant", 0, None),
        ("redeem", -400, order_id),
    ]
    assert await counts(pool, other_id, none_left_id) == (0, 0, 0)


async def test_a_reversal_and_a_revocation_are_applied_once_and_replayed(
    http: httpx.AsyncClient, keys: Keys, pool: Pool, new_id: NewId
) -> None:
    customer, lot_id, order_id, reversal_id = new_id("c"), new_id("lot"), new_id("o"), new_id("r")
    await _post(
        http, keys.grant, customer, "grants", {"lot_id": lot_id, "currency": "USD", "kind": "credit", "amount": 900}
    )
    await _post(http, keys.checkout, customer, "redemptions", {"order_id": order_id, "currency": "USD", "total": 600})
    reverse = {"order_id": order_id, "reversal_id": reversal_id, "amount": 200}
    first, _ = await _twice(http, keys.checkout, customer, "reversals", reverse)
    assert Reversal.model_validate_json(first.content).reversible_left == 400
    problem(
        await _post(http, keys.checkout, customer, "reversals", {**reverse, "amount": 250}), 409, "ReversalConflict"
    )
    too_much = {"order_id": order_id, "reversal_id": new_id("r"), "amount": 401}
    problem(await _post(http, keys.checkout, customer, "reversals", too_much), 422, "ReversalExceedsRedeemed")
    unknown = {"order_id": new_id("o"), "reversal_id": new_id("r")}
    problem(await _post(http, keys.checkout, customer, "reversals", unknown), 422, "UnknownOrder")
    revoke = {"lot_id": lot_id, "reason": "fraud review #4411"}
    first, _ = await _twice(http, keys.grant, customer, "revocations", revoke)
    assert Revocation.model_validate_json(first.content).amount == 500
    problem(
        await _post(http, keys.grant, customer, "revocations", {**revoke, "reason": "other"}), 409, "RevocationConflict"
    )
    missing = {"lot_id": new_id("lot"), "reason": "typo"}
    problem(await _post(http, keys.grant, customer, "revocations", missing), 422, "UnknownLot")
    assert [(t, a) for t, _, a, _ in await ledger_rows(pool, customer)] == [
        ("grant", 900),
        ("redeem", -600),
        ("reverse", 200),
        ("revoke", -500),
    ]


async def test_the_wallet_is_read_from_the_ledger_within_its_limit(
    http: httpx.AsyncClient, keys: Keys, new_id: NewId
) -> None:
    customer, lot_id = new_id("c"), new_id("lot")
    await _post(
        http, keys.grant, customer, "grants", {"lot_id": lot_id, "currency": "JPY", "kind": "credit", "amount": 700}
    )
    for i in range(3):
        order = {"order_id": f"{lot_id}-{i}", "currency": "JPY", "total": 100}
        assert (await _post(http, keys.checkout, customer, "redemptions", order)).status_code == 201
    response = await http.get(f"/v1/customers/{customer}/wallet", params={"limit": "2"}, headers=bearer(keys.read))
    assert response.status_code == 200, response.text
    view = WalletView.model_validate_json(response.content)
    assert (view.balances, view.ledger_total, [e.entry_type for e in view.ledger]) == (
        {"JPY": 400},
        4,
        ["redeem", "redeem"],
    )
    unknown = await http.get(f"/v1/customers/{new_id('c')}/wallet", headers=bearer(keys.checkout))
    problem(unknown, 404, "UnknownCustomer")


async def test_a_customer_id_holding_a_slash_is_one_path_segment(
    http: httpx.AsyncClient, keys: Keys, pool: Pool, new_id: NewId
) -> None:
    customer = f"{new_id('shop')}/eu/42"
    body = {"lot_id": new_id("lot"), "currency": "USD", "kind": "credit", "amount": 100}
    response = await http.post(
        f"/v1/customers/{customer.replace('/', '%2F')}/grants", json=body, headers=bearer(keys.grant)
    )
    assert response.status_code == 201, response.text
    assert Lot.model_validate_json(response.content).customer_id == customer
    assert len(await ledger_rows(pool, customer)) == 1


async def test_each_request_is_one_log_line_with_its_ids(
    api: ApiProcess, http: httpx.AsyncClient, keys: Keys, new_id: NewId
) -> None:
    customer, order_id = new_id("c"), new_id("o")
    refused = await _post(
        http, keys.checkout, customer, "redemptions", {"order_id": order_id, "currency": "USD", "total": 5}
    )
    problem(refused, 422, "NothingToRedeem")

    async def logged() -> dict[str, Any]:
        lines = [line for line in api.lines() if line.get("request_id") == refused.headers["x-request-id"]]
        assert len(lines) == 1, lines
        return lines[0]

    line = await eventually(logged)
    assert (line["customer_id"], line["order_id"]) == (customer, order_id), line
    assert (line["event"], line["status"], line["error_type"], line["level"]) == (
        "request",
        422,
        "NothingToRedeem",
        "info",
    )
    assert (line["route"], line["key"][:9]) == ("/v1/customers/{customer}/redemptions", "checkout-"), line
    assert keys.checkout not in api.log.read_text()
