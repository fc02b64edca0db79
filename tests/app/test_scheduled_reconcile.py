"""The books reconciled on a schedule: the `Reconcile` workflow and its activity record one result per
run (a retry, even two racing, returns the first), a planted violation shows in it, a disastrous run
keeps a few violations and whole counts; the schedule is created, then updated (keeping a pause),
hourly with overlap SKIP, and a trigger with a worker running records a result.

Each test has a database of its own: "the last result" and the whole-database counts are then the
test's own, and the session's database, which other tests break on purpose, stays out of them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleHandle, ScheduleOverlapPolicy
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.reconcile import ReconcileActivities
from incentives.adapters.db import Pool, create_pool
from incentives.adapters.migrations import migrate
from incentives.adapters.reconcile_schedule import CATCHUP_WINDOW, RUN_TIMEOUT
from incentives.adapters.settings import WORKER_ROLE
from incentives.app.reconcile import CHECKS, ScheduleOutcome, ensure_reconcile_schedule, last_reconcile
from incentives.devstack.servers import EmbeddedPostgres
from incentives.domain.reconcile import (
    RECONCILE_SCHEDULE_ID,
    RECONCILE_WORKFLOW,
    RECONCILE_WORKFLOW_ID,
    VIOLATIONS_KEPT_PER_CHECK,
    ReconcileRequest,
    ReconcileRun,
    ReconcileSummary,
)
from tests.helpers import eventually, running_wallets
from tests.helpers.builders import NewId, credit
from workflows.reconcile import ReconcileWorkflow


@dataclass(frozen=True)
class Books:
    owner: Pool  # plants faults, reads results
    worker: Pool  # the worker's role, as the activity runs
    task_queue: str  # a worker on this database polls it
    lot_id: str  # the one lot: 1 lot, 1 ledger row


@pytest.fixture
async def books(dev_server: WorkflowEnvironment, postgres: EmbeddedPostgres, new_id: NewId) -> AsyncIterator[Books]:
    """A database of its own, with one credit granted through a wallet, and a worker on it."""
    name = f"reconcile_{uuid.uuid4().hex[:10]}"
    await postgres.create_database(name)
    owner = await create_pool(postgres.url(name), max_size=4)
    await migrate(owner)
    worker = await create_pool(postgres.url(name, user=WORKER_ROLE), max_size=4)
    try:
        async with running_wallets(dev_server.client, worker) as wallets:
            lot_id = new_id("lot")
            await wallets.grant(credit(lot_id, new_id("c"), 1000, expires_in_days=30))
            yield Books(owner, worker, wallets.task_queue, lot_id)
    finally:
        await worker.close()
        await owner.close()


@pytest.fixture
async def schedule(dev_server: WorkflowEnvironment) -> AsyncIterator[ScheduleHandle]:
    """The schedule's handle, with no schedule there before or after the test (its id is fixed)."""
    handle = dev_server.client.get_schedule_handle(RECONCILE_SCHEDULE_ID)
    with contextlib.suppress(RPCError):
        await handle.delete()
    yield handle
    with contextlib.suppress(RPCError):
        await handle.delete()


async def run_once(client: Client, books: Books) -> ReconcileSummary:
    return await client.execute_workflow(
        ReconcileWorkflow.run, id=f"{RECONCILE_WORKFLOW_ID}-test-{uuid.uuid4().hex[:8]}", task_queue=books.task_queue
    )


async def last(books: Books) -> ReconcileRun:
    run = await last_reconcile(books.owner)
    assert run is not None
    return run


async def test_a_run_records_its_result_once_and_a_retry_returns_the_first(
    dev_server: WorkflowEnvironment, books: Books
) -> None:
    assert await last_reconcile(books.owner) is None
    summary = await run_once(dev_server.client, books)
    assert summary.model_dump(exclude={"run_id"}) == {
        "lots": 1,
        "ledger_rows": 1,
        "checks": dict.fromkeys(CHECKS, 0),
        "violations": 0,
    }
    recorded = await last(books)
    assert (recorded.run_id, recorded.ok) == (summary.run_id, True)

    # A retry of that run's activity after the books broke: the first result, nothing written.
    await books.owner.execute("UPDATE lots SET remaining_minor = remaining_minor - 1 WHERE lot_id = $1", books.lot_id)
    activities = ReconcileActivities(books.worker)
    retry = ReconcileRequest(workflow_id=recorded.workflow_id, run_id=recorded.run_id)
    assert await activities.reconcile_books(retry) == summary
    assert await books.owner.fetchval("SELECT count(*) FROM reconcile_runs") == 1
    assert await last(books) == recorded

    # Two attempts of another run racing (neither has seen the other's row): one row, one answer.
    racing = ReconcileRequest(workflow_id="reconcile-racing", run_id=str(uuid.uuid4()))
    first, second = await asyncio.gather(*(activities.reconcile_books(racing) for _ in range(2)))
    assert first == second
    assert first.violations == 1
    assert await books.owner.fetchval("SELECT count(*) FROM reconcile_runs WHERE run_id = $1", racing.run_id) == 1


async def test_a_planted_violation_shows_in_the_recorded_result(dev_server: WorkflowEnvironment, books: Books) -> None:
    clean = await run_once(dev_server.client, books)
    await books.owner.execute("UPDATE lots SET remaining_minor = remaining_minor - 1 WHERE lot_id = $1", books.lot_id)
    broken = await run_once(dev_server.client, books)
    assert (broken.violations, broken.checks["lot_balance"]) == (1, 1)
    recorded = await last(books)
    assert recorded.run_id == broken.run_id != clean.run_id
    assert [(v.check, v.subject) for v in recorded.violations] == [("lot_balance", books.lot_id)]
    assert recorded.finished_at >= recorded.started_at


async def test_a_disastrous_run_keeps_a_few_violations_of_each_check_and_whole_counts(
    dev_server: WorkflowEnvironment, books: Books
) -> None:
    """Redeem rows with no event and no redemption: one outbox violation each, and the lot's balance off."""
    planted = VIOLATIONS_KEPT_PER_CHECK + 5
    await books.owner.execute(
        """INSERT INTO ledger_entries (entry_type, lot_id, customer_id, order_id, amount_minor, currency)
           SELECT 'redeem', lot_id, customer_id, 'planted-' || n, -1, 'USD'
           FROM lots, generate_series(1, $2) AS n WHERE lot_id = $1""",
        books.lot_id,
        planted,
    )
    summary = await run_once(dev_server.client, books)
    assert (summary.checks["outbox"], summary.checks["lot_balance"], summary.violations) == (
        planted,
        1,
        planted + 1,
    )
    recorded = await last(books)
    kept = [violation.check for violation in recorded.violations]
    assert (kept.count("outbox"), kept.count("lot_balance")) == (VIOLATIONS_KEPT_PER_CHECK, 1)
    stored = await books.owner.fetchrow(
        "SELECT violation_count, jsonb_array_length(violations) AS kept FROM reconcile_runs WHERE run_id = $1",
        summary.run_id,
    )
    assert stored is not None
    assert (stored["violation_count"], stored["kept"]) == (planted + 1, VIOLATIONS_KEPT_PER_CHECK + 1)


async def test_the_schedule_is_hourly_skips_overlaps_and_a_trigger_records_a_result(
    dev_server: WorkflowEnvironment, books: Books, schedule: ScheduleHandle
) -> None:
    first = await ensure_reconcile_schedule(dev_server.client, books.task_queue)
    again = await ensure_reconcile_schedule(dev_server.client, books.task_queue)
    assert (first, again) == (ScheduleOutcome(created=True, paused=False), ScheduleOutcome(created=False, paused=False))
    described = (await schedule.describe()).schedule
    assert [interval.every for interval in described.spec.intervals] == [timedelta(hours=1)]
    assert (described.policy.overlap, described.policy.catchup_window) == (ScheduleOverlapPolicy.SKIP, CATCHUP_WINDOW)
    action = described.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.task_queue, action.execution_timeout) == (
        RECONCILE_WORKFLOW,
        books.task_queue,
        RUN_TIMEOUT,
    )

    await schedule.trigger()

    async def recorded() -> ReconcileRun:
        run = await last_reconcile(books.owner)
        assert run is not None, "no run recorded yet"
        return run

    run = await eventually(recorded, timeout=30)
    assert run.workflow_id.startswith(f"{RECONCILE_WORKFLOW_ID}-")
    assert run.ok


async def test_an_update_keeps_an_operators_pause_and_takes_the_new_interval(
    dev_server: WorkflowEnvironment, schedule: ScheduleHandle
) -> None:
    await ensure_reconcile_schedule(dev_server.client, "some-queue")
    await schedule.pause(note="maintenance until noon")
    outcome = await ensure_reconcile_schedule(dev_server.client, "other-queue", timedelta(hours=6))
    assert outcome == ScheduleOutcome(created=False, paused=True)
    described = (await schedule.describe()).schedule
    assert (described.state.paused, described.state.note) == (True, "maintenance until noon")
    assert [interval.every for interval in described.spec.intervals] == [timedelta(hours=6)]
    assert isinstance(described.action, ScheduleActionStartWorkflow)
    assert described.action.task_queue == "other-queue"
