"""Hostile and malformed input gets a 400 naming the field, as problem+json, and nothing is sent or
written: malformed JSON, wrong types, floats, booleans or strings for amounts, unknown fields, a key
given twice, ids outside the rules (in the body and in the path), oversized bodies (the limit is 16
KiB for a wallet operation), parameters out of range. Unknown routes are 404, other methods 405."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from incentives.adapters.db import Pool
from incentives.http.reading import MAX_JSON_BYTES
from tests.helpers.builders import NewId
from tests.helpers.ledger import counts
from tests.http.conftest import Keys, bearer, problem

ORDER = {"order_id": "o-1", "currency": "USD", "total": 100}
GRANT = {"lot_id": "l-1", "currency": "USD", "kind": "credit", "amount": 100}
JSON = {"Content-Type": "application/json"}
TOMORROW = datetime.now(UTC) + timedelta(days=1)


def _with(base: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps({**base, **changes}).encode()


# (route under the customer, the raw body, the field a 400 must name)
BODIES = [
    ("redemptions", b'{"order_id": "o-1", "total":', "body"),
    ("redemptions", b"[1, 2]", "body"),
    ("redemptions", b"", "body"),
    ("redemptions", b"\xff\xfe{}", "body"),
    ("redemptions", _with(ORDER, total=10.5), "total"),
    ("redemptions", _with(ORDER, total=100.0), "total"),
    ("redemptions", _with(ORDER, total=True), "total"),
    ("redemptions", _with(ORDER, total="100"), "total"),
    ("redemptions", _with(ORDER, total=-5), "total"),
    ("redemptions", _with(ORDER, total=10**16), "total"),
    ("redemptions", _with(ORDER, max_credit=1.5), "max_credit"),
    ("redemptions", _with(ORDER, colour="blue"), "colour"),
    ("redemptions", json.dumps({"currency": "USD", "total": 100}).encode(), "order_id"),
    ("redemptions", _with(ORDER, order_id="a b"), "order_id"),
    ("redemptions", _with(ORDER, order_id="o" * 129), "order_id"),
    ("redemptions", _with(ORDER, order_id=""), "order_id"),
    ("redemptions", _with(ORDER, order_id=7), "order_id"),
    ("redemptions", _with(ORDER, currency="usd"), "currency"),
    ("redemptions", _with(ORDER, currency="ZZZ"), "currency"),
    ("redemptions", b'{"order_id": "o-1", "currency": "USD", "total": 100, "total": 1}', "total"),
    ("redemptions", b'{"order_id": "o-1", "currency": "USD", "total": NaN}', "body"),
    ("redemptions", b'{"order_id": "o-1", "currency": "USD", "total": 1' + b"0" * 5000 + b"}", "body"),
    ("redemptions", b"[" * 5000 + b"]" * 5000, "body"),
    ("redemptions", _with(ORDER, customer_id="someone-else"), "customer_id"),
    ("grants", _with(GRANT, expires_in=1209600), "expires_in"),
    ("grants", _with(GRANT, expires_in="forever"), "expires_in"),
    ("grants", _with(GRANT, expires_at="2030-01-01T00:00:00"), "expires_at"),
    ("grants", _with(GRANT, expires_at=1900000000), "expires_at"),
    ("grants", _with(GRANT, amount=None), "amount"),
    ("grants", _with(GRANT, kind="gift"), "kind"),
    (
        "grants",
        _with(GRANT, kind="coupon", amount=None, coupon={"amount_off": 1, "percent_off": 5}),
        "coupon.amount_off",
    ),
    ("grants", _with(GRANT, expires_in="P1D", remind_before="P2D"), "remind_before"),
    ("grants", _with(GRANT, expires_at=f"{TOMORROW:%Y-%m-%dT%H:%M:%SZ}", remind_before="P2D"), "remind_before"),
    ("revocations", json.dumps({"lot_id": "l-1", "reason": "   "}).encode(), "reason"),
    ("revocations", json.dumps({"lot_id": "l-1", "reason": "one\nline"}).encode(), "reason"),
    ("revocations", json.dumps({"lot_id": "l-1", "reason": "x" * 501}).encode(), "reason"),
    ("reversals", json.dumps({"order_id": "o-1", "reversal_id": "r 1"}).encode(), "reversal_id"),
    ("reversals", json.dumps({"order_id": "o-1", "reversal_id": "r-1", "amount": 0}).encode(), "amount"),
]


@pytest.mark.parametrize(("route", "content", "field"), BODIES, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(BODIES)])
async def test_a_malformed_body_is_400_naming_the_field_and_nothing_is_written(
    http: httpx.AsyncClient, keys: Keys, pool: Pool, new_id: NewId, route: str, content: bytes, field: str
) -> None:
    customer = new_id("c")
    response = await http.post(
        f"/v1/customers/{customer}/{route}", content=content, headers={**JSON, **bearer(keys.every)}
    )
    body = problem(response, 400, "InvalidInput")
    assert field in [error["field"] for error in body["errors"]], body
    assert body["detail"].startswith(body["errors"][0]["field"])
    assert await counts(pool, customer) == (0, 0, 0)


async def _stream(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // 4096):
        yield b" " * 4096


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_its_limit_is_refused(http: httpx.AsyncClient, keys: Keys, declared: bool) -> None:
    padding = b" " * (MAX_JSON_BYTES + 1)
    content: bytes | AsyncIterator[bytes] = padding if declared else _stream(MAX_JSON_BYTES + 8192)
    response = await http.post("/v1/customers/c-1/redemptions", content=content, headers={**JSON, **bearer(keys.every)})
    body = problem(response, 400, "InvalidInput")
    assert body["errors"] == [{"field": "body", "message": f"is larger than {MAX_JSON_BYTES:,} bytes"}]


# (method, path with its query, the field a 400 must name)
PARAMETERS = [
    ("POST", "/v1/customers/a%20b/redemptions", "customer"),
    ("POST", "/v1/customers/%00/redemptions", "customer"),
    ("POST", f"/v1/customers/{'c' * 129}/redemptions", "customer"),
    ("POST", "/v1/customers/c-1/redemptions?timeout=forever", "timeout"),
    ("POST", "/v1/customers/c-1/redemptions?timeout=2m", "timeout"),
    ("POST", "/v1/customers/c-1/redemptions?timeout=5s&timeout=6s", "timeout"),
    ("POST", "/v1/customers/c-1/redemptions?colour=blue", "colour"),
    ("GET", "/v1/customers/c-1/wallet?limit=0", "limit"),
    ("GET", "/v1/customers/c-1/wallet?limit=%C2%B2", "limit"),
    ("GET", "/v1/customers/c-1/wallet?limit=10001", "limit"),
    ("GET", "/v1/promotions/a:b", "id"),
    ("POST", "/v1/promotions/a@b/pause", "id"),
    ("GET", f"/v1/promotions/{'p' * 65}/report", "id"),
]


@pytest.mark.parametrize(("method", "path", "field"), PARAMETERS, ids=[p for _, p, _ in PARAMETERS])
async def test_a_parameter_outside_its_rules_is_400_naming_it(
    http: httpx.AsyncClient, keys: Keys, method: str, path: str, field: str
) -> None:
    content = json.dumps(ORDER).encode() if method == "POST" else None
    response = await http.request(method, path, content=content, headers={**JSON, **bearer(keys.every)})
    body = problem(response, 400, "InvalidInput")
    assert body["errors"][0]["field"] == field, body


async def test_a_body_that_is_not_json_by_its_type_is_refused(http: httpx.AsyncClient, keys: Keys) -> None:
    response = await http.post(
        "/v1/customers/c-1/redemptions",
        content=json.dumps(ORDER).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", **bearer(keys.every)},
    )
    assert problem(response, 400, "InvalidInput")["errors"][0]["field"] == "Content-Type"


async def test_unknown_routes_are_404_and_other_methods_405(http: httpx.AsyncClient, keys: Keys) -> None:
    for path in ("/", "/v1", "/v1/customers/c-1", "/v2/promotions", "/v1/customers/c-1/wallet/extra"):
        problem(await http.get(path, headers=bearer(keys.every)), 404, "NotFound")
    response = await http.delete("/v1/customers/c-1/wallet", headers=bearer(keys.every))
    problem(response, 405, "MethodNotAllowed")
    assert response.headers["allow"] == "GET"
    response = await http.get("/v1/customers/c-1/redemptions", headers=bearer(keys.every))
    assert problem(response, 405, "MethodNotAllowed")
    assert response.headers["allow"] == "POST"
