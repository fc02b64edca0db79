"""Every series an alerting rule or a dashboard panel names is on a real scrape: of an
`incentives worker` and an `incentives api`, run as production runs them, after the events that
make each series appear (a counter's first failure, among them):

- checkout through the API: a grant, a redeem, then a redeem sent to the wallet's closed run (the
  API's client gets NOT_FOUND, a failed long request, and starts the next run) and refused;
- a workflow of ours started with an input it cannot decode: a failed workflow task;
- a promotion live (its budget's gauge) and a scheduled reconcile recorded (its gauge).

Two dashboard series are left to chance (`APPEAR_LATE`): the SDK serves a counter from its first
event, and these count events nothing here provokes without breaking a server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.reconcile import ReconcileActivities
from incentives.adapters.db import Pool
from incentives.app import api_keys
from incentives.app.promotions import PromotionsClient
from incentives.devstack.servers import free_port
from incentives.domain.models import wallet_id
from incentives.domain.reconcile import ReconcileRequest
from tests.helpers import eventually
from tests.helpers.builders import NewId, promotion
from tests.helpers.processes import worker_process
from tests.helpers.scrape import scrape
from tests.http.api_process import api_process
from tests.ops.rules import all_dashboard_metric_names, all_rule_metric_names

APPEAR_LATE = {
    "temporal_request_failure_total",  # a failed ordinary request (not a long poll)
    "temporal_sticky_cache_miss_total",  # a workflow task for a run its sticky worker no longer holds
}


async def test_every_series_the_rules_and_the_dashboard_name_is_served(
    dev_server: WorkflowEnvironment, pool: Pool, database_url: str, new_id: NewId, tmp_path: Path
) -> None:
    task_queue, port, customer = new_id("scraped"), free_port(), new_id("c")
    environment = {
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "DATABASE_URL": database_url,
        "INCENTIVES_TASK_QUEUE": task_queue,
        "INCENTIVES_HOME": str(tmp_path),
        "INCENTIVES_REVERSAL_WINDOW": "1s",  # the wallet closes a second after its last redeem
    }
    key = (await api_keys.create_key(pool, f"scrape-{uuid.uuid4().hex[:8]}", api_keys.SCOPES)).key
    async with (
        worker_process(dev_server, database_url, task_queue, tmp_path / "worker.log", metrics_port=port),
        api_process(environment, tmp_path / "api.log") as api,
        api.client(headers={"Authorization": f"Bearer {key}"}) as http,
    ):
        await _checkout(http, dev_server, customer, new_id)
        undecodable = await dev_server.client.start_workflow(
            "Wallet", "not a wallet's input", id=new_id("undecodable"), task_queue=task_queue
        )
        await PromotionsClient(dev_server.client, pool, task_queue=task_queue).start(
            promotion(new_id("p"), datetime.now(UTC), amount=100, budget=10_000), [new_id("c")]
        )
        await ReconcileActivities(pool).reconcile_books(ReconcileRequest(workflow_id=new_id("r"), run_id=new_id("r")))
        assert all_dashboard_metric_names() - all_rule_metric_names() >= APPEAR_LATE  # no rule is left to chance
        wanted = all_rule_metric_names() | (all_dashboard_metric_names() - APPEAR_LATE)

        async def all_served() -> None:
            served = (await scrape(f"http://127.0.0.1:{port}/metrics")).names()
            served |= (await scrape(f"{api.base_url}/metrics")).names()
            assert wanted <= served, sorted(wanted - served)

        try:
            await eventually(all_served, timeout=60, interval=0.5)
        finally:
            await undecodable.terminate("a test's undecodable workflow")


async def _checkout(
    http: httpx.AsyncClient, dev_server: WorkflowEnvironment, customer: str, new_id: Callable[[str], str]
) -> None:
    async def post(route: str, body: dict[str, object]) -> int:
        return (await http.post(f"/v1/customers/{customer}/{route}", json=body)).status_code

    grant = {"lot_id": new_id("lot"), "kind": "credit", "currency": "USD", "amount": 100}
    assert await post("grants", grant) == 201
    assert await post("redemptions", {"order_id": new_id("o"), "currency": "USD", "total": 100}) == 201
    wallet: WorkflowHandle[object, object] = dev_server.client.get_workflow_handle(wallet_id(customer))

    async def closed() -> None:
        assert (await wallet.describe()).status == WorkflowExecutionStatus.COMPLETED

    await eventually(closed, timeout=30, interval=0.1)
    assert await post("redemptions", {"order_id": new_id("o"), "currency": "USD", "total": 100}) == 422
