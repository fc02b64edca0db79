"""The `incentives` command: grant, redeem, reverse, revoke, inspect a wallet, run a worker, and
manage the embedded dev stack.

Exit codes: 0 done; 1 rejected by the business rules (the reason on one stderr line); 2 bad input
or usage (which field, why); 3 Temporal or Postgres unreachable. Amounts on the command line are
decimal strings in major units ("10.00"); in `--json` output every amount is an integer in minor
units beside a `currency` field.

For a Python service, `IncentivesClient` (re-exported here) is the same operations, typed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError
from rich.console import Console
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from incentives import devstack, render
from incentives.api import IncentivesClient
from incentives.connect import connect_database, connect_temporal
from incentives.errors import InvalidInput, Rejected, Unavailable
from incentives.models import CouponTerms, GrantRequest, Model, RedeemRequest, ReverseRequest, RevokeRequest
from incentives.money import check_currency, parse_amount
from incentives.settings import Settings
from incentives.timeparse import parse_duration, parse_instant
from workflows import WORKFLOWS

__all__ = ["IncentivesClient", "connect", "main"]

EXIT_OK, EXIT_REJECTED, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3

# Model fields as the user typed them, so that an error names the flag, not our field.
_FLAGS = {
    "customer_id": "CUSTOMER",
    "lot_id": "--lot",
    "order_id": "--order",
    "reversal_id": "--reversal",
    "promotion_id": "--promotion",
    "coupon_lot_id": "--coupon",
    "reason": "--reason",
    "percent_off": "--coupon-percent",
    "uses": "--uses",
}


@asynccontextmanager
async def connect(settings: Settings | None = None) -> AsyncIterator[IncentivesClient]:
    """An `IncentivesClient` on the configured Temporal and Postgres, closed on exit."""
    settings = settings or Settings()
    temporal = await connect_temporal(settings)
    pool = await connect_database(settings, max_size=4)
    try:
        yield IncentivesClient(temporal, pool, task_queue=settings.task_queue, reversal_window=settings.reversal_window)
    finally:
        await pool.close()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="incentives", description="Credits and coupons on Temporal and PostgreSQL.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    grant = commands.add_parser("grant", help="put a credit or a coupon into a customer's wallet")
    grant.add_argument("customer")
    grant.add_argument("--lot", required=True, help="lot id: the idempotency key of the grant")
    grant.add_argument("--currency", required=True, help="ISO 4217 code, e.g. USD")
    value = grant.add_mutually_exclusive_group(required=True)
    value.add_argument("--credit", metavar="AMOUNT", help="a credit of AMOUNT (e.g. 10.00)")
    value.add_argument("--coupon-off", metavar="AMOUNT", help="a coupon taking AMOUNT off an order")
    value.add_argument("--coupon-percent", metavar="P", help="a coupon taking P%% (1-100) off an order")
    grant.add_argument("--coupon-cap", metavar="AMOUNT", help="most a percent coupon takes off")
    grant.add_argument("--min-order", metavar="AMOUNT", help="smallest order total the coupon applies to")
    grant.add_argument("--uses", metavar="N", help="how many orders the coupon applies to (default 1)")
    expiry = grant.add_mutually_exclusive_group()
    expiry.add_argument("--expires-at", metavar="ISO8601", help="absolute expiry, with a time zone")
    expiry.add_argument("--expires-in", metavar="DURATION", help="expiry after the grant: 30s, 15m, 2h, 14d, 2w, P14D")
    grant.add_argument("--effective-at", metavar="ISO8601", help="pending until then")
    grant.add_argument("--remind-before", metavar="DURATION", help="send one reminder this long before expiry")
    grant.add_argument("--promotion", metavar="ID")
    grant.add_argument("--json", action="store_true")

    redeem = commands.add_parser("redeem", help="apply a customer's incentives to an order")
    redeem.add_argument("customer")
    redeem.add_argument("--order", required=True, help="order id: the idempotency key of the redemption")
    redeem.add_argument("--total", required=True, metavar="AMOUNT")
    redeem.add_argument("--currency", required=True)
    redeem.add_argument("--coupon", metavar="LOT_ID")
    redeem.add_argument("--max-credit", metavar="AMOUNT", help="most credit to use on this order (0: coupon only)")
    redeem.add_argument("--json", action="store_true")

    reverse = commands.add_parser("reverse", help="give back what an order redeemed (cancel, refund)")
    reverse.add_argument("customer")
    reverse.add_argument("--order", required=True)
    reverse.add_argument("--reversal", required=True, help="reversal id: the idempotency key of the reversal")
    reverse.add_argument("--amount", metavar="AMOUNT", help="part of the discount to give back (default: all)")
    reverse.add_argument("--json", action="store_true")

    revoke = commands.add_parser("revoke", help="remove what is left of a lot (support, fraud)")
    revoke.add_argument("customer")
    revoke.add_argument("--lot", required=True)
    revoke.add_argument("--reason", required=True)
    revoke.add_argument("--json", action="store_true")

    wallet = commands.add_parser("wallet", help="a customer's balances, lots and ledger, from Postgres")
    wallet.add_argument("customer")
    wallet.add_argument("--json", action="store_true")

    commands.add_parser("worker", help="run a worker: the wallets' workflows and the ledger activities")

    replay = commands.add_parser(
        "replay", help="replay saved workflow histories against this code (temporal workflow show --output json)"
    )
    replay.add_argument("histories", nargs="+", type=Path, metavar="HISTORY.json")

    dev = commands.add_parser("dev", help="the embedded Temporal dev server and PostgreSQL")
    dev.add_argument("action", choices=["up", "down", "status"])
    return parser


def _model(model: type[Model], **fields: Any) -> Any:
    """Builds a request model; a validation failure becomes `InvalidInput` naming the flag."""
    try:
        return model(**fields)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "request"
        field = _FLAGS.get(where, where)
        reason = first["msg"].removeprefix("Value error, ")
        if first["type"] == "string_pattern_mismatch":
            reason = f"{first['input']!r} is not an id: use letters, digits and . _ : @ / - (no spaces)"
        raise InvalidInput(field, reason) from None


def _currency(text: str) -> str:
    return check_currency(text, "--currency")


def _whole(text: str, field: str, *, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise InvalidInput(field, f"{text!r} is not a whole number from {low} to {high}")
    return int(text)


def grant_request(args: argparse.Namespace) -> GrantRequest:
    currency = _currency(args.currency)
    coupon = None
    amount = None
    if args.credit is not None:
        for flag, given in (("--coupon-cap", args.coupon_cap), ("--min-order", args.min_order), ("--uses", args.uses)):
            if given is not None:
                raise InvalidInput(flag, "applies to coupons only (--coupon-off or --coupon-percent)")
        amount = parse_amount(args.credit, currency, "--credit")
    else:
        if args.coupon_cap is not None and args.coupon_percent is None:
            raise InvalidInput("--coupon-cap", "applies to --coupon-percent coupons only")
        coupon = _model(
            CouponTerms,
            amount_off=parse_amount(args.coupon_off, currency, "--coupon-off") if args.coupon_off else None,
            percent_off=_whole(args.coupon_percent, "--coupon-percent", low=1, high=100)
            if args.coupon_percent
            else None,
            cap=parse_amount(args.coupon_cap, currency, "--coupon-cap") if args.coupon_cap else None,
            min_order=parse_amount(args.min_order, currency, "--min-order") if args.min_order else None,
            uses=_whole(args.uses, "--uses", low=1, high=10_000) if args.uses else 1,
        )
    request: GrantRequest = _model(
        GrantRequest,
        lot_id=args.lot,
        customer_id=args.customer,
        currency=currency,
        kind="credit" if amount is not None else "coupon",
        amount=amount,
        coupon=coupon,
        promotion_id=args.promotion,
        effective_at=parse_instant(args.effective_at, "--effective-at") if args.effective_at else None,
        expires_at=parse_instant(args.expires_at, "--expires-at") if args.expires_at else None,
        expires_in=parse_duration(args.expires_in, "--expires-in") if args.expires_in else None,
        remind_before=parse_duration(args.remind_before, "--remind-before") if args.remind_before else None,
    )
    return request


def redeem_request(args: argparse.Namespace) -> RedeemRequest:
    currency = _currency(args.currency)
    request: RedeemRequest = _model(
        RedeemRequest,
        customer_id=args.customer,
        order_id=args.order,
        currency=currency,
        total=parse_amount(args.total, currency, "--total"),
        coupon_lot_id=args.coupon,
        max_credit=parse_amount(args.max_credit, currency, "--max-credit", allow_zero=True)
        if args.max_credit is not None
        else None,
    )
    return request


async def _reverse_request(args: argparse.Namespace, client: IncentivesClient) -> ReverseRequest:
    amount = None
    if args.amount is not None:
        # The amount is in the order's currency, which only the ledger knows.
        currency = await client.order_currency(args.customer, args.order)
        amount = parse_amount(args.amount, currency, "--amount")
    request: ReverseRequest = _model(
        ReverseRequest, customer_id=args.customer, order_id=args.order, reversal_id=args.reversal, amount=amount
    )
    return request


def _emit(args: argparse.Namespace, console: Console, result: Model, show: Callable[[Console, Any], None]) -> None:
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        show(console, result)


async def _run(args: argparse.Namespace, settings: Settings, console: Console) -> None:
    if args.command == "dev":
        await _dev(args.action, settings, console)
        return
    if args.command == "worker":
        from worker import run_worker

        await run_worker(settings)
        return
    if args.command == "replay":
        await _replay(args.histories, console)
        return
    # Parse everything the command line can tell before touching any server.
    request: Model | None = None
    if args.command == "grant":
        request = grant_request(args)
    elif args.command == "redeem":
        request = redeem_request(args)
    elif args.command == "revoke":
        request = _model(RevokeRequest, customer_id=args.customer, lot_id=args.lot, reason=args.reason)
    async with connect(settings) as client:
        if args.command == "grant":
            assert isinstance(request, GrantRequest)
            _emit(args, console, await client.grant(request), render.print_lot)
        elif args.command == "redeem":
            assert isinstance(request, RedeemRequest)
            _emit(args, console, await client.redeem(request), render.print_redemption)
        elif args.command == "reverse":
            _emit(args, console, await client.reverse(await _reverse_request(args, client)), render.print_reversal)
        elif args.command == "revoke":
            assert isinstance(request, RevokeRequest)
            _emit(args, console, await client.revoke(request), render.print_revocation)
        elif args.command == "wallet":
            _emit(args, console, await client.wallet(args.customer), render.print_wallet)


async def _dev(action: str, settings: Settings, console: Console) -> None:
    if action == "up":
        for line in devstack.describe(await devstack.up(settings)):
            console.print(line, highlight=False, soft_wrap=True)
    elif action == "down":
        stopped = devstack.down(settings)
        console.print("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    else:
        for line in devstack.describe(devstack.status(settings)):
            console.print(line, highlight=False, soft_wrap=True)


async def _replay(paths: list[Path], console: Console) -> None:
    """Replays each history with the workflows this code registers; `Rejected` if any diverges."""
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    diverged = []
    for path in paths:
        try:
            history = WorkflowHistory.from_json(path.stem, path.read_text())
        except (OSError, ValueError, KeyError) as error:
            raise InvalidInput(str(path), f"not a workflow history in JSON ({error})") from None
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        if result.replay_failure is None:
            console.print(f"[green]ok[/green]       {path} ({len(history.events)} events)")
        else:
            console.print(f"[red]diverged[/red] {path}: {result.replay_failure}")
            diverged.append(str(path))
    if diverged:
        raise Rejected(
            f"{len(diverged)} of {len(paths)} histories do not replay against this code: {', '.join(diverged)}"
        )


def _fail(code: int, message: str) -> int:
    print(f"incentives: {message}", file=sys.stderr)
    return code


def run(argv: Sequence[str] | None = None) -> int:
    """The CLI as a function: parses `argv`, runs the command, returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as usage:  # argparse has printed the usage error (or --help)
        return usage.code if isinstance(usage.code, int) else EXIT_BAD_INPUT
    console = render.console()
    try:
        settings = Settings()
        asyncio.run(_run(args, settings, console))
    except InvalidInput as error:
        return _fail(EXIT_BAD_INPUT, f"error: {error.field}: {error.reason}")
    except Rejected as error:
        return _fail(EXIT_REJECTED, f"rejected ({type(error).__name__}): {error.message}")
    except Unavailable as error:
        return _fail(EXIT_UNAVAILABLE, f"unavailable: {error}")
    except ValidationError as error:
        return _fail(EXIT_BAD_INPUT, f"error: settings: {error.errors()[0]['msg']}")
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`); nothing left to say to it.
        sys.stderr.close()
        return EXIT_OK
    return EXIT_OK


def main() -> None:
    sys.exit(run())
