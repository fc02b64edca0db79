"""`incentives events tail`: the stream followed from a terminal, filtered by type and customer."""

from __future__ import annotations

import json

import pytest
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.devstack.servers import EmbeddedNats
from tests.cli.conftest import Cli
from tests.helpers import eventually, running_wallets
from tests.helpers.builders import NewId, credit, order
from tests.helpers.events import broker, running_relay


async def test_tail_prints_a_customers_events_since_an_instant_one_a_line_or_as_json(
    dev_server: WorkflowEnvironment,
    pool: Pool,
    worker_pool: Pool,
    worker_database_url: str,
    nats_server: EmbeddedNats,
    new_id: NewId,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    customer, lot_id, order_id = f"{new_id('c')}.x", new_id("lot"), new_id("o")
    async with running_wallets(dev_server.client, worker_pool) as wallets:
        await wallets.grant(credit(lot_id, customer, 1000))
        await wallets.redeem(order(customer, order_id, 250))

    async def published() -> None:
        assert not await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE customer_id = $1 AND published_at IS NULL", customer
        )

    async with broker(nats_server) as (_, js), running_relay(js, worker_database_url):
        await eventually(published, timeout=20)
    monkeypatch.setenv("NATS_URL", nats_server.url)
    cli = Cli(capsys)
    lines = await cli("events", "tail", "--customer", customer, "--since", "1h", "--count", "2")
    assert lines.code == 0, lines.err
    shown = lines.out.splitlines()
    assert shown[0].endswith(f"incentives.lot.granted  {customer}  lot {lot_id} +10.00 USD (remaining 10.00 USD)")
    assert shown[1].endswith(f"incentives.order.redeemed  {customer}  order {order_id} discount 2.50 USD")
    redeemed = await cli("events", "tail", "--type", "order.redeemed", "--customer", customer, "--since", "1h",
                         "--count", "1", "--json")  # fmt: skip
    assert json.loads(redeemed.out)["data"]["order_id"] == order_id
    refused = await cli("events", "tail", "--type", "lot.nothing")
    assert refused.refused_with("--type: 'lot.nothing' is not an event type")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")
    unreachable = await cli("events", "tail")
    assert unreachable.code == 3
    assert "cannot reach NATS at nats://127.0.0.1:1: connection refused" in unreachable.err
