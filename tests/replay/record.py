"""Records wallet, promotion and scheduled reconcile histories from real runs, for the replay tests:
`./dev corpus` (`--promotions-only` re-records only the promotions, `--reconcile-only` only the
scheduled reconcile).

Starts its own Postgres and Temporal dev servers (nothing shared with a running stack), drives one
wallet or promotion per scenario through the real worker, and writes each run's history as JSON
next to this file. Re-record only on purpose: the committed histories are what running wallets look like, and
the point of replaying them is that new code must still accept them. `histories/regular_ledger_calls/`
holds the generation recorded before the `local-ledger-calls` patch, by the code of that time: it
cannot be regenerated, and stays as long as the patch's old branch does; so do `local_ledger_calls/`
(before `first-call-loads`), `first_call_loads/` (before `batched-redeems`), `promotions/`
(before `paired-batches`) and `paired_batches/` (before `steerable-batches` and `revoke-after-cancel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client, ScheduleActionExecutionStartWorkflow, WorkflowExecutionStatus

from incentives.adapters.db import Pool, create_pool
from incentives.adapters.migrations import migrate
from incentives.app.client import IncentivesClient
from incentives.app.promotions import PromotionsClient
from incentives.app.reconcile import ensure_reconcile_schedule
from incentives.app.worker import build_worker
from incentives.devstack.servers import EmbeddedPostgres, start_dev_server
from incentives.domain.errors import Rejected, UnknownLot
from incentives.domain.models import CouponTerms, GrantRequest, RedeemRequest, ReverseRequest, RevokeRequest, wallet_id
from incentives.domain.promotions import Budget, PromotionStatus, PromotionTerms, Validity, promotion_workflow_id
from incentives.domain.reconcile import RECONCILE_SCHEDULE_ID
from tests.helpers import eventually
from tests.helpers.builders import credit

HISTORIES = Path(__file__).parent / "histories"
# Where this code's histories go: each generation of workflow code keeps its own folder, and
# every folder keeps replaying (wallets: batched_redeems; promotions: paired_batches).
HERE = HISTORIES / "batched_redeems"
PROMOTIONS_HERE = HISTORIES / "steerable_batches"
RECONCILE_HERE = HISTORIES / "reconcile"
Scenario = Callable[[IncentivesClient, str], Awaitable[None]]
PromotionScenario = Callable[[PromotionsClient, str, Pool], Awaitable[None]]


async def operations(wallets: IncentivesClient, customer: str) -> None:
    """Every operation, each kind of rejection that reaches history, and a retried call."""
    await wallets.grant(credit(f"{customer}-a", customer, 1000, expires_in=timedelta(days=30)))
    await wallets.grant(credit(f"{customer}-a", customer, 1000, expires_in=timedelta(days=30)))
    await wallets.grant(
        GrantRequest(
            lot_id=f"{customer}-cpn",
            customer_id=customer,
            currency="USD",
            kind="coupon",
            coupon=CouponTerms(percent_off=20, cap=500, min_order=1000),
        )
    )
    redeem = RedeemRequest(
        customer_id=customer, order_id="o1", currency="USD", total=3000, coupon_lot_id=f"{customer}-cpn"
    )
    await wallets.redeem(redeem)
    await wallets.redeem(redeem)
    await wallets.reverse(ReverseRequest(customer_id=customer, order_id="o1", reversal_id="r1", amount=300))
    await wallets.revoke(RevokeRequest(customer_id=customer, lot_id=f"{customer}-a", reason="support"))
    for rejected in (
        wallets.redeem(RedeemRequest(customer_id=customer, order_id="o2", currency="USD", total=100)),
        wallets.revoke(RevokeRequest(customer_id=customer, lot_id="unknown", reason="x")),
        wallets.reverse(ReverseRequest(customer_id=customer, order_id="unknown", reversal_id="r9")),
    ):
        with contextlib.suppress(Rejected):
            await rejected


async def timers(wallets: IncentivesClient, customer: str) -> None:
    """A pending lot that activates, a reminder, an expiry, and the wallet completing."""
    soon = datetime.now(UTC) + timedelta(seconds=1)
    await wallets.grant(credit(f"{customer}-later", customer, 300, effective_at=soon, expires_in=timedelta(seconds=3)))
    await wallets.grant(
        credit(f"{customer}-soon", customer, 500, expires_in=timedelta(seconds=4), remind_before=timedelta(seconds=2))
    )
    await wallets.redeem(RedeemRequest(customer_id=customer, order_id="o1", currency="USD", total=200))


async def many_updates(wallets: IncentivesClient, customer: str) -> None:
    """Enough updates, some concurrent, to continue-as-new (the server suggests it after 40 events);
    concurrent redeems go to the ledger together, and the last burst asks for more than is left,
    so some of a batch are refused."""
    for i in range(4):
        await wallets.grant(credit(f"{customer}-{i}", customer, 1000))
    for burst, total in ((0, 100), (1, 100), (2, 600)):
        answers = await asyncio.gather(
            *(
                wallets.redeem(
                    RedeemRequest(customer_id=customer, order_id=f"o{burst}-{i}", currency="USD", total=total)
                )
                for i in range(12)
            ),
            return_exceptions=True,
        )
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, Rejected):
                raise answer


def _terms(promotion_id: str, **budget: int) -> PromotionTerms:
    """Lots effective a second after their wave, reminded at 3 s, expiring at 5 s."""
    starts_at = datetime.now(UTC) + timedelta(seconds=1)
    return PromotionTerms(
        promotion_id=promotion_id,
        name=f"replay {promotion_id}",
        kind="credit",
        currency="USD",
        amount=1000,
        validity=Validity(
            effective_after=timedelta(seconds=1), expires_after=timedelta(seconds=5), remind_before=timedelta(seconds=2)
        ),
        budget=Budget(amount=budget.pop("amount", 10**9), **budget),
        starts_at=starts_at,
        ends_at=starts_at + timedelta(seconds=4),
    )


async def promotion_lifecycle(promotions: PromotionsClient, promotion_id: str, pool: Pool) -> None:
    """Scheduled, granting in batches (continue-as-new among them), budget met, pause, resume,
    add-audience, extend, the clock's ticks, ended, closed with its report."""
    await promotions.start(_terms(promotion_id, amount=25_000), [f"c{i}" for i in range(30)])
    await _until(promotions, promotion_id, lambda status: status.processed >= 3)
    await promotions.pause(promotion_id)
    await promotions.resume(promotion_id)
    await promotions.add_audience(promotion_id, ["late-1", "late-2"])
    status = await promotions.status(promotion_id)
    assert status.ends_at is not None, "the scenario's terms give an end"
    await promotions.extend(promotion_id, status.ends_at + timedelta(seconds=1))


async def promotion_cancelled(promotions: PromotionsClient, promotion_id: str, pool: Pool) -> None:
    """Cancelled while granting (the batches in flight are cancelled), then cancelled again with
    its outstanding lots revoked, then closed."""
    await promotions.start(_terms(promotion_id), [f"c{i}" for i in range(12)])
    await _until(promotions, promotion_id, lambda status: status.granted >= 3)
    await promotions.cancel(promotion_id)
    await promotions.cancel(promotion_id, revoke_outstanding=True)


async def promotion_failed(promotions: PromotionsClient, promotion_id: str, pool: Pool) -> None:
    """A batch the database refuses for good (a constraint planted for one customer): the promotion
    fails with its reason, then is cancelled with its outstanding lots revoked, and closes."""
    constraint = f"refuse_{promotion_id.replace('-', '_')}"
    await pool.execute(f"ALTER TABLE lots ADD CONSTRAINT {constraint} CHECK (customer_id <> 'c5') NOT VALID")
    try:
        await promotions.start(_terms(promotion_id), [f"c{i}" for i in range(8)])
        await _until(promotions, promotion_id, lambda status: status.state == "failed")
        await promotions.cancel(promotion_id, revoke_outstanding=True)
    finally:
        await pool.execute(f"ALTER TABLE lots DROP CONSTRAINT {constraint}")


async def promotion_without_schedule(promotions: PromotionsClient, promotion_id: str, pool: Pool) -> None:
    """No schedule: granting starts at once, and the promotion ends when its last lot expires."""
    terms = _terms(promotion_id).model_copy(update={"starts_at": None, "ends_at": None})
    await promotions.start(terms, [f"c{i}" for i in range(5)])


async def _until(promotions: PromotionsClient, promotion_id: str, done: Callable[[PromotionStatus], bool]) -> None:
    async def check() -> None:
        try:
            status = await promotions.status(promotion_id)
        except UnknownLot as error:
            raise AssertionError(str(error)) from None
        assert done(status), status

    await eventually(check, timeout=60)


async def record_promotion(name: str, scenario: PromotionScenario, pool_url: str) -> None:
    env = await start_dev_server()
    async with env:
        pool = await create_pool(pool_url)
        try:
            task_queue, promotion_id = f"record-{name}", f"replay-{name}"
            async with build_worker(env.client, pool, task_queue):
                promotions = PromotionsClient(env.client, pool, task_queue=task_queue, batch_size=2, history_limit=60)
                await scenario(promotions, promotion_id, pool)
                await _wait_closed(env.client, promotion_workflow_id(promotion_id))
            await _write_runs(env.client, promotion_workflow_id(promotion_id), PROMOTIONS_HERE, name)
        finally:
            await pool.close()


async def record_reconcile(pool_url: str) -> None:
    """The schedule created and triggered once, a worker running: one `Reconcile` run, its activity
    recording the books' result, its summary."""
    env = await start_dev_server()
    async with env:
        pool = await create_pool(pool_url)
        try:
            task_queue = "record-reconcile"
            async with build_worker(env.client, pool, task_queue):
                await ensure_reconcile_schedule(env.client, task_queue)
                schedule = env.client.get_schedule_handle(RECONCILE_SCHEDULE_ID)
                await schedule.trigger()

                async def started() -> str:
                    actions = (await schedule.describe()).info.recent_actions
                    assert actions, "the trigger has not started a run yet"
                    action = actions[-1].action
                    assert isinstance(action, ScheduleActionExecutionStartWorkflow)
                    return action.workflow_id

                workflow_id = await eventually(started, timeout=30)
                await _wait_closed(env.client, workflow_id)
            await _write_runs(env.client, workflow_id, RECONCILE_HERE, "reconcile")
        finally:
            await pool.close()


async def record(name: str, scenario: Scenario, extra_args: list[str], pool_url: str, until_closed: bool) -> None:
    env = await start_dev_server(*extra_args)
    async with env:
        pool = await create_pool(pool_url)
        try:
            task_queue = f"record-{name}"
            customer = f"replay-{name}"
            async with build_worker(env.client, pool, task_queue):
                wallets = IncentivesClient(
                    env.client, pool, task_queue=task_queue, reversal_window=timedelta(seconds=6)
                )
                await scenario(wallets, customer)
                if until_closed:
                    await _wait_closed(env.client, wallet_id(customer))
            await _write_runs(env.client, wallet_id(customer), HERE, f"wallet_{name}")
        finally:
            await pool.close()


async def _wait_closed(client: Client, workflow_id: str) -> None:
    handle = client.get_workflow_handle(workflow_id)

    async def closed() -> None:
        assert (await handle.describe()).status != WorkflowExecutionStatus.RUNNING, f"{workflow_id} still runs"

    await eventually(closed, timeout=60)


async def _write_runs(client: Client, workflow_id: str, directory: Path, name: str) -> None:
    runs = [execution async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    for index, execution in enumerate(sorted(runs, key=lambda e: e.start_time)):
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        if len(history.events) < 3:
            continue  # a run the worker had not picked up yet: nothing to replay
        directory.mkdir(exist_ok=True)
        path = directory / f"{name}_{index}.json"
        path.write_text(history.to_json() + "\n")
        print(f"wrote {path.relative_to(HISTORIES.parents[2])} ({len(history.events)} events)")


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        postgres = EmbeddedPostgres(Path(directory) / "pg")
        postgres.start()
        try:
            await postgres.create_database()
            pool = await create_pool(postgres.url())
            await migrate(pool)
            await pool.close()
            if "--promotions-only" not in sys.argv:
                await record_reconcile(postgres.url())
            if "--reconcile-only" in sys.argv:
                return
            await record_promotion("promotion_lifecycle", promotion_lifecycle, postgres.url())
            await record_promotion("promotion_cancelled", promotion_cancelled, postgres.url())
            await record_promotion("promotion_failed", promotion_failed, postgres.url())
            await record_promotion("promotion_without_schedule", promotion_without_schedule, postgres.url())
            if "--promotions-only" in sys.argv:
                return
            await record("operations", operations, [], postgres.url(), until_closed=False)
            await record("timers", timers, [], postgres.url(), until_closed=True)
            await record(
                "continue_as_new",
                many_updates,
                ["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=40"],
                postgres.url(),
                until_closed=False,
            )
        finally:
            postgres.stop()


if __name__ == "__main__":
    asyncio.run(main())
