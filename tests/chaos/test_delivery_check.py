"""The chaos run's delivery check can fail: an event missing, doubled, invented or altered in the
stream, one stored after an event whose transaction had seen it committed, a transaction's events
out of their order, and a lot's event ahead of its grant are each reported; two concurrent
transactions' events in either order are not. What a transaction saw is judged as Postgres judges
it (`pg_visible_in_snapshot`), checked against Postgres itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from chaos.books import Verdict
from chaos.delivery import Seen, Written, judge_delivery, judge_order
from incentives.adapters.db import Pool
from incentives.app.relay import cloud_event

SOURCE = "/chaos-test"


def written(event_id: int, xact: int, saw: str, event_type: str = "redeemed", lot_id: str | None = None) -> Written:
    return Written(event_id, event_type, lot_id, xact, Seen.parse(saw))


# Transactions 100 (a promotion's batch: event 1) and 101 (a redeem: event 2) ran side by side:
# neither saw the other. 102 (a later redeem: event 3) began after both had committed.
BATCH = written(1, 100, "100:102:101", "granted", "l1")
REDEEM = written(2, 101, "100:102:100")
LATER = written(3, 102, "102:102:")


def judged(events: list[Written]) -> Verdict:
    verdict = Verdict()
    judge_order("c1", events, verdict)
    return verdict


def test_events_in_the_order_their_transactions_saw_pass() -> None:
    verdict = judged([BATCH, REDEEM, LATER])
    assert verdict.violations == []
    assert verdict.checked["events of concurrent transactions out of id order"] == 0


def test_two_concurrent_transactions_events_in_either_order_pass() -> None:
    verdict = judged([REDEEM, BATCH, LATER])
    assert verdict.violations == []
    assert verdict.checked["events of concurrent transactions out of id order"] == 1


def test_an_event_stored_after_one_whose_transaction_saw_it_committed_is_reported() -> None:
    assert judged([BATCH, LATER, REDEEM]).by_check["delivered"] == [
        "c1: event 2 (redeemed) after 3 (redeemed), whose transaction saw it committed"
    ]


def test_one_transactions_events_in_their_order_pass_and_out_of_it_are_reported() -> None:
    # A transaction's snapshot does not list the transaction itself among those running.
    first, second = written(4, 103, "103:104:"), written(5, 103, "103:104:", "expired", "l1")
    assert judged([BATCH, first, second]).violations == []
    assert judged([BATCH, second, first]).by_check["delivered"] == ["c1: event 4 after 5, one transaction's"]


def test_a_lots_event_ahead_of_its_grant_is_reported() -> None:
    # A grant concurrent with the expiry would be impossible in the engine (an expiry is written
    # after its lot is visible); the grant check stands on its own all the same.
    expiry = written(6, 104, "100:100:", "expired", "l1")
    assert judged([expiry, BATCH]).by_check["delivered"] == ["c1: lot l1's expired before its granted"]


@pytest.fixture
def outbox() -> dict[str, dict[str, Any]]:
    committed = datetime(2026, 12, 4, 12, tzinfo=UTC)
    rows = [
        (1, "granted", "l1", '{"lot_id":"l1","change":500}', "100", "100:102:101"),
        (2, "redeemed", None, '{"order_id":"o1"}', "101", "100:102:100"),
        (3, "expired", "l1", '{"lot_id":"l1","change":-100}', "102", "102:102:"),
    ]
    return {
        str(event_id): {
            "event_id": event_id,
            "event_type": event_type,
            "customer_id": "c.1",
            "promotion_id": None,
            "lot_id": lot_id,
            "payload": payload,
            "committed_at": committed,
            "xact": xact,
            "saw": saw,
        }
        for event_id, event_type, lot_id, payload, xact, saw in rows
    }


def stream_of(outbox: dict[str, dict[str, Any]], ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
    messages = []
    for event_id in ids:
        subject, data, _ = cloud_event(outbox[event_id], SOURCE)
        messages.append((subject, json.loads(data)))
    return messages


def test_the_whole_outbox_once_passes_and_is_returned_per_subject(outbox: dict[str, dict[str, Any]]) -> None:
    verdict = Verdict()
    published = judge_delivery(outbox, stream_of(outbox, ["1", "2", "3"]), verdict)
    assert verdict.violations == []
    assert verdict.checked["events delivered"] == 3
    assert [event.event_id for event in published["c.1"]] == [1, 2, 3]


def _drop(messages: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return messages[:2]


def _double(messages: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [*messages, messages[1]]


def _invent(messages: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    subject, event = messages[1]
    return [*messages, (subject, event | {"id": "99"})]


def _alter(messages: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    subject, event = messages[1]
    return [messages[0], (subject, event | {"data": {"order_id": "o2"}}), messages[2]]


@pytest.mark.parametrize(
    ("change", "found"),
    [
        (_drop, "event 3 (expired) never reached the stream"),
        (_double, "event 2 is in the stream 2 times"),
        (_invent, "event 99 (incentives.order.redeemed) is in the stream, not in the outbox"),
        (_alter, "event 2: the stream's differs from the outbox's"),
    ],
    ids=["missing", "twice", "invented", "altered"],
)
def test_a_stream_that_differs_from_the_outbox_is_reported(
    outbox: dict[str, dict[str, Any]],
    change: Callable[[list[tuple[str, dict[str, Any]]]], list[tuple[str, dict[str, Any]]]],
    found: str,
) -> None:
    verdict = Verdict()
    judge_delivery(outbox, change(stream_of(outbox, ["1", "2", "3"])), verdict)
    assert verdict.by_check["delivered"] == [found]


async def test_what_a_snapshot_sees_is_what_postgres_says(pool: Pool) -> None:
    """A transaction left open while a snapshot is taken, then committed: the snapshot does not see
    it, a later one does, and every other transaction of the moment is judged as Postgres does."""
    async with pool.acquire() as open_one, pool.acquire() as observer:
        transaction = open_one.transaction()
        await transaction.start()
        try:
            pending = int(await open_one.fetchval("SELECT pg_current_xact_id()::text"))
            before = await observer.fetchval("SELECT pg_current_snapshot()::text")
        finally:
            await transaction.commit()
        after = await observer.fetchval("SELECT pg_current_snapshot()::text")
        for snapshot in (before, after):
            for xact in range(max(pending - 3, 3), pending + 3):
                postgres = await observer.fetchval(
                    "SELECT pg_visible_in_snapshot($1::text::xid8, $2::text::pg_snapshot)", str(xact), snapshot
                )
                assert Seen.parse(snapshot).sees(xact) == postgres, (xact, snapshot)
    assert not Seen.parse(before).sees(pending)
    assert Seen.parse(after).sees(pending)
