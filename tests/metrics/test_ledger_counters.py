"""The worker's /metrics, scraped over HTTP from a real `incentives worker`: its counters move by
exactly what the ledger decided, no label holds an id, and the SDK's series and the books' gauges
are served beside them.

A replay to the run that answered first is answered by Temporal (the Update's id is the order's),
even once that run has closed, and never reaches the ledger; the replay here reaches the wallet's
next run, as a late retry does, so the ledger decides it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.app.client import IncentivesClient
from incentives.devstack.servers import free_port
from incentives.domain.errors import NothingToRedeem
from incentives.domain.models import wallet_id
from tests.helpers import eventually
from tests.helpers.builders import NewId, credit, order
from tests.helpers.processes import worker_process
from tests.helpers.scrape import Scrape, scrape

OPERATIONS = "incentives_operations_total"


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


async def test_the_counters_move_by_exactly_the_operations_the_ledger_decided(
    dev_server: WorkflowEnvironment, pool: Pool, database_url: str, new_id: NewId, tmp_path: Path
) -> None:
    customer, lot_id, task_queue, port = new_id("c"), new_id("lot"), new_id("metrics"), free_port()
    orders = [new_id("o") for _ in range(7)]
    refused = [new_id("o") for _ in range(3)]
    url = f"http://127.0.0.1:{port}/metrics"
    async with worker_process(dev_server, database_url, task_queue, tmp_path / "worker.log", metrics_port=port):
        wallets = IncentivesClient(
            dev_server.client, pool, task_queue=task_queue, reversal_window=timedelta(milliseconds=500)
        )
        before = await scrape(url)
        await wallets.grant(credit(lot_id, customer, 700, expires_in_days=10))
        for order_id in orders:  # they use the lot up: the wallet closes after the reversal window
            await wallets.redeem(order(customer, order_id, 100))
        await _closed(dev_server, customer)
        for order_id in refused:  # no credit in this currency; the first starts the wallet's next run
            with pytest.raises(NothingToRedeem):
                await wallets.redeem(order(customer, order_id, 100, currency="EUR"))
        await wallets.redeem(order(customer, orders[0], 100))  # the same order again: a replay
        after = await scrape(url)

    assert moved(before, after, OPERATIONS, operation="grant", outcome="applied", reason="none") == 1
    assert moved(before, after, OPERATIONS, operation="redeem", outcome="applied", reason="none") == 7
    assert moved(before, after, OPERATIONS, operation="redeem", outcome="replayed", reason="none") == 1
    assert moved(before, after, OPERATIONS, operation="redeem", outcome="refused", reason="NothingToRedeem") == 3
    assert _operations(after) - _operations(before) == 12  # and nothing else
    duration = "incentives_operation_duration_seconds_count"
    assert moved(before, after, duration, operation="redeem") == 11
    assert moved(before, after, duration, operation="grant") == 1
    assert moved(before, after, "incentives_value_minor_total", movement="granted", currency="USD") == 700
    assert moved(before, after, "incentives_value_minor_total", movement="redeemed", currency="USD") == 700
    ids = {customer, lot_id, *orders, *refused}  # (the task queue is a label of the SDK's series)
    assert not any(identifier in value for value in after.label_values() for identifier in ids)
    assert after.types["incentives_operation_duration_seconds"] == "histogram"
    buckets = {dict(labels).get("le") for name, labels in after.samples if name.endswith("_seconds_bucket")}
    assert {"0.1", "0.25"} <= buckets  # the objectives are bucket boundaries: their quantiles are exact


async def _closed(server: WorkflowEnvironment, customer: str) -> None:
    async def completed() -> None:
        description = await server.client.get_workflow_handle(wallet_id(customer)).describe()
        assert description.status == WorkflowExecutionStatus.COMPLETED

    await eventually(completed, timeout=30, interval=0.1)


def _operations(scraped: Scrape) -> float:
    return sum(value for (name, _), value in scraped.samples.items() if name == OPERATIONS)


async def test_the_sdk_series_and_the_books_gauges_are_served_beside_the_counters(
    dev_server: WorkflowEnvironment, pool: Pool, database_url: str, new_id: NewId, tmp_path: Path
) -> None:
    customer, task_queue, port = new_id("c"), new_id("metrics"), free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    async with worker_process(dev_server, database_url, task_queue, tmp_path / "worker.log", metrics_port=port):
        await IncentivesClient(dev_server.client, pool, task_queue=task_queue).grant(
            credit(new_id("lot"), customer, 500, currency="JPY", expires_in_days=3)
        )

        async def served() -> Scrape:
            scraped = await scrape(url)
            assert scraped.value("incentives_outstanding_minor", currency="JPY") >= 500
            assert "temporal_workflow_task_schedule_to_start_latency_seconds_bucket" in scraped.names()
            return scraped

        scraped = await eventually(served, timeout=30, interval=0.2)
    assert "incentives_outbox_oldest_unpublished_seconds" in scraped.names()
    assert scraped.types["temporal_request"] == "counter"  # the SDK's, with Prometheus' suffixes
    assert not any(name.endswith("_created") for name in scraped.names())
