"""The customer's operations: `grant`, `redeem`, `reverse`, `revoke`, and `wallet` to look."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TypeVar

from rich.console import Console

from incentives.adapters.settings import Settings
from incentives.app.client import connect
from incentives.cli import flags, render
from incentives.cli.exits import EXIT_OK
from incentives.domain.models import Model

ModelT = TypeVar("ModelT", bound=Model)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _grant_parser(commands.add_parser("grant", help="put a credit or a coupon into a customer's wallet"))
    _redeem_parser(commands.add_parser("redeem", help="apply a customer's incentives to an order"))
    _reverse_parser(commands.add_parser("reverse", help="give back what an order redeemed (cancel, refund)"))

    revoke = commands.add_parser("revoke", help="remove what is left of a lot (support, fraud)")
    revoke.add_argument("customer")
    revoke.add_argument("--lot", required=True)
    revoke.add_argument("--reason", required=True)
    revoke.add_argument("--json", action="store_true")
    revoke.set_defaults(handler=_revoke)

    wallet = commands.add_parser("wallet", help="a customer's balances, lots and ledger, from Postgres")
    wallet.add_argument("customer")
    wallet.add_argument("--json", action="store_true")
    wallet.set_defaults(handler=_wallet)


def _grant_parser(grant: argparse.ArgumentParser) -> None:
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
    grant.set_defaults(handler=_grant)


def _redeem_parser(redeem: argparse.ArgumentParser) -> None:
    redeem.add_argument("customer")
    redeem.add_argument("--order", required=True, help="order id: the idempotency key of the redemption")
    redeem.add_argument("--total", required=True, metavar="AMOUNT")
    redeem.add_argument("--currency", required=True)
    redeem.add_argument("--coupon", metavar="LOT_ID")
    redeem.add_argument("--max-credit", metavar="AMOUNT", help="most credit to use on this order (0: coupon only)")
    redeem.add_argument("--json", action="store_true")
    redeem.set_defaults(handler=_redeem)


def _reverse_parser(reverse: argparse.ArgumentParser) -> None:
    reverse.add_argument("customer")
    reverse.add_argument("--order", required=True)
    reverse.add_argument("--reversal", required=True, help="reversal id: the idempotency key of the reversal")
    reverse.add_argument("--amount", metavar="AMOUNT", help="part of the discount to give back (default: all)")
    reverse.add_argument("--json", action="store_true")
    reverse.set_defaults(handler=_reverse)


def _emit(args: argparse.Namespace, console: Console, result: ModelT, show: Callable[[Console, ModelT], None]) -> None:
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        show(console, result)


# Each handler parses everything the command line can tell before touching any server.


async def _grant(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    request = flags.grant_request(args)
    async with connect(settings) as client:
        _emit(args, console, await client.grant(request), render.print_lot)
    return EXIT_OK


async def _redeem(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    request = flags.redeem_request(args)
    async with connect(settings) as client:
        _emit(args, console, await client.redeem(request), render.print_redemption)
    return EXIT_OK


async def _reverse(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    flags.reverse_request(args, None)  # ids checked before any server is contacted
    async with connect(settings) as client:
        currency = await client.order_currency(args.customer, args.order) if args.amount is not None else None
        _emit(args, console, await client.reverse(flags.reverse_request(args, currency)), render.print_reversal)
    return EXIT_OK


async def _revoke(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    request = flags.revoke_request(args)
    async with connect(settings) as client:
        _emit(args, console, await client.revoke(request), render.print_revocation)
    return EXIT_OK


async def _wallet(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    async with connect(settings) as client:
        _emit(args, console, await client.wallet(args.customer), render.print_wallet)
    return EXIT_OK
