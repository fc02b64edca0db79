"""Readable terminal output for promotions (rich); `--json` output is the models themselves."""

from __future__ import annotations

import functools

from rich.console import Console
from rich.table import Table

from incentives.domain.money import format_money
from incentives.domain.promotions import PromotionFigures, PromotionStatus


def _skipped(skipped: dict[str, int]) -> str:
    return ", ".join(f"{n:,} ({reason})" for reason, n in sorted(skipped.items())) or "none"


def print_status(console: Console, status: PromotionStatus) -> None:
    money = functools.partial(format_money, currency=status.currency)
    table = Table(title=f"Promotion {status.promotion_id}: {status.name}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    rows = [
        ("state", status.state),
        ("schedule (UTC)", f"{status.starts_at:%Y-%m-%d %H:%M} → {status.ends_at:%Y-%m-%d %H:%M}"),
        ("audience", f"{status.processed:,} of {status.audience:,} processed"),
        ("granted", f"{status.granted:,} lots"),
        ("skipped", _skipped(status.skipped)),
        ("committed", f"{money(status.committed)} of a {money(status.budget)} budget"),
        ("redeemed", money(status.redeemed)),
        ("reversed", money(status.reversed)),
        ("expired", money(status.expired)),
        ("revoked", money(status.revoked)),
    ]
    for what, value in rows:
        table.add_row(what, value)
    console.print(table)
    if status.report is not None:
        print_report(console, status.report, final=status.state == "closed")


def print_list(console: Console, statuses: list[PromotionStatus]) -> None:
    table = Table(title="Promotions", title_justify="left")
    for column in ("id", "name", "kind", "state", "granted", "committed", "ends (UTC)"):
        table.add_column(column, justify="right" if column in ("granted", "committed") else "left")
    for status in statuses:
        table.add_row(
            status.promotion_id,
            status.name,
            status.kind,
            status.state,
            f"{status.granted:,}",
            format_money(status.committed, status.currency),
            f"{status.ends_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


def print_report(console: Console, figures: PromotionFigures, *, final: bool) -> None:
    money = functools.partial(format_money, currency=figures.currency)
    title = "Final report" if final else "Report so far (lots may still hold value)"
    table = Table(title=f"{title}: {figures.promotion_id}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, value in (
        ("customers granted", f"{figures.customers_granted:,}"),
        ("lots granted", f"{figures.lots_granted:,}"),
        ("value granted", money(figures.granted)),
        ("redeemed", money(figures.redeemed)),
        ("reversed", money(figures.reversed)),
        ("expired (breakage)", money(figures.expired)),
        ("revoked", money(figures.revoked)),
        ("outstanding liability", money(figures.outstanding)),
        ("coupon uses left", f"{figures.coupon_uses_left:,}"),
    ):
        table.add_row(what, value)
    console.print(table)
