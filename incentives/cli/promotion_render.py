"""Readable terminal output for promotions (rich); `--json` output is the models themselves."""

from __future__ import annotations

import functools
from datetime import datetime

from rich.console import Console
from rich.table import Table

from incentives.cli.render import describe_coupon
from incentives.domain.money import format_money
from incentives.domain.promotions import PromotionFigures, PromotionStatus, PromotionTerms
from incentives.domain.timeparse import format_duration


def _skipped(skipped: dict[str, int]) -> str:
    return ", ".join(f"{n:,} ({reason})" for reason, n in sorted(skipped.items())) or "none"


def _instant(instant: datetime | None, otherwise: str) -> str:
    return otherwise if instant is None else f"{instant:%Y-%m-%d %H:%M}"


def _schedule(starts_at: datetime | None, ends_at: datetime | None) -> str:
    return f"{_instant(starts_at, 'once started')} → {_instant(ends_at, 'when its last lot closes')}"


def print_status(console: Console, status: PromotionStatus) -> None:
    money = functools.partial(format_money, currency=status.currency)
    table = Table(title=f"Promotion {status.promotion_id}: {status.name}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    rows = [
        ("state", status.state if status.failure is None else f"{status.state} (granting failed: {status.failure})"),
        ("schedule (UTC)", _schedule(status.starts_at, status.ends_at)),
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
            _instant(status.ends_at, "no end"),
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


def print_check(console: Console, terms: PromotionTerms, audience: int, duplicates: int, grants: int) -> None:
    money = functools.partial(format_money, currency=terms.currency)
    validity = terms.validity
    expiry = (
        f"{format_duration(validity.expires_after)} after the grant"
        if validity.expires_after is not None
        else f"at {validity.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    worst = terms.worst_case(grants)
    value = describe_coupon(terms.coupon, terms.currency) if terms.coupon is not None else money(terms.grant_cost)
    table = Table(
        title=f"Promotion {terms.promotion_id}: {terms.name} (valid)", title_justify="left", show_header=False
    )
    table.add_column("what")
    table.add_column("value")
    for what, shown in (
        ("gives", f"{terms.kind}: {value}"),
        ("schedule (UTC)", _schedule(terms.starts_at, terms.ends_at)),
        ("expires", expiry),
        ("audience", f"{audience:,} customers ({duplicates:,} duplicates counted once)"),
        ("grants that fit", f"{grants:,}"),
        ("worst case", money(worst) if worst is not None else "no bound per order (a percentage without a cap)"),
        ("budget", money(terms.budget.amount)),
    ):
        table.add_row(what, shown)
    if terms.budget.pool is not None:
        table.add_row("pool", f"{terms.budget.pool.pool_id}: {money(terms.budget.pool.amount)}")
    console.print(table)
