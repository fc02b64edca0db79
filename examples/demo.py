"""`./dev demo`: the main job, end to end, in about a minute.

Brings the embedded stack and a worker up, grants credits (one pending, one expiring soon) and a
percent coupon to three customers, redeems, partially reverses, cancels an order, revokes a lot,
then waits while a reminder and an expiry happen for real on the wallets' durable timers. Prints
every wallet and its ledger, and where to see the wallets' histories in the Temporal Web UI.
The stack and the worker stay up afterwards; `./dev down` stops them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from incentives.adapters.db import Pool
from incentives.adapters.migrations import connect_database
from incentives.adapters.settings import Settings
from incentives.app.client import IncentivesClient, connect
from incentives.cli import render
from incentives.devstack import commands as devstack
from incentives.devstack.servers import DetachedWorker
from incentives.domain.errors import IncentivesError, Rejected
from incentives.domain.models import CouponTerms, GrantRequest, RedeemRequest, ReverseRequest, RevokeRequest
from incentives.domain.money import format_money

REMIND_AFTER = timedelta(seconds=15)
EXPIRE_AFTER = timedelta(seconds=40)
ACTIVATE_AFTER = timedelta(seconds=8)

console = render.console()


def step(text: str) -> None:
    console.print(f"\n[bold cyan]▸ {text}[/bold cyan]")


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], deadline_s: float) -> None:
    started = time.monotonic()
    with console.status(f"waiting for {what}…"):
        while not await check():
            if time.monotonic() - started > deadline_s:
                raise TimeoutError(
                    f"{what} did not happen within {deadline_s:.0f}s: is the worker running? ({DetachedWorker(Settings().home).log_file})"
                )
            await asyncio.sleep(0.25)
    console.print(f"  [green]✓[/green] {what} after {time.monotonic() - started:.1f}s")


async def run_demo(wallets: IncentivesClient, pool: Pool, ui_url: str | None) -> None:
    run = datetime.now(UTC).strftime("%H%M%S")
    alice, bob, carol = f"alice-{run}", f"bob-{run}", f"carol-{run}"
    now = datetime.now(UTC)

    step("Granting: a credit expiring in 40s (reminder 25s before), a pending credit, a coupon, and two more credits")
    soon = await wallets.grant(
        GrantRequest(
            lot_id=f"{alice}-welcome", customer_id=alice, currency="USD", kind="credit", amount=1000,
            expires_in=EXPIRE_AFTER, remind_before=EXPIRE_AFTER - REMIND_AFTER, promotion_id="welcome-10",
        )
    )  # fmt: skip
    later = await wallets.grant(
        GrantRequest(
            lot_id=f"{alice}-loyalty", customer_id=alice, currency="USD", kind="credit", amount=500,
            effective_at=now + ACTIVATE_AFTER, expires_in=timedelta(days=14),
        )
    )  # fmt: skip
    coupon = await wallets.grant(
        GrantRequest(
            lot_id=f"{alice}-20off", customer_id=alice, currency="USD", kind="coupon",
            coupon=CouponTerms(percent_off=20, cap=500, min_order=1000), expires_in=timedelta(days=7),
        )
    )  # fmt: skip
    await wallets.grant(
        GrantRequest(
            lot_id=f"{bob}-sorry",
            customer_id=bob,
            currency="USD",
            kind="credit",
            amount=2500,
            expires_in=timedelta(days=14),
        )
    )
    await wallets.grant(
        GrantRequest(lot_id=f"{carol}-promo", customer_id=carol, currency="EUR", kind="credit", amount=1500)
    )
    for lot in (soon, later, coupon):
        render.print_lot(console, lot)

    step("Alice checks out a 12.00 USD order with her coupon: the coupon first, then the credit expiring soonest")
    order = await wallets.redeem(
        RedeemRequest(
            customer_id=alice, order_id=f"{alice}-order-1", currency="USD", total=1200, coupon_lot_id=coupon.lot_id
        )
    )
    render.print_redemption(console, order)
    again = await wallets.redeem(
        RedeemRequest(
            customer_id=alice, order_id=f"{alice}-order-1", currency="USD", total=1200, coupon_lot_id=coupon.lot_id
        )
    )
    console.print(f"  the same order again (a retried checkout) returns the same breakdown: {again == order}")

    step("Part of Alice's order is refunded (5.00 USD): credits come back first, to the lot they came from")
    render.print_reversal(
        console,
        await wallets.reverse(
            ReverseRequest(customer_id=alice, order_id=order.order_id, reversal_id=f"{alice}-refund-1", amount=500)
        ),
    )

    step("Bob's 8.00 USD order is cancelled: everything goes back")
    bob_order = await wallets.redeem(
        RedeemRequest(customer_id=bob, order_id=f"{bob}-order-1", currency="USD", total=800)
    )
    render.print_reversal(
        console,
        await wallets.reverse(
            ReverseRequest(customer_id=bob, order_id=bob_order.order_id, reversal_id=f"{bob}-cancel")
        ),
    )

    step("Support revokes Carol's credit (fraud review)")
    render.print_revocation(
        console,
        await wallets.revoke(RevokeRequest(customer_id=carol, lot_id=f"{carol}-promo", reason="fraud review #4411")),
    )

    step("Rules that say no, and write nothing")
    for attempt in (
        wallets.redeem(
            RedeemRequest(
                customer_id=alice, order_id=f"{alice}-order-2", currency="USD", total=900, coupon_lot_id=coupon.lot_id
            )
        ),
        wallets.redeem(RedeemRequest(customer_id=carol, order_id=f"{carol}-order-1", currency="EUR", total=900)),
        wallets.reverse(
            ReverseRequest(customer_id=bob, order_id=bob_order.order_id, reversal_id=f"{bob}-again", amount=100)
        ),
    ):
        try:
            await attempt
        except Rejected as rejected:
            console.print(f"  [yellow]rejected[/yellow] ({type(rejected).__name__}): {rejected.message}")

    step("Time does the rest: a pending credit activates, a reminder goes out, what is left expires")

    async def lot_status(lot_id: str, status: str) -> bool:
        current: str | None = await pool.fetchval("SELECT status FROM lots WHERE lot_id = $1", lot_id)
        return current == status

    async def reminded() -> bool:
        return bool(
            await pool.fetchval(
                "SELECT count(*) FROM outbox WHERE lot_id = $1 AND event_type = 'reminder'", soon.lot_id
            )
        )

    await wait_for(f"{later.lot_id} to become active", lambda: lot_status(later.lot_id, "active"), 30)
    await wait_for(f"the reminder for {soon.lot_id}", reminded, 40)
    await wait_for(f"{soon.lot_id} to expire", lambda: lot_status(soon.lot_id, "expired"), 60)
    written_off = await pool.fetchval(
        "SELECT -amount_minor FROM ledger_entries WHERE entry_type = 'expire' AND lot_id = $1", soon.lot_id
    )
    console.print(f"  {format_money(written_off, 'USD')} of {soon.lot_id} expired (breakage)")

    for customer in (alice, bob, carol):
        step(f"Wallet of {customer}, from the ledger")
        render.print_wallet(console, await wallets.wallet(customer))

    step("Outbox: the events downstream systems receive")
    rows = await pool.fetch(
        "SELECT event_id, event_type, customer_id, coalesce(lot_id, order_id) AS subject FROM outbox "
        "WHERE customer_id = ANY($1::text[]) ORDER BY event_id",
        [alice, bob, carol],
    )
    for row in rows:
        console.print(f"  #{row['event_id']:<5} {row['event_type']:<10} {row['customer_id']:<16} {row['subject']}")

    if ui_url:
        step("The wallets' histories, in the Temporal Web UI")
        for customer in (alice, bob, carol):
            console.print(f"  {ui_url}/namespaces/default/workflows/wallet:{customer}", highlight=False, soft_wrap=True)


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
        async with connect(settings) as wallets:
            await run_demo(wallets, pool, current.ui_url)
    finally:
        await pool.close()
    step("Done. The stack and the worker keep running, so the wallets' timers keep firing.")
    console.print("  try: .venv/bin/incentives wallet <customer>   ·   stop everything: ./dev down", highlight=False)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except IncentivesError as error:
        console.print(f"[red]demo failed:[/red] {error}")
        raise SystemExit(1) from None
