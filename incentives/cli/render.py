"""Readable terminal output (rich) for the CLI; `--json` output is the models themselves.

Free text from the ledger (a reason) is escaped: rich reads `[...]` as markup, which would hide
part of a reason, or fail on one such as `[/]`."""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from datetime import datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from incentives.domain.models import CouponTerms, Lot, Redemption, Reversal, Revocation, WalletView
from incentives.domain.money import format_amount, format_money
from incentives.domain.timeparse import format_duration


def console() -> Console:
    """A console for the CLI: the terminal's width, or a wide one when output is piped to a file."""
    terminal = sys.stdout.isatty() or "COLUMNS" in os.environ
    return Console(width=None if terminal else 160)


def _when(instant: datetime | None) -> str:
    return instant.strftime("%Y-%m-%d %H:%M:%S") if instant else "—"


def describe_coupon(terms: CouponTerms, currency: str) -> str:
    off = format_money(terms.amount_off, currency) if terms.amount_off else f"{terms.percent_off}%"
    parts = [f"{off} off"]
    if terms.cap:
        parts.append(f"up to {format_money(terms.cap, currency)}")
    if terms.min_order:
        parts.append(f"orders from {format_money(terms.min_order, currency)}")
    parts.append(f"{terms.uses} use{'s' if terms.uses != 1 else ''}")
    return ", ".join(parts)


def _value(lot: Lot) -> str:
    if lot.kind == "coupon" and lot.coupon is not None:
        return f"{describe_coupon(lot.coupon, lot.currency)} ({lot.uses_left} left)"
    return f"{format_amount(lot.remaining, lot.currency)} of {format_money(lot.amount, lot.currency)}"


def lot_table(lots: list[Lot], title: str = "Lots") -> Table:
    table = Table(title=f"{title} (times in UTC)", title_justify="left")
    for column in ("lot", "kind", "status", "value", "effective", "expires", "reminder", "promotion"):
        table.add_column(column)
    for lot in lots:
        reminder = "—"
        if lot.remind_before is not None:
            reminder = f"{format_duration(lot.remind_before)} before" + (" (sent)" if lot.reminded else "")
        table.add_row(
            lot.lot_id,
            lot.kind,
            lot.status,
            _value(lot),
            _when(lot.effective_at),
            _when(lot.expires_at),
            reminder,
            lot.promotion_id or "—",
        )
    return table


def print_lot(console: Console, lot: Lot) -> None:
    console.print(lot_table([lot], title=f"Granted to {lot.customer_id}"))


def print_redemption(console: Console, redemption: Redemption) -> None:
    currency = redemption.currency
    table = Table(title=f"Order {redemption.order_id} of {redemption.customer_id}", title_justify="left")
    table.add_column("lot")
    table.add_column("kind")
    table.add_column("gave", justify="right")
    for part in redemption.applied:
        table.add_row(part.lot_id, part.kind, format_money(part.amount, currency))
    console.print(table)
    console.print(
        f"total {format_money(redemption.total, currency)}  "
        f"discount {format_money(redemption.discount, currency)}  "
        f"[bold]to pay {format_money(redemption.to_pay, currency)}[/bold]"
    )


def print_reversal(console: Console, reversal: Reversal, void_coupons: Collection[str] = ()) -> None:
    """`void_coupons`: coupons that got a use back but had expired or been revoked meanwhile."""
    currency = reversal.currency
    table = Table(title=f"Reversal {reversal.reversal_id} of order {reversal.order_id}", title_justify="left")
    table.add_column("lot")
    table.add_column("kind")
    table.add_column("got back", justify="right")
    table.add_column("note")
    written_off = {part.lot_id for part in reversal.written_off}
    for part in reversal.restored:
        note = ""
        if part.lot_id in written_off:
            note = "lot had expired or was revoked: written off again"
        elif part.lot_id in void_coupons:
            note = "coupon had expired or was revoked: the use it got back cannot be redeemed"
        table.add_row(part.lot_id, part.kind, format_money(part.amount, currency), note)
    console.print(table)
    console.print(
        f"reversed {format_money(reversal.amount, currency)}; "
        f"{format_money(reversal.reversible_left, currency)} of the order left to reverse"
    )


def print_revocation(console: Console, revocation: Revocation) -> None:
    console.print(
        f"revoked lot {revocation.lot_id}: {format_money(revocation.amount, revocation.currency)} removed "
        f"({escape(revocation.reason)})"
    )


def print_wallet(console: Console, view: WalletView) -> None:
    balances = ", ".join(format_money(v, c) for c, v in sorted(view.balances.items())) or "nothing available"
    console.print(f"[bold]Wallet of {view.customer_id}[/bold]: {balances}")
    if view.pending:
        console.print("pending: " + ", ".join(format_money(v, c) for c, v in sorted(view.pending.items())))
    console.print(lot_table(view.lots))
    if len(view.ledger) < view.ledger_total:
        left_out = view.ledger_total - len(view.ledger)
        console.print(
            f"Ledger: the newest {len(view.ledger)} of {view.ledger_total} rows; "
            f"{left_out} older rows not shown (--all shows every row)",
            soft_wrap=True,
            markup=False,
            style="yellow",
        )
    ledger = Table(title="Ledger (times in UTC)", title_justify="left")
    for column in ("#", "when", "type", "lot", "amount", "order", "reason", "run"):
        ledger.add_column(column, justify="right" if column in ("#", "amount") else "left")
    for entry in view.ledger:
        ledger.add_row(
            str(entry.entry_id),
            _when(entry.created_at),
            entry.entry_type,
            entry.lot_id,
            format_money(entry.amount, entry.currency),
            entry.order_id or "",
            escape(entry.reason or ""),
            entry.run_id or "",
        )
    console.print(ledger)
