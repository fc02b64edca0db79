"""Operating the engine: `worker`, `replay`, and the embedded `dev` stack."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console

from incentives.adapters.logs import get_logger
from incentives.adapters.settings import Settings
from incentives.adapters.temporal import connect_temporal
from incentives.app.history_checks import MAX_HISTORY_BYTES
from incentives.app.replay import ReplayOutcome, replay_files, replay_workflow
from incentives.app.worker import run_worker
from incentives.cli.arguments import Parser, command
from incentives.cli.exits import EXIT_OK, EXIT_REJECTED, EXIT_UNAVAILABLE
from incentives.devstack import commands as devstack
from incentives.domain.inputs import parse_whole


def register(commands: argparse._SubParsersAction[Parser]) -> None:
    worker = command(
        commands,
        "worker",
        "run a worker: the wallets' workflows and the ledger activities",
        "Polls INCENTIVES_TASK_QUEUE until SIGTERM or Ctrl-C, then shuts down gracefully: activities in\n"
        "flight get 10 s to finish, and Temporal retries anything unfinished elsewhere. Logs go to stdout:\n"
        "JSON lines when stdout is not a terminal (INCENTIVES_LOG_LEVEL, default INFO). Prometheus metrics\n"
        "on http://127.0.0.1:9464/metrics (INCENTIVES_METRICS_HOST, INCENTIVES_METRICS_PORT, --metrics-port):\n"
        "what the ledger decided, the books' gauges (from one worker at a time) and the Temporal SDK's.",
        "  incentives worker\n  incentives --address temporal.internal:7233 --namespace prod worker > worker.log\n"
        "  incentives worker --metrics-port 9465",
    )
    worker.add_argument(
        "--metrics-port",
        metavar="PORT",
        help="serve /metrics on this port of INCENTIVES_METRICS_HOST (default INCENTIVES_METRICS_PORT, or 9464; 0: none)",
    )
    worker.set_defaults(handler=_worker)

    replay = command(
        commands,
        "replay",
        "replay workflow histories against this code: saved files, or workflows fetched by id",
        "Exit 0 when every history replays; exit 1 when the code diverges from one, naming the first\n"
        "event it disagrees with and the command to see it. A path that exists (or ends in .json) is a\n"
        "file: a history in Temporal's JSON form (`temporal workflow show --output json`, `incentives\n"
        f"history --json`), a regular file of at most {MAX_HISTORY_BYTES >> 20} MiB; anything else is a workflow id, whose every\n"
        "run is fetched from the server. Exit 2, before anything is replayed, for a file that is not one\n"
        "run's history of a workflow type this code registers.",
        "  incentives replay history.json\n  incentives replay tests/replay/histories/*/*.json\n"
        "  incentives replay wallet:alice promotion:spring-credit-2027",
    )
    replay.add_argument(
        "histories", nargs="+", metavar="HISTORY.json|WORKFLOW_ID", help="a history file, or a workflow id to fetch"
    )
    replay.set_defaults(handler=_replay)

    dev = command(
        commands,
        "dev",
        "the embedded Temporal dev server and PostgreSQL",
        "`up` starts them (or reuses them) and applies the migrations; `down` stops them; `status` says\n"
        "what runs where and checks that Temporal and Postgres answer: exit 3 when either does not, so\n"
        "it serves as a health check, for external servers too (TEMPORAL_ADDRESS, DATABASE_URL).",
        "  incentives dev up\n  incentives dev status || echo 'the stack is down'\n  incentives dev down",
    )
    dev.add_argument("action", choices=["up", "down", "status"], help="up, down or status")
    dev.set_defaults(handler=_dev)


async def _worker(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    if args.metrics_port is not None:
        port = parse_whole(args.metrics_port, "--metrics-port", low=0, high=65535)
        settings = settings.model_copy(update={"metrics_port": port})
    try:
        await run_worker(settings)
    except Exception as error:
        # Into the worker's own (JSON) log too, where its supervisor looks; the command's one
        # stderr line and exit code follow as for any command.
        get_logger("incentives.worker").error("worker failed", error_type=type(error).__name__, error=str(error))
        raise
    return EXIT_OK


async def _replay(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Exit 1 when any history diverges: this code would break the workflows it was recorded from."""
    files = [Path(source) for source in args.histories if _is_file(source)]
    ids = [source for source in args.histories if not _is_file(source)]
    outcomes = await replay_files(files)
    if ids:
        client = await connect_temporal(settings)
        for workflow_id in ids:
            outcomes += await replay_workflow(client, workflow_id)
    for outcome in outcomes:
        if outcome.failure is None:
            console.print(f"[green]ok[/green]       {outcome.source} ({outcome.events} events)", highlight=False)
        else:
            console.print(f"[red]diverged[/red] {outcome.source}", highlight=False)
            console.print(
                f"  at {outcome.diverged_at or 'an event it could not name'}: {_see(outcome)}", highlight=False
            )
            console.print(f"  {outcome.failure}", markup=False, highlight=False)
    diverged = [outcome.source for outcome in outcomes if outcome.failure is not None]
    if diverged:
        console.print(f"{len(diverged)} of {len(outcomes)} histories do not replay against this code")
        return EXIT_REJECTED
    return EXIT_OK


def _is_file(source: str) -> bool:
    """A path to a history (anything that exists there, even a broken link, a directory or a FIFO,
    which reading then refuses; or anything ending in .json), or else a workflow id."""
    return source.endswith(".json") or os.path.lexists(source)


def _see(outcome: ReplayOutcome) -> str:
    if " run " not in outcome.source:
        return f"open {outcome.source} at that event"
    workflow_id, run_id = outcome.source.split(" run ", 1)
    return f"temporal workflow show --workflow-id {workflow_id} --run-id {run_id}"


async def _dev(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    if args.action == "down":
        stopped = devstack.down(settings)
        console.print("stopped " + ", ".join(stopped) if stopped else "nothing was running")
        return EXIT_OK
    current = await devstack.up(settings) if args.action == "up" else devstack.status(settings)
    answers = await devstack.health(settings)
    for line in devstack.describe(current, answers):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    if answers.ok:
        return EXIT_OK
    down = [name for name, why in answers.problems() if why]
    # The one stderr line every failing command writes; the lines above say why, server by server.
    print(f"incentives: unavailable: {' and '.join(down)} did not answer (see above)", file=sys.stderr)
    return EXIT_UNAVAILABLE
