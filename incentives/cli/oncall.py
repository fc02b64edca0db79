"""On-call: `history` tells a workflow's story, `explain` where a customer's value went,
`reconcile` proves the books balance (now, or as the hourly schedule last found them)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from temporalio.client import WorkflowHistory

from incentives.adapters.migrations import connect_reader
from incentives.adapters.settings import Settings
from incentives.adapters.temporal import connect_temporal
from incentives.app import history
from incentives.app.explain import Explanation, explain
from incentives.app.reconcile import (
    CHECKS,
    ReconcileRun,
    Reconciliation,
    ensure_reconcile_schedule,
    last_reconcile,
    reconcile,
)
from incentives.cli.arguments import Parser, command
from incentives.cli.exits import EXIT_NOTHING_RECORDED, EXIT_OK, EXIT_REJECTED
from incentives.domain.errors import InvalidInput
from incentives.domain.inputs import check_id
from incentives.domain.money import format_money
from incentives.domain.promotions import check_promotion_id
from incentives.domain.reconcile import (
    RECONCILE_EVERY,
    RECONCILE_EVERY_MAX,
    RECONCILE_EVERY_MIN,
    RECONCILE_SCHEDULE_ID,
    RECONCILE_WORKFLOW,
    VIOLATIONS_KEPT_PER_CHECK,
    check_reconcile_every,
)
from incentives.domain.timeparse import format_duration, parse_duration


def register(commands: argparse._SubParsersAction[Parser]) -> None:
    _history_parser(commands)
    _explain_parser(commands)
    _reconcile_parser(commands)


def _explain_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = command(
        commands,
        "explain",
        "where a customer's credit went: every lot, each movement of its value, and what is left",
        "From the ledger: each lot's grant, redemptions (by order), reversals, expiry and revocation,\n"
        "each with the workflow run that wrote it. When the customer's wallet runs, every difference\n"
        "between its memory (a cache) and the ledger (the truth) is listed too.",
        "  incentives explain alice\n  incentives explain alice --json",
    )
    parser.add_argument("customer", metavar="CUSTOMER", help="the customer's id")
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON (minor units)")
    parser.set_defaults(handler=_explain)


def _history_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = command(
        commands,
        "history",
        "a customer's, wallet's or promotion's workflow history as a readable timeline",
        "Every run (continue-as-new included), oldest first, each event decoded. For a customer, the\n"
        "ledger rows promotions wrote for them are interleaved (a promotion's grant is not in the\n"
        "wallet's history). --json writes one run's raw history (the latest, or --run) in the form\n"
        "`temporal workflow show --output json` writes and `incentives replay` reads.",
        "  incentives history alice\n  incentives history promotion:spring-credit-2027\n"
        "  incentives history wallet:alice --json > history.json && incentives replay history.json",
    )
    parser.add_argument(
        "target", metavar="TARGET", help="a customer id, wallet:ID, promotion:ID, a promotion's id, or any workflow id"
    )
    parser.add_argument("--run", metavar="RUN_ID", help="with --json: this run instead of the latest")
    parser.add_argument("--json", action="store_true", help="write the raw history of one run as JSON")
    parser.set_defaults(handler=_history)


def _reconcile_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    checks = "\n".join(f"  {name}: {meaning}" for name, meaning in CHECKS.items())
    parser = command(
        commands,
        "reconcile",
        "check that the books balance: every lot, order, promotion, budget, pool and event",
        f"Set-based SQL over Postgres in one snapshot (Temporal is not needed). Checks:\n{checks}\n"
        "Exit 0 when every check passes; exit 1 listing every violation otherwise.\n\n"
        f"A Temporal Schedule, {RECONCILE_SCHEDULE_ID}, runs the same checks every hour (workflow\n"
        f"{RECONCILE_WORKFLOW} on INCENTIVES_TASK_QUEUE) and keeps each result in Postgres: every count,\n"
        f"and {VIOLATIONS_KEPT_PER_CHECK} violations of each check at most. `incentives dev up` creates it; on a\n"
        "real cluster, --schedule does (run again, it updates it and keeps a pause).\n"
        "--last prints the last result kept (Postgres only): exit 0 when it found no violation, 1 when\n"
        "it found some, 5 when no scheduled run has been recorded yet.",
        "  incentives reconcile\n  incentives reconcile --customer alice\n"
        "  incentives reconcile --promotion spring-credit-2027 --json\n"
        "  incentives reconcile --last\n  incentives reconcile --schedule --every 6h",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--customer", metavar="ID", help="check only this customer's lots, orders and events")
    what.add_argument("--promotion", metavar="ID", help="check only this promotion, its lots and its pool")
    what.add_argument("--last", action="store_true", help="print the last result the schedule kept (exit 5: none yet)")
    what.add_argument(
        "--schedule", action="store_true", help="create or update the schedule that reconciles the books on Temporal"
    )
    parser.add_argument(
        "--every",
        metavar="DURATION",
        help=f"with --schedule: how often, from {format_duration(RECONCILE_EVERY_MIN)} to "
        f"{format_duration(RECONCILE_EVERY_MAX)} (default {format_duration(RECONCILE_EVERY)})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the summary and the violations as JSON (with --schedule: the schedule)",
    )
    parser.set_defaults(handler=_reconcile)


async def _history(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    target = check_id(args.target, "TARGET")
    temporal = await connect_temporal(settings)
    pool = await connect_reader(settings, max_size=1)
    try:
        workflow_id = await history.resolve(pool, target)
        histories = await history.runs(temporal, workflow_id)
        if args.json:
            print(_one_run(histories, args.run).to_json())
            return EXIT_OK
        entries = [entry for run_id, events in histories for entry in history.timeline(events, run_id)]
        if workflow_id.startswith("wallet:"):
            entries += await history.ledger_rows_by_others(pool, workflow_id.removeprefix("wallet:"))
    finally:
        await pool.close()
    table = Table(title=f"{workflow_id}: {len(histories)} run(s), times in UTC", title_justify="left")
    for column in ("when", "run", "event"):
        table.add_column(column)
    for entry in sorted(entries, key=lambda entry: entry.at):
        run = (entry.run_id or "")[:8] if entry.source == "workflow" else "ledger"
        table.add_row(f"{entry.at:%Y-%m-%d %H:%M:%S.%f}"[:-3], run, escape(entry.text))
    console.print(table)
    return EXIT_OK


async def _explain(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    customer = check_id(args.customer, "CUSTOMER")
    temporal = await connect_temporal(settings)
    pool = await connect_reader(settings, max_size=1)
    try:
        story = await explain(pool, temporal, customer)
    finally:
        await pool.close()
    if args.json:
        print(story.model_dump_json(indent=2))
    else:
        print_explanation(console, story)
    return EXIT_OK


def print_explanation(console: Console, story: Explanation) -> None:
    for told in story.lots:
        lot = told.lot
        left = (
            f"{lot.uses_left} uses left"
            if lot.kind == "coupon"
            else format_money(lot.remaining, lot.currency) + " left"
        )
        table = Table(title=f"lot {lot.lot_id} ({lot.kind}, {lot.status}): {left}", title_justify="left")
        for column in ("#", "when (UTC)", "movement", "amount", "order / reversal", "reason", "written by"):
            table.add_column(column, justify="right" if column in ("#", "amount") else "left")
        for move in told.movements:
            table.add_row(
                str(move.entry_id),
                f"{move.at:%Y-%m-%d %H:%M:%S}",
                move.entry_type,
                format_money(move.amount, lot.currency),
                " / ".join(part for part in (move.order_id, move.reversal_id) if part),
                escape(move.reason or ""),
                f"{move.workflow_id or ''} {(move.run_id or '')[:8]}".strip(),
            )
        console.print(table)
    if not story.wallet_running:
        console.print("no wallet runs for this customer: the ledger is the whole story", markup=False)
    elif not story.differences:
        console.print("the running wallet's memory agrees with the ledger", markup=False)
    for difference in story.differences:
        console.print(
            f"memory differs on lot {difference.lot_id}: ledger {difference.ledger}, wallet {difference.wallet}",
            markup=False,
            style="yellow",
        )


def _one_run(histories: list[tuple[str, WorkflowHistory]], run_id: str | None) -> WorkflowHistory:
    if run_id is None:
        return histories[-1][1]
    for candidate, events in histories:
        if candidate == run_id:
            return events
    raise InvalidInput("--run", f"{run_id} is not a run of this workflow")


async def _reconcile(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    if args.every is not None and not args.schedule:
        raise InvalidInput("--every", "goes with --schedule")
    if args.schedule:
        return await _schedule(args, settings, console)
    customer = None if args.customer is None else check_id(args.customer, "--customer")
    promotion = None if args.promotion is None else check_promotion_id(args.promotion, "--promotion")
    pool = await connect_reader(settings, max_size=1)
    try:
        books = (
            await last_reconcile(pool) if args.last else await reconcile(pool, customer=customer, promotion=promotion)
        )
    finally:
        await pool.close()
    if books is None:
        print(
            "incentives: no scheduled reconcile has been recorded yet: a worker records one each time the schedule "
            f"{RECONCILE_SCHEDULE_ID} fires, hourly (`incentives dev up` creates it; on a real cluster, "
            "`incentives reconcile --schedule`); `incentives reconcile` checks the books now",
            file=sys.stderr,
        )
        return EXIT_NOTHING_RECORDED
    if args.json:
        print(
            json.dumps(
                {**books.model_dump(mode="json"), "violation_count": books.violation_count, "ok": books.ok}, indent=2
            )
        )
    else:
        _print_books(console, books)
    return EXIT_OK if books.ok else EXIT_REJECTED


def _print_books(console: Console, books: Reconciliation) -> None:
    if isinstance(books, ReconcileRun):
        took = (books.finished_at - books.started_at).total_seconds()
        console.print(
            f"last scheduled reconcile: {books.workflow_id}, finished {books.finished_at:%Y-%m-%d %H:%M:%S} UTC "
            f"({_ago(datetime.now(UTC) - books.finished_at)}), took {took:.1f} s",
            markup=False,
        )
    console.print(
        f"reconciled {books.scope}: {books.lots:,} lots, {books.ledger_rows:,} ledger rows, "
        f"{len(books.checks)} checks, {books.violation_count:,} violations",
        markup=False,
    )
    if books.ok:
        return
    found = ", ".join(f"{name} {count:,}" for name, count in books.checks.items() if count)
    console.print(f"violations by check: {found}", markup=False)
    table = Table(title="Violations", title_justify="left")
    for column in ("check", "subject", "detail"):
        table.add_column(column)
    for violation in books.violations:
        table.add_row(violation.check, escape(violation.subject), escape(violation.detail))
    console.print(table)
    if len(books.violations) < books.violation_count:
        console.print(
            f"kept {len(books.violations):,} of {books.violation_count:,} (at most {VIOLATIONS_KEPT_PER_CHECK} a check): "
            "`incentives reconcile` lists every one, as the books are now",
            markup=False,
        )


def _ago(elapsed: timedelta) -> str:
    minutes = int(elapsed.total_seconds() // 60)
    if minutes < 1:
        return "under a minute ago"
    if minutes < 120:
        return f"{minutes} min ago"
    hours = minutes // 60
    return f"{hours} h ago" if hours < 48 else f"{hours // 24} days ago"


async def _schedule(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    every = (
        RECONCILE_EVERY
        if args.every is None
        else check_reconcile_every(parse_duration(args.every, "--every"), "--every")
    )
    temporal = await connect_temporal(settings)
    outcome = await ensure_reconcile_schedule(temporal, settings.task_queue, every)
    if args.json:
        shown = {
            "schedule_id": RECONCILE_SCHEDULE_ID,
            "created": outcome.created,
            "paused": outcome.paused,
            "every": format_duration(every),
            "workflow": RECONCILE_WORKFLOW,
            "task_queue": settings.task_queue,
        }
        print(json.dumps(shown, indent=2))
        return EXIT_OK
    console.print(
        f"{'created' if outcome.created else 'updated'} the schedule {RECONCILE_SCHEDULE_ID}: the books reconciled "
        f"every {format_duration(every)} by workflow {RECONCILE_WORKFLOW} on task queue {settings.task_queue} "
        "(a run still going when the next is due skips it); the last result: `incentives reconcile --last`",
        markup=False,
    )
    if outcome.paused:
        console.print(
            f"it is paused, and stays so: `temporal schedule toggle --schedule-id {RECONCILE_SCHEDULE_ID} "
            "--unpause --reason ...` resumes it",
            markup=False,
        )
    return EXIT_OK
