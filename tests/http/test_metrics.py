"""The API's /metrics, scraped from the session's `incentives api` process: each request counted by
its route's template and status (never an id), its duration, and the Temporal SDK's client series
(the capacity refusals of Updates among them) beside them."""

from __future__ import annotations

import uuid

import httpx

from tests.helpers import eventually
from tests.helpers.scrape import Scrape, scrape
from tests.http.api_process import ApiProcess

WALLET = "GET /v1/customers/{customer}/wallet"


async def test_requests_are_counted_by_route_and_status_beside_the_sdk_series(
    api: ApiProcess, http: httpx.AsyncClient
) -> None:
    url, customer = f"{api.base_url}/metrics", f"metrics-{uuid.uuid4().hex[:8]}"
    before = await scrape(url)
    for _ in range(2):
        assert (await http.get(f"/v1/customers/{customer}/wallet")).status_code == 401
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get(f"/no/such/{customer}")).status_code == 404

    async def counted() -> Scrape:
        after = await scrape(url)
        assert "temporal_request_total" in after.names()  # the API's own client: its calls to Temporal
        return after

    after = await eventually(counted, timeout=30, interval=0.2)
    requests = "incentives_http_requests_total"
    assert after.value(requests, route=WALLET, status="401") - before.value(requests, route=WALLET, status="401") == 2
    assert (
        after.value(requests, route="GET /healthz", status="200")
        - before.value(requests, route="GET /healthz", status="200")
        == 1
    )
    assert (
        after.value(requests, route="unrouted", status="404") - before.value(requests, route="unrouted", status="404")
        == 1
    )
    durations = "incentives_http_request_duration_seconds_count"
    assert after.value(durations, route=WALLET) - before.value(durations, route=WALLET) == 2
    assert not any(customer in value for value in after.label_values())
    assert after.types["incentives_http_requests"] == "counter"
