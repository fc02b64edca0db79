"""Operating the engine: `worker`, `replay`, and the embedded `dev` stack."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from incentives.adapters.settings import Settings
from incentives.app.replay import replay_files
from incentives.app.worker import run_worker
from incentives.cli.exits import EXIT_OK, EXIT_REJECTED
from incentives.devstack import commands as devstack


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = commands.add_parser("worker", help="run a worker: the wallets' workflows and the ledger activities")
    worker.set_defaults(handler=_worker)

    replay = commands.add_parser(
        "replay", help="replay saved workflow histories against this code (temporal workflow show --output json)"
    )
    replay.add_argument("histories", nargs="+", type=Path, metavar="HISTORY.json")
    replay.set_defaults(handler=_replay)

    dev = commands.add_parser("dev", help="the embedded Temporal dev server and PostgreSQL")
    dev.add_argument("action", choices=["up", "down", "status"])
    dev.set_defaults(handler=_dev)


async def _worker(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    await run_worker(settings)
    return EXIT_OK


async def _replay(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Exit 1 when any history diverges: this code would break the workflows it was recorded from."""
    outcomes = await replay_files(args.histories)
    for outcome in outcomes:
        if outcome.failure is None:
            console.print(f"[green]ok[/green]       {outcome.path} ({outcome.events} events)")
        else:
            console.print(f"[red]diverged[/red] {outcome.path}: {outcome.failure}")
    diverged = [str(outcome.path) for outcome in outcomes if outcome.failure is not None]
    if diverged:
        console.print(f"{len(diverged)} of {len(outcomes)} histories do not replay against this code")
        return EXIT_REJECTED
    return EXIT_OK


async def _dev(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    if args.action == "up":
        for line in devstack.describe(await devstack.up(settings)):
            console.print(line, highlight=False, soft_wrap=True)
    elif args.action == "down":
        stopped = devstack.down(settings)
        console.print("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    else:
        for line in devstack.describe(devstack.status(settings)):
            console.print(line, highlight=False, soft_wrap=True)
    return EXIT_OK
