"""`incentives events tail`: the event stream, followed from a terminal."""

from __future__ import annotations

import argparse
import functools
import json
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from incentives.adapters.settings import Settings
from incentives.app.event_feed import feed_subject, follow
from incentives.cli.arguments import Parser, command
from incentives.cli.exits import EXIT_OK
from incentives.domain.errors import InvalidInput
from incentives.domain.inputs import check_id, parse_whole, shown
from incentives.domain.money import format_money
from incentives.domain.timeparse import parse_duration, parse_instant


def register(commands: argparse._SubParsersAction[Parser]) -> None:
    group = command(
        commands,
        "events",
        "follow the events every ledger change publishes",
        "Events are CloudEvents on the NATS JetStream stream INCENTIVES (`NATS_URL`, or the embedded\n"
        "server). `incentives events ACTION --help` describes each action.",
        "  incentives events tail\n  incentives events tail --type lot.reminder --since 1h",
    )
    actions: argparse._SubParsersAction[Parser] = group.add_subparsers(
        dest="action", required=True, parser_class=Parser, metavar="ACTION", title="actions", help="one of:"
    )
    tail = command(
        actions,
        "tail",
        "print events as they are published",
        "New events only, unless --since. One line each (time, type, customer or promotion, what\n"
        "changed), or the CloudEvent itself with --json. Ctrl-C stops it.",
        "  incentives events tail --customer alice\n"
        "  incentives events tail --type incentives.order.redeemed --since 2026-12-04T09:00:00Z --json",
    )
    tail.add_argument("--type", metavar="TYPE", help="only this type: incentives.lot.reminder, lot.reminder, ...")
    tail.add_argument("--customer", metavar="CUSTOMER", help="only this customer's (or promotion's) events")
    tail.add_argument("--since", metavar="WHEN", help="from this instant (ISO 8601) or this long ago (10m, 2h, 1d)")
    tail.add_argument("--count", metavar="N", help="stop after N events")
    tail.add_argument("--json", action="store_true", help="print each event as its CloudEvent JSON, one a line")
    tail.set_defaults(handler=_tail)


def _since(text: str | None) -> datetime | None:
    """An instant (ISO 8601, with a time zone), or a duration ago (`10m`, `2h`, `P1D`)."""
    if text is None:
        return None
    try:
        return datetime.now(UTC) - parse_duration(text, "--since")
    except InvalidInput:
        pass
    try:
        return parse_instant(text, "--since")
    except InvalidInput:
        raise InvalidInput(
            "--since", f"{shown(text)} is neither an instant such as 2026-12-04T09:00:00Z nor a duration such as 10m"
        ) from None


async def _tail(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    customer = None if args.customer is None else check_id(args.customer, "--customer")
    count = None if args.count is None else parse_whole(args.count, "--count", low=1, high=10**9)
    subject, since = feed_subject(args.type, customer), _since(args.since)
    seen = 0
    async for event in follow(settings, subject, since):
        print(json.dumps(event) if args.json else _line(event), flush=True)
        seen += 1
        if count is not None and seen >= count:
            break
    return EXIT_OK


def _line(event: dict[str, Any]) -> str:
    """time, type, whom, and what changed: `lot welcome-alice +10.00 USD (remaining 10.00 USD)`."""
    data: dict[str, Any] = event.get("data") or {}
    money = functools.partial(format_money, currency=str(data.get("currency", "")))
    what = ""
    if "lot_id" in data:
        change = int(data["change"])
        sign = "+" if change > 0 else "-" if change < 0 else " "
        what = f"lot {data['lot_id']} {sign}{money(abs(change))} (remaining {money(int(data['remaining']))})"
    elif "reversal_id" in data:
        what = f"order {data['order_id']} reversed {money(int(data['amount']))}"
    elif "order_id" in data:
        what = f"order {data['order_id']} discount {money(int(data['discount']))}"
    elif "threshold" in data:
        what = f"{data['threshold']}% of the budget committed ({money(int(data['committed']))})"
    return f"{event['time']}  {event['type']}  {event['subject']}  {what}".rstrip()
