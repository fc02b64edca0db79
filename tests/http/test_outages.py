"""What a caller is told when a server is missing, each in its own API process: no worker, an
answer unknown at the deadline (504), which the same request again resolves; Temporal or Postgres
unreachable, refused before anything is sent (503, `Retry-After`), nothing written; `/readyz`
says which; the process starts in under 3 s, and answers `/healthz` whatever is down."""

from __future__ import annotations

import uuid
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.app.worker import build_worker
from tests.helpers.builders import NewId
from tests.helpers.ledger import counts, ledger_rows
from tests.http.api_process import api_process
from tests.http.conftest import Keys, bearer, environment, problem

CLOSED_TEMPORAL = "127.0.0.1:1"
CLOSED_DATABASE = "postgresql://nobody@127.0.0.1:1/nothing"
START_LIMIT = 3.0


async def test_with_no_worker_the_caller_gets_504_and_the_same_request_again_resolves_it(
    dev_server: WorkflowEnvironment, worker_pool: Pool, pool: Pool, database_url: str, keys: Keys, new_id: NewId,
    tmp_path: Path,
) -> None:  # fmt: skip
    customer, lot_id, order_id = new_id("c"), new_id("lot"), new_id("o")
    task_queue = f"nobody-{uuid.uuid4().hex[:8]}"
    async with api_process(environment(dev_server, database_url, task_queue, tmp_path), tmp_path / "api.log") as api:
        assert api.started_in < START_LIMIT, api.started_in
        grant = {"lot_id": lot_id, "currency": "USD", "kind": "credit", "amount": 1000}
        async with api.client(headers=bearer(keys.every)) as http:
            unknown = await http.post(f"/v1/customers/{customer}/grants?timeout=2s", json=grant)
            body = problem(unknown, 504, "OutcomeUnknown")
            assert "the same request again is safe" in body["detail"], body
            async with build_worker(dev_server.client, worker_pool, task_queue):
                retried = await http.post(f"/v1/customers/{customer}/grants?timeout=30s", json=grant)
                order = {"order_id": order_id, "currency": "USD", "total": 300}
                redeemed = await http.post(f"/v1/customers/{customer}/redemptions", json=order)
        assert await api.stop() == 0
    # The first call's update may have reached the wallet before the retry did: then it is a replay.
    assert retried.status_code in (200, 201), retried.text
    assert (retried.json()["remaining"], redeemed.status_code, redeemed.json()["discount"]) == (1000, 201, 300)
    assert [t for t, *_ in await ledger_rows(pool, customer)] == ["grant", "redeem"]


async def test_temporal_unreachable_is_503_before_anything_is_sent(
    database_url: str, keys: Keys, tmp_path: Path, pool: Pool, new_id: NewId
) -> None:
    env = {"TEMPORAL_ADDRESS": CLOSED_TEMPORAL, "DATABASE_URL": database_url, "INCENTIVES_HOME": str(tmp_path)}
    customer = new_id("c")
    async with api_process(env, tmp_path / "api.log", ready=False) as api, api.client() as http:
        assert api.started_in < START_LIMIT, api.started_in
        ready = problem(await http.get("/readyz"), 503, "Unavailable")
        assert ("Temporal" in ready["detail"], "Postgres" in ready["detail"]) == (True, False), ready
        order_id = new_id("o")
        order = {"order_id": order_id, "currency": "USD", "total": 100}
        refused = await http.post(f"/v1/customers/{customer}/redemptions", json=order, headers=bearer(keys.every))
        body = problem(refused, 503, "Unavailable")
        assert (refused.headers["retry-after"], "nothing was sent" in body["detail"]) == ("2", True), body
        wallet = await http.get(f"/v1/customers/{customer}/wallet", headers=bearer(keys.every))
        problem(wallet, 404, "UnknownCustomer")  # Postgres alone answers it
    assert await counts(pool, customer, order_id) == (0, 0, 0)


async def test_postgres_unreachable_is_503_and_health_still_answers(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    env = {
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "DATABASE_URL": CLOSED_DATABASE,
        "INCENTIVES_HOME": str(tmp_path),
    }
    async with api_process(env, tmp_path / "api.log", ready=False) as api, api.client() as http:
        assert (await http.get("/healthz")).json() == {"status": "up"}
        ready = problem(await http.get("/readyz"), 503, "Unavailable")
        assert "Postgres: cannot connect to Postgres" in ready["detail"], ready
        assert "connection refused" in ready["detail"], ready
        refused = await http.get("/v1/promotions", headers=bearer("ik_" + "x" * 43))
        problem(refused, 503, "Unavailable")  # the key cannot be checked: nothing is decided
        assert refused.headers["retry-after"] == "2"
        assert await api.stop() == 0
