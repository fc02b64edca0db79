"""SIGTERM while 50 redeems are in flight: the API stops taking connections, answers each of the 50
(once a worker comes to answer them), then exits 0. The redeems are held in flight on purpose: no
worker polls their task queue until after the signal, and the test knows all 50 reached Temporal
because each started its customer's wallet (their credits were written straight into the ledger,
as a promotion's batch writes them, so no wallet ran before)."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from activities.ledger import LedgerActivities
from incentives.adapters.db import Pool
from incentives.app.worker import build_worker
from incentives.domain.messages import GrantInput
from incentives.domain.models import Redemption
from tests.helpers import eventually
from tests.helpers.builders import NewId, credit
from tests.http.api_process import STOP_TIMEOUT, api_process
from tests.http.conftest import Keys, bearer, environment

IN_FLIGHT = 50


async def test_sigterm_answers_every_request_in_flight_then_exits(
    dev_server: WorkflowEnvironment, worker_pool: Pool, pool: Pool, database_url: str, keys: Keys, new_id: NewId,
    tmp_path: Path,
) -> None:  # fmt: skip
    task_queue = f"drain-{uuid.uuid4().hex[:8]}"
    customers = [new_id("c") for _ in range(IN_FLIGHT)]
    now = await dev_server.get_current_time()
    ledger = LedgerActivities(pool)
    for customer in customers:
        await ledger.grant_lot(GrantInput(request=credit(f"{customer}-lot", customer, 1000), granted_at=now))
    env = environment(dev_server, database_url, task_queue, tmp_path)
    limits = httpx.Limits(max_connections=IN_FLIGHT + 5)
    async with api_process(env, tmp_path / "api.log") as api, api.client(limits=limits) as http:

        async def redeem(customer: str) -> httpx.Response:
            order = {"order_id": f"{customer}-o", "currency": "USD", "total": 400}
            return await http.post(
                f"/v1/customers/{customer}/redemptions?timeout=60s", json=order, headers=bearer(keys.every)
            )

        calls = [asyncio.create_task(redeem(customer)) for customer in customers]

        async def all_in_flight() -> None:
            started = await dev_server.client.count_workflows(f"TaskQueue = '{task_queue}'")
            assert started.count == IN_FLIGHT, started.count
            assert not any(call.done() for call in calls)

        await eventually(all_in_flight, timeout=30)
        api.process.send_signal(signal.SIGTERM)

        async def closed_to_new_connections() -> None:
            try:
                async with httpx.AsyncClient(base_url=api.base_url, timeout=2) as fresh:
                    await fresh.get("/healthz")
            except httpx.ConnectError:
                return
            raise AssertionError("a new connection was still accepted")

        await eventually(closed_to_new_connections, timeout=10)
        async with build_worker(dev_server.client, worker_pool, task_queue):
            answers = await asyncio.gather(*calls)
            code = await asyncio.wait_for(api.process.wait(), STOP_TIMEOUT)
    assert [answer.status_code for answer in answers] == [201] * IN_FLIGHT, [
        a.text for a in answers if a.status_code != 201
    ]
    assert {Redemption.model_validate_json(answer.content).discount for answer in answers} == {400}
    assert code == 0
    drained = [line for line in api.lines() if line.get("event") == "draining"]
    assert [line["signal"] for line in drained] == ["SIGTERM"]
