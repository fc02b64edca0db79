"""The relay against the real servers: every ledger change reaches the stream as a CloudEvent, in
order per customer, never skipped when a transaction commits late, once per event id."""

from __future__ import annotations

from nats.js import JetStreamContext
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool, connect_one
from incentives.app.relay import Relay
from incentives.devstack.servers import EmbeddedNats
from incentives.domain.events import subject_token
from incentives.domain.models import ReverseRequest, RevokeRequest
from tests.helpers import eventually, running_wallets
from tests.helpers.builders import NewId, credit, order
from tests.helpers.events import SOURCE, broker, conforms, running_relay, stream_events


async def all_published(pool: Pool, customer: str) -> None:
    left = await pool.fetchval("SELECT count(*) FROM outbox WHERE customer_id = $1 AND published_at IS NULL", customer)
    assert left == 0, f"{left} events of {customer} not published yet"


async def customer_events(js: JetStreamContext, customer: str) -> list[tuple[dict[str, object], dict[str, str]]]:
    return await stream_events(js, f"incentives.*.*.{subject_token(customer)}")


class TestDelivery:
    async def test_every_change_of_a_customer_reaches_the_stream_in_order_as_a_cloud_event(
        self,
        dev_server: WorkflowEnvironment,
        pool: Pool,
        worker_pool: Pool,
        worker_database_url: str,
        nats_server: EmbeddedNats,
        new_id: NewId,
    ) -> None:
        customer, lot_a, lot_b, order_id = f"{new_id('c')}.with.dots", new_id("a"), new_id("b"), new_id("o")
        async with running_wallets(dev_server.client, worker_pool) as wallets:
            await wallets.grant(credit(lot_a, customer, 1000, expires_in_days=10))
            await wallets.grant(credit(lot_b, customer, 500, expires_in_days=20))
            await wallets.redeem(order(customer, order_id, 1200))
            reverse = ReverseRequest(customer_id=customer, order_id=order_id, reversal_id=new_id("r"), amount=300)
            await wallets.reverse(reverse)
            await wallets.revoke(RevokeRequest(customer_id=customer, lot_id=lot_b, reason="support"))
        async with broker(nats_server) as (_, js), running_relay(js, worker_database_url):
            await eventually(lambda: all_published(pool, customer), timeout=20)
            events = await customer_events(js, customer)
        rows = await pool.fetch("SELECT event_id FROM outbox WHERE customer_id = $1 ORDER BY event_id", customer)
        assert [event["id"] for event, _ in events] == [str(row["event_id"]) for row in rows]
        assert [event["type"] for event, _ in events] == [
            "incentives.lot.granted",
            "incentives.lot.granted",
            "incentives.order.redeemed",
            "incentives.order.reversed",
            "incentives.lot.revoked",
        ]
        for event, headers in events:
            conforms(event)
            assert headers["Nats-Msg-Id"] == event["id"]
            assert headers["subject"].endswith("." + subject_token(customer))
            assert "." not in subject_token(customer)
            assert (event["specversion"], event["source"], event["subject"]) == ("1.0", SOURCE, customer)
            assert event["datacontenttype"] == "application/json"
        granted = events[0][0]["data"]
        assert isinstance(granted, dict)
        assert (granted["lot_id"], granted["amount"], granted["currency"], granted["change"]) == (
            lot_a,
            1000,
            "USD",
            1000,
        )


class TestNeverSkipped:
    async def test_an_event_whose_transaction_commits_late_is_delivered_after_the_ones_that_committed_first(
        self, pool: Pool, worker_database_url: str, nats_server: EmbeddedNats, new_id: NewId
    ) -> None:
        """A relay that read "ids after the last one published" would skip the late one: its id is
        lower, and it became visible after the higher ids were published."""
        late_customer, early_customer = new_id("late"), new_id("early")
        async with broker(nats_server) as (_, js), running_relay(js, worker_database_url), pool.acquire() as slow:
            transaction = slow.transaction()
            await transaction.start()
            await _event(slow, late_customer)  # the lower id, not committed yet
            for _ in range(3):
                await _event(pool, early_customer)  # higher ids, committed now
            await eventually(lambda: all_published(pool, early_customer), timeout=20)
            assert await customer_events(js, late_customer) == []
            await transaction.commit()
            await eventually(lambda: all_published(pool, late_customer), timeout=20)
            late = await customer_events(js, late_customer)
            early = await customer_events(js, early_customer)
        assert len(late) == 1
        assert int(str(late[0][0]["id"])) < min(int(str(event["id"])) for event, _ in early)


async def _event(conn: object, customer: str) -> None:
    await conn.execute(  # type: ignore[attr-defined]
        """INSERT INTO outbox (event_type, customer_id, payload)
           VALUES ('redeemed', $1, jsonb_build_object('customer_id', $1::text))""",
        customer,
    )


class TestRoundsBeside:
    async def test_the_next_round_read_beside_nothing_in_flight_is_every_unpublished_event(
        self, pool: Pool, worker_database_url: str, nats_server: EmbeddedNats, new_id: NewId
    ) -> None:
        """A full round whose every event was left out (their customers' earlier events failed to
        publish) has nothing in flight when the next one is read beside it: that read is every
        unpublished event, from the first."""
        customer = new_id("c")
        async with pool.acquire() as writer:
            for _ in range(2):
                await _event(writer, customer)
        first, second = await pool.fetch("SELECT event_id FROM outbox WHERE customer_id = $1 ORDER BY 1", customer)
        async with broker(nats_server) as (_, js):
            relay = Relay(lambda: connect_one(worker_database_url), js, source=SOURCE, batch=1_000_000)
            reader = await connect_one(worker_database_url)
            try:
                nothing_in_flight = await relay.read_beside(reader, [])
                first_in_flight = await relay.read_beside(reader, [first["event_id"]])
            finally:
                await reader.close()
        unpublished = await pool.fetch("SELECT event_id FROM outbox WHERE published_at IS NULL ORDER BY 1")
        assert [row["event_id"] for row in nothing_in_flight] == [row["event_id"] for row in unpublished]
        assert [row["event_id"] for row in first_in_flight if row["customer_id"] == customer] == [second["event_id"]]
