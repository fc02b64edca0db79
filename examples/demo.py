"""`./dev demo`: the main job, end to end, in about a minute: a promotion's whole life.

Brings the embedded stack and a worker up, checks and starts the example credit promotion
(`examples/promotions/spring-credit.yaml`) with its schedule and validity shortened to seconds,
shows its progress, redeems and reverses through customers' wallets, then waits while the
promotion's own clock sends reminders and expires what is left, and prints its final report and
where to see it in the Temporal Web UI. The stack and the worker stay up; `./dev down` stops them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from incentives.adapters.db import Pool
from incentives.adapters.migrations import connect_database
from incentives.adapters.settings import Settings
from incentives.app import spec_files
from incentives.app.client import IncentivesClient, connect
from incentives.app.promotions import PromotionsClient, connect_promotions
from incentives.cli import promotion_render, render
from incentives.devstack import commands as devstack
from incentives.devstack.servers import DetachedWorker
from incentives.domain.errors import IncentivesError
from incentives.domain.models import RedeemRequest, ReverseRequest
from incentives.domain.promotions import PromotionTerms, Validity, promotion_workflow_id

SPEC = Path(__file__).parent / "promotions" / "spring-credit.yaml"
# The example's 14-day validity and month of granting, in seconds.
GRANTING = timedelta(seconds=20)
LIFETIME = timedelta(seconds=40)
REMIND_BEFORE = timedelta(seconds=25)

console = render.console()


def step(text: str) -> None:
    console.print(f"\n[bold cyan]▸ {text}[/bold cyan]")


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], deadline_s: float) -> None:
    started = time.monotonic()
    with console.status(f"waiting for {what}…"):
        while not await check():
            if time.monotonic() - started > deadline_s:
                log = DetachedWorker(Settings().home).log_file
                raise TimeoutError(f"{what} did not happen within {deadline_s:.0f}s: is the worker running? ({log})")
            await asyncio.sleep(0.25)
    console.print(f"  [green]✓[/green] {what} after {time.monotonic() - started:.1f}s")


def demo_terms(terms: PromotionTerms, run: str) -> PromotionTerms:
    """The example's terms under a fresh id, starting now, its weeks shortened to seconds."""
    now = datetime.now(UTC)
    validity = Validity(expires_after=LIFETIME, remind_before=REMIND_BEFORE)
    return terms.model_copy(
        update={
            "promotion_id": f"{terms.promotion_id}-{run}",
            "validity": validity,
            "starts_at": now,
            "ends_at": now + GRANTING,
        }
    )


async def start(promotions: PromotionsClient, run: str) -> PromotionTerms:
    spec = spec_files.read_spec(SPEC)
    audience = spec_files.survey(spec_files.audience(spec, SPEC))
    terms = demo_terms(spec.terms, run)
    step(f"Checking {SPEC.name}: valid; the demo starts it now, with its 14 days shortened to {LIFETIME.seconds}s")
    promotion_render.print_check(
        console, terms, audience.size, audience.duplicates, terms.grants_that_fit(audience.size)
    )
    started = await promotions.start(terms, spec_files.audience(spec, SPEC))
    console.print(f"  started workflow {started.workflow_id}: the audience is staged in Postgres, not in its history")
    return terms


async def progress(promotions: PromotionsClient, promotion_id: str) -> None:
    async def granted() -> bool:
        try:
            return (await promotions.status(promotion_id)).state == "active"
        except IncentivesError:
            return False  # not opened yet

    await wait_for("every customer to be granted (set-based batches, no wallet started)", granted, 30)
    promotion_render.print_status(console, await promotions.status(promotion_id))


async def checkout(wallets: IncentivesClient, promotion_id: str) -> None:
    step("Checkout: customers redeem their promotion credit through their wallets; one order is refunded")
    for customer, order_id, total in (("cust-0001", "o-1", 2500), ("cust-0002", "o-2", 400), ("cust-0003", "o-3", 700)):
        redemption = await wallets.redeem(
            RedeemRequest(customer_id=customer, order_id=f"{order_id}-{promotion_id}", currency="USD", total=total)
        )
        render.print_redemption(console, redemption)
    reversal = await wallets.reverse(
        ReverseRequest(customer_id="cust-0003", order_id=f"o-3-{promotion_id}", reversal_id=f"refund-{promotion_id}")
    )
    render.print_reversal(console, reversal)


async def clock(pool: Pool, promotions: PromotionsClient, promotion_id: str) -> None:
    step("Time: the promotion's own clock reminds, expires what is left, ends and closes")

    async def events(kind: str) -> int:
        count: int = await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE promotion_id = $1 AND event_type = $2", promotion_id, kind
        )
        return count

    async def state(wanted: str) -> bool:
        return (await promotions.status(promotion_id)).state == wanted

    await wait_for("the reminders (one set-based tick for every lot)", lambda: _positive(events("reminder")), 40)
    await wait_for("the end of granting", lambda: state("ended"), 40)
    await wait_for("the expiry of what is left", lambda: _positive(events("expired")), 40)
    await wait_for("the promotion to close with its final report", lambda: state("closed"), 40)
    status = await promotions.status(promotion_id)
    promotion_render.print_status(console, status)


async def _positive(count: Awaitable[int]) -> bool:
    return await count > 0


async def run_demo(wallets: IncentivesClient, promotions: PromotionsClient, pool: Pool, ui_url: str | None) -> None:
    run = datetime.now(UTC).strftime("%H%M%S")
    terms = await start(promotions, run)
    await progress(promotions, terms.promotion_id)
    await checkout(wallets, terms.promotion_id)
    step("A customer's wallet, from the ledger: the promotion's lot beside the redemption and the refund")
    render.print_wallet(console, await wallets.wallet("cust-0003"))
    await clock(pool, promotions, terms.promotion_id)
    if ui_url:
        step("The promotion's history (batches, ticks, states), in the Temporal Web UI")
        link = f"{ui_url}/namespaces/default/workflows/{promotion_workflow_id(terms.promotion_id)}"
        console.print(f"  {link}", highlight=False, soft_wrap=True)


async def main() -> None:
    settings = Settings()
    step("Bringing the stack up (Temporal dev server, PostgreSQL, migrations) and a worker")
    current = await devstack.up(settings)
    worker = DetachedWorker(settings.home)
    worker.stop()  # a worker left by an earlier demo may run older code
    pid = worker.start()
    for line in devstack.describe(devstack.status(settings)):
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    console.print(f"  worker pid {pid}, logs in {worker.log_file}", highlight=False, soft_wrap=True)
    pool = await connect_database(settings, max_size=2)
    try:
        async with connect(settings) as wallets, connect_promotions(settings) as promotions:
            await run_demo(wallets, promotions, pool, current.ui_url)
    finally:
        await pool.close()
    step("Done. The stack and the worker keep running.")
    console.print(
        "  try: .venv/bin/incentives promotion list   ·   .venv/bin/incentives wallet cust-0001   ·   stop: ./dev down",
        highlight=False,
    )


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except IncentivesError as error:
        console.print(f"[red]demo failed:[/red] {error}")
        raise SystemExit(1) from None
