"""`incentives api` (serve the HTTP API) and `incentives api-key create | list | revoke`."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys

from rich.console import Console

from incentives.adapters.endpoints import endpoints
from incentives.adapters.migrations import connect_database, connect_reader
from incentives.adapters.settings import Settings
from incentives.app import api_keys
from incentives.app.listening import bind, inheritable
from incentives.cli.arguments import Parser, command
from incentives.cli.exits import EXIT_OK
from incentives.domain.inputs import parse_whole

DEFAULT_HOST = "127.0.0.1"
_SCOPES = "\n".join(f"  {scope:<11} {what}" for scope, what in api_keys.SCOPE_HELP.items())


def register(commands: argparse._SubParsersAction[Parser]) -> None:
    api = command(
        commands,
        "api",
        "serve the HTTP API: checkout, support and campaign tools call it",
        "The same operations, models and rules as the Python client, over HTTP (JSON; amounts in minor\n"
        "units), with the same settings. Callers send `Authorization: Bearer KEY` (`incentives api-key\n"
        "create`). OpenAPI at /openapi.json, interactive docs at /docs, /healthz and /readyz for probes.\n"
        "SIGTERM or Ctrl-C lets the requests in flight finish, then exits. Logs are JSON lines on stdout.",
        "  incentives api\n  incentives api --host 0.0.0.0 --port 9000\n"
        "  INCENTIVES_API_PORT=9000 incentives api > api.log",
    )
    api.add_argument("--host", metavar="HOST", help=f"the address to listen on (default {DEFAULT_HOST})")
    api.add_argument("--port", metavar="PORT", help="the port to listen on (default INCENTIVES_API_PORT, or 8080)")
    api.set_defaults(handler=_api)
    keys = command(
        commands,
        "api-key",
        "make, list and revoke the HTTP API's keys",
        "A key is shown once, when it is made; Postgres keeps only its SHA-256. Revoking it holds from the\n"
        f"API's next request. Scopes (a key may have several):\n{_SCOPES}",
        "  incentives api-key create --name checkout-eu --scope checkout\n"
        "  incentives api-key create --name support --scope grant --scope read --json\n"
        "  incentives api-key list\n  incentives api-key revoke checkout-eu",
    )
    actions: argparse._SubParsersAction[Parser] = keys.add_subparsers(
        dest="action", required=True, parser_class=Parser, metavar="ACTION", title="actions", help="one of:"
    )
    _key_actions(actions)


def _key_actions(actions: argparse._SubParsersAction[Parser]) -> None:
    create = command(
        actions,
        "create",
        "make a key and print it, this once",
        f"Scopes:\n{_SCOPES}",
        "  incentives api-key create --name checkout-eu --scope checkout --json",
    )
    create.add_argument(
        "--name", required=True, metavar="NAME", help="the key's name: 1 to 128 of A-Z a-z 0-9 . _ : @ / -"
    )
    create.add_argument(
        "--scope",
        required=True,
        action="append",
        metavar="SCOPE",
        help=f"one of {', '.join(api_keys.SCOPES)}; repeat it",
    )
    create.add_argument("--json", action="store_true", help="print {key, name, scopes} as JSON")
    create.set_defaults(handler=_create)
    listing = command(
        actions,
        "list",
        "list the keys: names, scopes, when made and revoked (never a key)",
        "Every key ever made, oldest first, in use or revoked. Reads Postgres; never migrates it.",
        "  incentives api-key list\n  incentives api-key list --json",
    )
    listing.add_argument("--json", action="store_true", help="print them as JSON")
    listing.set_defaults(handler=_list)
    revoke = command(
        actions,
        "revoke",
        "revoke a key: the API refuses it from its next request",
        "The key's row stays, with when it was revoked; its name may be given to a new key.",
        "  incentives api-key revoke checkout-eu",
    )
    revoke.add_argument("name", metavar="NAME", help="the key's name")
    revoke.set_defaults(handler=_revoke)


async def _api(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Binds the socket here (a bad host or a busy port is exit 2 from this command), then becomes
    `python -m incentives.http`, which takes the socket over: same pid, so a supervisor's SIGTERM
    reaches the server."""
    port = settings.api_port if args.port is None else parse_whole(args.port, "--port", low=1, high=65535)
    endpoints(settings)  # a malformed Temporal configuration is refused now, not in the server's log
    listening = bind(DEFAULT_HOST if args.host is None else args.host, port)
    environment = dict(os.environ)
    if settings.temporal_address is not None:
        environment["TEMPORAL_ADDRESS"] = settings.temporal_address
    if settings.temporal_namespace is not None:
        environment["TEMPORAL_NAMESPACE"] = settings.temporal_namespace
    argv = [sys.executable, "-m", "incentives.http", "--fd", str(inheritable(listening))]
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os.execve(sys.executable, argv, environment)


async def _create(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    name, scopes = api_keys.check_key_name(args.name), api_keys.check_scopes(args.scope)
    pool = await connect_database(settings, max_size=1)
    try:
        key = await api_keys.create_key(pool, name, scopes)
    finally:
        await pool.close()
    if args.json:
        print(key.model_dump_json(indent=2))
    else:
        console.print(
            f"API key {key.name} (scopes: {', '.join(key.scopes)}), shown this once; keep it secret:\n{key.key}",
            markup=False,
            highlight=False,
        )
    return EXIT_OK


async def _list(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    pool = await connect_reader(settings, max_size=1)
    try:
        keys = await api_keys.list_keys(pool)
    finally:
        await pool.close()
    if args.json:
        print(json.dumps([key.model_dump(mode="json") for key in keys], indent=2))
        return EXIT_OK
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "in use"
        console.print(
            f"{key.name}  {','.join(key.scopes)}  made {key.created_at:%Y-%m-%d %H:%M}  {state}",
            markup=False,
            highlight=False,
        )
    if not keys:
        console.print("no keys yet: incentives api-key create --name NAME --scope SCOPE")
    return EXIT_OK


async def _revoke(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    name = api_keys.check_key_name(args.name, "NAME")
    pool = await connect_database(settings, max_size=1)
    try:
        key = await api_keys.revoke_key(pool, name)
    finally:
        await pool.close()
    console.print(f"revoked API key {key.name}: the API refuses it from its next request", markup=False)
    return EXIT_OK
