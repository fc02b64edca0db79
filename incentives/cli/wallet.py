"""The customer's operations: `grant`, `redeem`, `reverse`, `revoke`, and `wallet` to look."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from rich.console import Console

from incentives.adapters.migrations import connect_reader
from incentives.adapters.settings import Settings
from incentives.app import views
from incentives.app.client import IncentivesClient, connect
from incentives.cli import flags, render
from incentives.cli.arguments import Parser, command
from incentives.cli.exits import EXIT_OK
from incentives.domain.models import Model, Reversal

ModelT = TypeVar("ModelT", bound=Model)

CUSTOMER_HELP = "the customer's id: 1 to 128 letters, digits and . _ : @ / - (no spaces)"
JSON_HELP = "print the result as JSON: amounts are integers in minor units beside a `currency` field"
TIMEOUT_HELP = (
    "how long to wait for the wallet's answer (default 30s; 30s, 2m, PT1M); past it, exit 3: "
    "the outcome is unknown, and the same command again is safe"
)
AMOUNTS = "Amounts are decimals in major units of the currency (10.00 USD, 1500 JPY, 1.250 KWD)."


def register(commands: argparse._SubParsersAction[Parser]) -> None:
    _grant_parser(commands)
    _redeem_parser(commands)
    _reverse_parser(commands)
    _revoke_parser(commands)
    _wallet_parser(commands)


def _customer(parser: Parser) -> None:
    parser.add_argument("customer", metavar="CUSTOMER", help=CUSTOMER_HELP)


def _output(parser: Parser, *, timeout: bool = True) -> None:
    if timeout:
        parser.add_argument("--timeout", metavar="DURATION", help=TIMEOUT_HELP)
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def _grant_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    grant = command(
        commands,
        "grant",
        "put a credit or a coupon into a customer's wallet",
        "The lot id is the idempotency key: the same command again returns the lot and writes nothing;\n"
        "the same lot id with other terms is refused (LotConflict).\n"
        f"{AMOUNTS}\n"
        "Durations: 30s, 15m, 2h, 14d, 2w or ISO 8601 (P14D, PT2H). Instants: ISO 8601 with a time zone.\n"
        "A flag given empty is refused, never taken as not given.",
        "  incentives grant alice --lot welcome-alice --currency USD --credit 10.00 --expires-in 14d --remind-before 3d\n"
        "  incentives grant alice --lot 20off-alice --currency USD --coupon-percent 20 --coupon-cap 15.00 \\\n"
        "      --min-order 20.00 --uses 1 --expires-in 7d\n"
        "  incentives grant alice --lot xmas-alice --currency EUR --credit 5 --effective-at 2026-12-24T00:00:00+01:00 \\\n"
        "      --expires-at 2027-01-07T00:00:00+01:00 --promotion xmas-2026 --json",
    )
    _customer(grant)
    grant.add_argument("--lot", required=True, metavar="ID", help="the lot's id: the idempotency key of the grant")
    grant.add_argument("--currency", required=True, metavar="CUR", help="ISO 4217 code, e.g. USD, EUR, JPY")
    value = grant.add_mutually_exclusive_group(required=True)
    value.add_argument("--credit", metavar="AMOUNT", help="a credit of AMOUNT (e.g. 10.00)")
    value.add_argument("--coupon-off", metavar="AMOUNT", help="a coupon taking AMOUNT off an order")
    value.add_argument("--coupon-percent", metavar="P", help="a coupon taking P%% (1 to 100) off an order")
    grant.add_argument("--coupon-cap", metavar="AMOUNT", help="the most a --coupon-percent coupon takes off")
    grant.add_argument("--min-order", metavar="AMOUNT", help="the smallest order total the coupon applies to")
    grant.add_argument("--uses", metavar="N", help="how many orders the coupon applies to (1 to 10000, default 1)")
    expiry = grant.add_mutually_exclusive_group()
    expiry.add_argument("--expires-at", metavar="ISO8601", help="when what is left expires, with a time zone")
    expiry.add_argument("--expires-in", metavar="DURATION", help="expiry this long after the grant is applied")
    grant.add_argument("--effective-at", metavar="ISO8601", help="pending (not usable) until then, with a time zone")
    grant.add_argument(
        "--remind-before",
        metavar="DURATION",
        help="send one reminder this long before expiry (shorter than the lot's life)",
    )
    grant.add_argument("--promotion", metavar="ID", help="the promotion the lot belongs to, for reports")
    _output(grant)
    grant.set_defaults(handler=_grant)


def _redeem_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    redeem = command(
        commands,
        "redeem",
        "apply a customer's coupon and credits to an order",
        "The coupon first (an amount, or a percentage rounded down and capped), then credits, soonest\n"
        "expiry first; never more than the order total or --max-credit. The order id is the idempotency\n"
        "key: the same command again returns the same breakdown.\n"
        f"{AMOUNTS}",
        "  incentives redeem alice --order o-1001 --total 42.50 --currency USD --coupon 20off-alice\n"
        "  incentives redeem alice --order o-1002 --total 10.00 --currency USD --max-credit 0 --json",
    )
    _customer(redeem)
    redeem.add_argument("--order", required=True, metavar="ID", help="the order's id: the idempotency key")
    redeem.add_argument("--total", required=True, metavar="AMOUNT", help="the order's total, before any discount")
    redeem.add_argument("--currency", required=True, metavar="CUR", help="the order's ISO 4217 currency code")
    redeem.add_argument("--coupon", metavar="LOT_ID", help="the coupon lot to apply (credits apply without it)")
    redeem.add_argument("--max-credit", metavar="AMOUNT", help="the most credit to use on this order (0: coupon only)")
    _output(redeem)
    redeem.set_defaults(handler=_redeem)


def _reverse_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    reverse = command(
        commands,
        "reverse",
        "give back what an order redeemed (a cancellation, a refund)",
        "Last applied, first restored, to the exact lots the discount came from. Value given back to a\n"
        "lot that has expired or was revoked is written off again at once (the output notes it). The\n"
        "reversal id is the idempotency key. --amount is in the order's currency.",
        "  incentives reverse alice --order o-1001 --reversal refund-1 --amount 5.00\n"
        "  incentives reverse alice --order o-1001 --reversal cancel-1 --json",
    )
    _customer(reverse)
    reverse.add_argument("--order", required=True, metavar="ID", help="the redeemed order's id")
    reverse.add_argument("--reversal", required=True, metavar="ID", help="the reversal's id: the idempotency key")
    reverse.add_argument(
        "--amount", metavar="AMOUNT", help="the part of the discount to give back (default: all of it)"
    )
    _output(reverse)
    reverse.set_defaults(handler=_reverse)


def _revoke_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    revoke = command(
        commands,
        "revoke",
        "remove what is left of a lot (support, fraud)",
        "The lot's remaining value is written off with the reason; revoking it again returns the first\n"
        "result. The reason is kept on the ledger row: printable text, not blank, at most 500 characters.",
        '  incentives revoke alice --lot loyalty-alice --reason "fraud review #4411"',
    )
    _customer(revoke)
    revoke.add_argument("--lot", required=True, metavar="ID", help="the lot to revoke")
    revoke.add_argument("--reason", required=True, metavar="TEXT", help="why, for whoever reads the ledger later")
    _output(revoke)
    revoke.set_defaults(handler=_revoke)


def _wallet_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    wallet = command(
        commands,
        "wallet",
        "show a customer's balances, lots and ledger, read from Postgres",
        "Reads Postgres only (Temporal may be down). The ledger shows the newest 200 rows unless told\n"
        "otherwise, and says how many it left out; each row names the workflow run that wrote it.",
        "  incentives wallet alice\n  incentives wallet alice --all\n  incentives wallet alice --limit 20 --json",
    )
    _customer(wallet)
    rows = wallet.add_mutually_exclusive_group()
    rows.add_argument("--limit", metavar="N", help="show the newest N ledger rows (default 200)")
    rows.add_argument("--all", action="store_true", help="show every ledger row")
    _output(wallet, timeout=False)
    wallet.set_defaults(handler=_wallet)


def _emit(args: argparse.Namespace, console: Console, result: ModelT, show: Callable[[Console, ModelT], None]) -> None:
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        show(console, result)


# Each handler parses everything the command line can tell before touching any server.


async def _grant(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    request = flags.grant_request(args, datetime.now(UTC))
    deadline = flags.timeout(args)
    async with connect(settings) as client:
        _emit(args, console, await client.grant(request, timeout=deadline), render.print_lot)
    return EXIT_OK


async def _redeem(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    request = flags.redeem_request(args)
    deadline = flags.timeout(args)
    async with connect(settings) as client:
        _emit(args, console, await client.redeem(request, timeout=deadline), render.print_redemption)
    return EXIT_OK


async def _reverse(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    flags.reverse_request(args, None)
    deadline = flags.timeout(args)
    async with connect(settings) as client:
        currency = await client.order_currency(args.customer, args.order) if args.amount is not None else None
        reversal = await client.reverse(flags.reverse_request(args, currency), timeout=deadline)
        if args.json:
            _emit(args, console, reversal, render.print_reversal)
        else:
            render.print_reversal(console, reversal, void_coupons=await _void_coupons(client, reversal))
    return EXIT_OK


async def _void_coupons(client: IncentivesClient, reversal: Reversal) -> set[str]:
    """The coupons this reversal gave a use back to that had expired or been revoked meanwhile:
    the use came back to a coupon nobody can redeem, which the ledger does not count as written off."""
    coupons = {part.lot_id for part in reversal.restored if part.kind == "coupon"}
    if not coupons:
        return set()
    lots = (await client.wallet(reversal.customer_id, ledger_limit=0)).lots
    return {
        lot.lot_id
        for lot in lots
        if lot.lot_id in coupons
        and (
            lot.status in ("expired", "revoked")
            or (lot.expires_at is not None and lot.expires_at <= reversal.reversed_at)
        )
    }


async def _revoke(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    request = flags.revoke_request(args)
    deadline = flags.timeout(args)
    async with connect(settings) as client:
        _emit(args, console, await client.revoke(request, timeout=deadline), render.print_revocation)
    return EXIT_OK


async def _wallet(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Postgres only: the ledger is the truth, and reading it must work while Temporal is down."""
    customer, limit = flags.customer(args), flags.ledger_limit(args)
    pool = await connect_reader(settings, max_size=1)
    try:
        view = await views.wallet_view(pool, customer, ledger_limit=limit)
    finally:
        await pool.close()
    _emit(args, console, view, render.print_wallet)
    return EXIT_OK
