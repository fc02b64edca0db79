"""On-call: `reconcile` proves the books balance (more to come: history, explain)."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from incentives.adapters.migrations import connect_database
from incentives.adapters.settings import Settings
from incentives.app.reconcile import CHECKS, reconcile
from incentives.cli.arguments import Parser, command
from incentives.cli.exits import EXIT_OK, EXIT_REJECTED
from incentives.domain.inputs import check_id
from incentives.domain.promotions import check_promotion_id


def register(commands: argparse._SubParsersAction[Parser]) -> None:
    checks = "\n".join(f"  {name}: {meaning}" for name, meaning in CHECKS.items())
    parser = command(
        commands,
        "reconcile",
        "check that the books balance: every lot, order, promotion, budget, pool and event",
        f"Set-based SQL over Postgres in one snapshot (Temporal is not needed). Checks:\n{checks}\n"
        "Exit 0 when every check passes; exit 1 listing every violation otherwise.",
        "  incentives reconcile\n  incentives reconcile --customer alice\n"
        "  incentives reconcile --promotion spring-credit-2027 --json",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--customer", metavar="ID", help="check only this customer's lots, orders and events")
    scope.add_argument("--promotion", metavar="ID", help="check only this promotion, its lots and its pool")
    parser.add_argument("--json", action="store_true", help="print the summary and every violation as JSON")
    parser.set_defaults(handler=_reconcile)


async def _reconcile(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    customer = None if args.customer is None else check_id(args.customer, "--customer")
    promotion = None if args.promotion is None else check_promotion_id(args.promotion, "--promotion")
    pool = await connect_database(settings, max_size=1)
    try:
        books = await reconcile(pool, customer=customer, promotion=promotion)
    finally:
        await pool.close()
    if args.json:
        print(json.dumps({**books.model_dump(mode="json"), "ok": books.ok}, indent=2))
    else:
        console.print(
            f"reconciled {books.scope}: {books.lots:,} lots, {books.ledger_rows:,} ledger rows, "
            f"{len(books.checks)} checks, {len(books.violations)} violations",
            markup=False,
        )
        if books.violations:
            table = Table(title="Violations", title_justify="left")
            for column in ("check", "subject", "detail"):
                table.add_column(column)
            for violation in books.violations:
                table.add_row(violation.check, escape(violation.subject), escape(violation.detail))
            console.print(table)
    return EXIT_OK if books.ok else EXIT_REJECTED
