"""Every scope boundary, over the wire: each operation with each scope's key, with no key, a
malformed header, an unknown key and a revoked one. A key outside its scope is 403; inside, the
request goes on (here to a cheap answer: a body that is refused as input, or an unknown id), so
that what is tested is the boundary, not the operation."""

from __future__ import annotations

import httpx
import pytest

from incentives.app import api_keys
from incentives.app.api_keys import SCOPES
from tests.http.conftest import Keys, bearer, problem

# (method, path, the scopes allowed): POSTs carry an empty object, which an allowed caller gets
# back as 400 (nothing sent); GETs name a customer or promotion nobody has, 404.
OPERATIONS = [
    ("POST", "/v1/customers/nobody-x/grants", {"grant"}),
    ("POST", "/v1/customers/nobody-x/redemptions", {"checkout"}),
    ("POST", "/v1/customers/nobody-x/reversals", {"checkout"}),
    ("POST", "/v1/customers/nobody-x/revocations", {"grant"}),
    ("GET", "/v1/customers/nobody-x/wallet", {"checkout", "grant", "read"}),
    ("POST", "/v1/promotions", {"promotions"}),
    ("GET", "/v1/promotions", {"promotions", "read"}),
    ("GET", "/v1/promotions/nobody-x", {"promotions", "read"}),
    ("GET", "/v1/promotions/nobody-x/report", {"promotions", "read"}),
    ("POST", "/v1/promotions/nobody-x/pause", {"promotions"}),
    ("POST", "/v1/promotions/nobody-x/resume", {"promotions"}),
    ("POST", "/v1/promotions/nobody-x/cancel", {"promotions"}),
    ("POST", "/v1/promotions/nobody-x/extend", {"promotions"}),
    ("POST", "/v1/promotions/nobody-x/audience", {"promotions"}),
]


async def _call(http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    return await http.request(method, path, json={} if method == "POST" else None, headers=headers)


@pytest.mark.parametrize(("method", "path", "allowed"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
async def test_each_scope_may_call_what_it_names_and_nothing_else(
    http: httpx.AsyncClient, keys: Keys, method: str, path: str, allowed: set[str]
) -> None:
    for scope in SCOPES:
        response = await _call(http, method, path, bearer(keys.of(scope)))
        if scope in allowed:
            assert response.status_code in (200, 400, 404), (scope, response.status_code, response.text)
        else:
            body = problem(response, 403, "Forbidden")
            assert scope in body["detail"], body
            assert all(name in body["detail"] for name in allowed), body
    assert (await _call(http, method, path, bearer(keys.every))).status_code in (200, 400, 404)


@pytest.mark.parametrize(("method", "path", "allowed"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
async def test_no_key_an_unknown_key_and_a_revoked_key_are_401(
    http: httpx.AsyncClient, keys: Keys, method: str, path: str, allowed: set[str]
) -> None:
    for headers in (
        {},
        {"Authorization": keys.every},  # no scheme
        {"Authorization": f"Basic {keys.every}"},
        {"Authorization": "Bearer"},
        bearer(api_keys.new_key()),  # well formed, never made
        bearer(keys.every + "x"),
        bearer(keys.revoked),
    ):
        response = await _call(http, method, path, headers)
        problem(response, 401, "Unauthenticated")
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_service_routes_need_no_key(http: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs", "/problems/nothing-to-redeem"):
        assert (await http.get(path)).status_code == 200, path
