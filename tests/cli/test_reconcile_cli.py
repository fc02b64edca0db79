"""`incentives reconcile`: exit 0 on clean books, exit 1 listing each violation; `--last` prints the
scheduled runs' last result (exit 5 while there is none); `--schedule` creates, then updates, the
schedule; bad input exits 2."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.reconcile import ReconcileActivities
from incentives.adapters.db import Pool, create_pool
from incentives.adapters.migrations import migrate
from incentives.app.reconcile import CHECKS
from incentives.devstack.servers import EmbeddedPostgres
from incentives.domain.reconcile import RECONCILE_SCHEDULE_ID, ReconcileRequest
from tests.cli.conftest import Cli
from tests.helpers.books import Books


async def test_the_command_exits_1_listing_violations(cli: Cli, pool: Pool, books: Books) -> None:
    clean = await cli("reconcile", "--customer", books.customer, "--json")
    assert clean.code == 0, clean.err
    assert clean.json()["ok"] is True
    await pool.execute("UPDATE lots SET remaining_minor = remaining_minor - 1 WHERE lot_id = $1", books.big_lot)
    broken = await cli("reconcile", "--customer", books.customer)
    assert broken.code == 1
    assert "1 violations" in broken.out
    assert books.big_lot in broken.out


@dataclass(frozen=True)
class Scheduled:
    """A database of its own (the CLI pointed at it), where "the last scheduled run" is this test's."""

    pool: Pool

    async def record(self, name: str) -> str:
        """Records a run as the scheduled workflow's activity does; returns its workflow id."""
        workflow_id = f"reconcile-{name}"
        await ReconcileActivities(self.pool).reconcile_books(
            ReconcileRequest(workflow_id=workflow_id, run_id=str(uuid.uuid4()))
        )
        return workflow_id


@pytest.fixture
async def scheduled(cli: Cli, postgres: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Scheduled]:
    name = f"reconcile_cli_{uuid.uuid4().hex[:10]}"
    await postgres.create_database(name)
    pool = await create_pool(postgres.url(name), max_size=2)
    try:
        await migrate(pool)
        monkeypatch.setenv("DATABASE_URL", postgres.url(name))
        yield Scheduled(pool)
    finally:
        await pool.close()


async def test_last_says_clearly_that_nothing_is_recorded_yet(cli: Cli, scheduled: Scheduled) -> None:
    for argv in (("reconcile", "--last"), ("reconcile", "--last", "--json")):
        none = await cli(*argv)
        assert (none.code, none.out) == (5, ""), none.err
        assert none.err.startswith("incentives: no scheduled reconcile has been recorded yet: ")
        assert none.err.count("\n") == 1
        assert "Traceback" not in none.err


async def test_last_prints_the_last_result_as_text_and_json(cli: Cli, scheduled: Scheduled) -> None:
    await scheduled.record("earlier")
    latest = await scheduled.record("latest")
    text = await cli("reconcile", "--last")
    assert text.code == 0, text.err
    assert text.out.startswith(f"last scheduled reconcile: {latest}, finished ")
    assert "(under a minute ago)" in text.out
    assert "reconciled the whole database: 0 lots, 0 ledger rows, 7 checks, 0 violations" in text.out
    shown = (await cli("reconcile", "--last", "--json")).json()
    assert (shown["workflow_id"], shown["ok"], shown["violation_count"]) == (latest, True, 0)
    assert shown["checks"] == dict.fromkeys(CHECKS, 0)
    assert {"run_id", "started_at", "finished_at", "lots", "ledger_rows", "violations"} <= shown.keys()


async def test_last_exits_1_listing_what_the_run_found(cli: Cli, scheduled: Scheduled) -> None:
    await scheduled.pool.execute(
        """INSERT INTO promotion_pools (pool_id, currency, cap_minor, committed_minor)
           VALUES ('planted-pool', 'USD', 100, 1)"""
    )
    await scheduled.record("broken")
    text = await cli("reconcile", "--last")
    assert text.code == 1, text.err
    assert "1 violations" in text.out
    assert "violations by check: budgets 1" in text.out
    assert "pool planted-pool" in text.out
    shown = (await cli("reconcile", "--last", "--json")).json()
    assert (shown["ok"], shown["violation_count"], shown["checks"]["budgets"]) == (False, 1, 1)
    assert [violation["subject"] for violation in shown["violations"]] == ["pool planted-pool"]


async def test_schedule_creates_then_updates_the_schedule_on_the_task_queue(
    cli: Cli, dev_server: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = dev_server.client.get_schedule_handle(RECONCILE_SCHEDULE_ID)
    with contextlib.suppress(RPCError):
        await handle.delete()
    monkeypatch.setenv("INCENTIVES_TASK_QUEUE", "reconcile-cli-queue")
    try:
        created = await cli("reconcile", "--schedule")
        assert created.code == 0, created.err
        assert created.out.startswith(
            "created the schedule incentives-reconcile: the books reconciled every 1h by workflow Reconcile "
            "on task queue reconcile-cli-queue"
        )
        updated = await cli("reconcile", "--schedule", "--every", "6h", "--json")
        assert updated.code == 0, updated.err
        assert updated.json() == {
            "schedule_id": RECONCILE_SCHEDULE_ID,
            "created": False,
            "paused": False,
            "every": "6h",
            "workflow": "Reconcile",
            "task_queue": "reconcile-cli-queue",
        }
        described = (await handle.describe()).schedule
        assert [interval.every.total_seconds() for interval in described.spec.intervals] == [6 * 3600]
        assert isinstance(described.action, ScheduleActionStartWorkflow)
        assert described.action.task_queue == "reconcile-cli-queue"
    finally:
        with contextlib.suppress(RPCError):
            await handle.delete()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--schedule", "--every", "30s"), "--every: 30s is not from 1m to 1d"),
        (("--schedule", "--every", "2d"), "--every: 2d is not from 1m to 1d"),
        (("--schedule", "--every", "soon"), "--every: 'soon' is not a duration"),
        (("--last", "--every", "1h"), "--every: goes with --schedule"),
        (("--last", "--customer", "alice"), "argument --customer: not allowed with argument --last"),
        (("--schedule", "--last"), "argument --last: not allowed with argument --schedule"),
    ],
)
async def test_bad_input_exits_2_and_reaches_no_server(offline_cli: Cli, argv: tuple[str, ...], message: str) -> None:
    result = await offline_cli("reconcile", *argv)
    assert result.refused_with(message), result
