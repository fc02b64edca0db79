"""`incentives promotion ...`: start a promotion from a spec file, watch it, steer it, read its report."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from incentives.adapters.settings import Settings
from incentives.app import spec_files
from incentives.app.promotions import PromotionBooks, PromotionsClient, connect_promotion_books, connect_promotions
from incentives.cli import flags, promotion_render
from incentives.cli.arguments import Parser, command
from incentives.cli.exits import EXIT_OK
from incentives.domain.models import Model
from incentives.domain.promotions import ControlOutcome, check_promotion_id, refuse_grants_nothing
from incentives.domain.timeparse import parse_instant

JSON_HELP = "print the result as JSON: amounts are integers in minor units beside a `currency` field"
TIMEOUT_HELP = (
    "how long to wait for the promotion's answer (default 30s); past it, exit 3, and sending it again is safe"
)
ID_HELP = "the promotion's id (the `id` of its spec file)"
_POLL_SECONDS = 0.5


def register(commands: argparse._SubParsersAction[Parser]) -> None:
    group = command(
        commands,
        "promotion",
        "start, watch and steer promotions",
        "A promotion grants a lot to every customer of its audience, within its budget, as rows in\n"
        "Postgres (no wallet is started), keeps its lots' clock, and closes with a report.\n"
        "`incentives promotion ACTION --help` describes each action.",
        "  incentives promotion check examples/promotions/spring-credit.yaml\n"
        "  incentives promotion start examples/promotions/spring-credit.yaml\n"
        "  incentives promotion status spring-credit-2027\n"
        "  incentives promotion report spring-credit-2027 --json",
    )
    actions: argparse._SubParsersAction[Parser] = group.add_subparsers(
        dest="action", required=True, parser_class=Parser, metavar="ACTION", title="actions", help="one of:"
    )
    _starters(actions)
    _readers(actions)
    _controls(actions)


def _starters(actions: argparse._SubParsersAction[Parser]) -> None:
    check = command(
        actions,
        "check",
        "validate a spec file and say what starting it would do, without starting anything",
        "Reads the spec and its audience (no server needed): audience size and duplicates (each\n"
        "customer counted once), how many grants fit the budget, and the worst-case commitment.",
        "  incentives promotion check examples/promotions/spring-credit.yaml --json",
    )
    check.add_argument("spec", type=Path, metavar="FILE", help="the spec file (YAML or JSON)")
    root_help = "another directory the spec's audience.file may be in (by default, only the spec file's own)"
    check.add_argument("--audience-root", type=Path, metavar="DIR", help=root_help)
    check.add_argument("--json", action="store_true", help=JSON_HELP)
    check.set_defaults(handler=_check)
    start = command(
        actions,
        "start",
        "start a promotion from its spec file",
        "Stages the audience in Postgres, then starts the promotion's workflow (`promotion:<id>`).\n"
        "The same spec again is harmless and says so; other terms under the same id are refused.\n"
        "Errors name the spec's field (`budget.amount: ...`) and exit 2; nothing is started.",
        "  incentives promotion start examples/promotions/spring-credit.yaml",
    )
    start.add_argument("spec", type=Path, metavar="FILE", help="the spec file (YAML or JSON)")
    start.add_argument("--audience-root", type=Path, metavar="DIR", help=root_help)
    start.add_argument("--json", action="store_true", help=JSON_HELP)
    start.set_defaults(handler=_start)
    add = command(
        actions,
        "add-audience",
        "add customers to a running promotion",
        "A CSV of customer ids (one a line, header optional). The same file again adds nothing.",
        "  incentives promotion add-audience spring-credit-2027 more-customers.csv",
    )
    _identified(add, timeout=True)
    add.add_argument("file", type=Path, metavar="FILE", help="a CSV of customer ids")
    add.set_defaults(handler=_add_audience)


def _identified(parser: Parser, *, timeout: bool) -> None:
    parser.add_argument("promotion", metavar="ID", help=ID_HELP)
    if timeout:
        parser.add_argument("--timeout", metavar="DURATION", help=TIMEOUT_HELP)
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def _readers(actions: argparse._SubParsersAction[Parser]) -> None:
    status = command(
        actions,
        "status",
        "show a promotion's state, progress and books",
        "Reads Postgres (the truth; there after the promotion closed). In a terminal, while the\n"
        "promotion grants, a live progress bar with its rate and time left; then the figures.",
        "  incentives promotion status spring-credit-2027\n  incentives promotion status spring-credit-2027 --json",
    )
    _identified(status, timeout=False)
    status.set_defaults(handler=_status)
    listing = command(
        actions, "list", "list every promotion and its state", "Reads Postgres.", "  incentives promotion list"
    )
    listing.add_argument("--json", action="store_true", help=JSON_HELP)
    listing.set_defaults(handler=_list)
    report = command(
        actions,
        "report",
        "a promotion's books: granted, redeemed, reversed, expired (breakage), revoked, outstanding",
        "Computed from the ledger. Final once the promotion closed (no lot it granted holds value).",
        "  incentives promotion report spring-credit-2027 --json",
    )
    _identified(report, timeout=False)
    report.set_defaults(handler=_report)


def _controls(actions: argparse._SubParsersAction[Parser]) -> None:
    for name, summary in (
        ("pause", "stop granting until resumed (the lots' clock keeps running)"),
        ("resume", "resume a paused promotion"),
    ):
        control = command(actions, name, summary, "Sending it again is harmless.", f"  incentives promotion {name} ID")
        _identified(control, timeout=True)
        control.set_defaults(handler=_pause if name == "pause" else _resume)
    cancel = command(
        actions,
        "cancel",
        "stop granting for good",
        "Lots already granted live out their validity, unless --revoke-outstanding revokes what they hold.",
        "  incentives promotion cancel spring-credit-2027 --revoke-outstanding",
    )
    _identified(cancel, timeout=True)
    cancel.add_argument("--revoke-outstanding", action="store_true", help="revoke every lot that still holds value")
    cancel.set_defaults(handler=_cancel)
    extend = command(
        actions,
        "extend",
        "move the end of granting, later or sooner",
        "The new end must be in the future, and before the lots' fixed expiry if the spec gives one.",
        "  incentives promotion extend spring-credit-2027 --ends-at 2027-04-30T23:59:59-04:00",
    )
    _identified(extend, timeout=True)
    extend.add_argument("--ends-at", required=True, metavar="ISO8601", help="the new end, with a time zone")
    extend.set_defaults(handler=_extend)


def _emit(args: argparse.Namespace, console: Console, result: Model, show: Callable[[Console], None]) -> None:
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        show(console)


def _promotion_id(args: argparse.Namespace) -> str:
    return check_promotion_id(args.promotion, "ID")


async def _check(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    spec = spec_files.read_spec(args.spec)
    audience = spec_files.survey(spec_files.audience(spec, args.spec, root=args.audience_root))
    terms = spec.terms
    refuse_grants_nothing(terms, datetime.now(UTC))
    grants = terms.grants_that_fit(audience.size)
    summary = {
        "promotion_id": terms.promotion_id,
        "kind": terms.kind,
        "currency": terms.currency,
        "audience": audience.size,
        "duplicates": audience.duplicates,
        "grants": grants,
        "worst_case": terms.worst_case(grants),
        "budget": terms.budget.amount,
        "starts_at": terms.starts_at.isoformat() if terms.starts_at else None,
        "ends_at": terms.ends_at.isoformat() if terms.ends_at else None,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        promotion_render.print_check(console, terms, audience.size, audience.duplicates, grants)
    return EXIT_OK


async def _start(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    spec = spec_files.read_spec(args.spec)
    refuse_grants_nothing(spec.terms, datetime.now(UTC))  # before anything is sent
    ids = spec_files.audience(spec, args.spec, root=args.audience_root)
    async with connect_promotions(settings) as promotions:
        started = await promotions.start(spec.terms, ids)
    if args.json:
        print(started.model_dump_json(indent=2))
    elif started.started:
        console.print(
            f"started promotion {started.promotion_id} (workflow {started.workflow_id}): "
            f"{started.audience.size:,} customers ({started.audience.duplicates:,} duplicates counted once)\n"
            f"watch it: incentives promotion status {started.promotion_id}",
            markup=False,
        )
    else:
        console.print(
            f"promotion {started.promotion_id} was already started with this spec: nothing changed", markup=False
        )
    return EXIT_OK


async def _add_audience(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    promotion_id, deadline = _promotion_id(args), flags.timeout(args)
    ids = spec_files.audience_file(args.file, field="FILE")
    async with connect_promotions(settings) as promotions:
        outcome = await promotions.add_audience(promotion_id, ids, timeout=deadline)
    if args.json:
        print(outcome.model_dump_json(indent=2))
    else:
        console.print(
            f"promotion {promotion_id}: {outcome.effect}; it is {outcome.state}, its audience {outcome.audience:,}",
            markup=False,
        )
    return EXIT_OK


async def _status(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    promotion_id = _promotion_id(args)
    async with connect_promotion_books(settings) as promotions:
        status = await promotions.status(promotion_id)
        if not args.json and console.is_terminal and status.state in ("scheduled", "granting"):
            await _watch(promotions, promotion_id, console)
            status = await promotions.status(promotion_id)
    _emit(args, console, status, lambda out: promotion_render.print_status(out, status))
    return EXIT_OK


async def _watch(promotions: PromotionBooks, promotion_id: str, console: Console) -> None:
    """A live bar over the audience while the promotion grants; returns once it stops granting."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(promotion_id, total=None, rate="—")
        while True:
            status = await promotions.status(promotion_id)
            progress.update(task, total=status.audience, completed=status.processed, description=status.state)
            speed = progress.tasks[0].speed
            progress.update(task, rate=f"{speed:,.0f}" if speed else "—")
            if status.state not in ("scheduled", "granting"):
                return
            await asyncio.sleep(_POLL_SECONDS)


async def _list(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    async with connect_promotion_books(settings) as promotions:
        statuses = await promotions.list()
    if args.json:
        print(json.dumps([status.model_dump(mode="json") for status in statuses], indent=2))
    else:
        promotion_render.print_list(console, statuses)
    return EXIT_OK


async def _report(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    promotion_id = _promotion_id(args)
    async with connect_promotion_books(settings) as promotions:
        figures, final = await promotions.report(promotion_id)
    if args.json:
        print(json.dumps({**figures.model_dump(mode="json"), "final": final}, indent=2))
    else:
        promotion_render.print_report(console, figures, final=final)
    return EXIT_OK


async def _control(
    args: argparse.Namespace,
    settings: Settings,
    console: Console,
    send: Callable[[PromotionsClient, str], Awaitable[ControlOutcome]],
) -> int:
    promotion_id = _promotion_id(args)
    async with connect_promotions(settings) as promotions:
        outcome = await send(promotions, promotion_id)
    if args.json:
        print(outcome.model_dump_json(indent=2))
    else:
        console.print(f"promotion {promotion_id}: {outcome.effect}; it is {outcome.state}", markup=False)
    return EXIT_OK


async def _pause(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    deadline = flags.timeout(args)
    return await _control(args, settings, console, lambda client, pid: client.pause(pid, timeout=deadline))


async def _resume(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    deadline = flags.timeout(args)
    return await _control(args, settings, console, lambda client, pid: client.resume(pid, timeout=deadline))


async def _cancel(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    deadline, revoke = flags.timeout(args), args.revoke_outstanding
    return await _control(
        args, settings, console, lambda client, pid: client.cancel(pid, revoke_outstanding=revoke, timeout=deadline)
    )


async def _extend(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    deadline, ends_at = flags.timeout(args), parse_instant(args.ends_at, "--ends-at")
    return await _control(args, settings, console, lambda client, pid: client.extend(pid, ends_at, timeout=deadline))
