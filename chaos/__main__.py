"""`./dev chaos [--ops N] [--faults K] [--seed S]`: thousands of random operations through the real
stack while workers, Postgres, the Temporal server and NATS are killed under them, then the books
proved against an independent model, the event stream against the outbox, and the workers' metrics
against the ledger. Exit 0 with 0 violations; exit 1 listing them. A failing seed sends the same
operation sequence again."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client

from chaos import delivery, metrics_view
from chaos.books import Verdict
from chaos.checks import CLOCK_GRACE, check
from chaos.driver import Driver, Outcome
from chaos.stack import FAULTS, Stack
from chaos.workload import plan
from incentives.adapters.broker import connect_broker, ensure_stream
from incentives.adapters.db import Pool
from incentives.adapters.logs import configure_logging
from incentives.adapters.settings import WORKER_ROLE, Settings
from incentives.adapters.temporal import DATA_CONVERTER


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="./dev chaos", description=__doc__)
    parser.add_argument("--ops", type=int, default=5000, help="operations to send (default 5000)")
    parser.add_argument("--faults", type=int, default=50, help="faults to inject, spread over the run (default 50)")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000, help="the workload's seed")
    parser.add_argument("--concurrency", type=int, default=16, help="operations in flight at once (default 16)")
    parser.add_argument("--json", type=Path, help="also write the summary to this file")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chaos-") as home:
        stack = Stack(Path(home))
        await stack.start()
        try:
            temporal = await Client.connect(stack.temporal.address, data_converter=DATA_CONVERTER)
            pool = await stack.pool()
            workload = plan(args.seed, args.ops, args.faults, FAULTS)
            driver = Driver(stack, temporal, pool, workload, args.concurrency)
            outcomes = await driver.run()
            await driver.settle()
            stack.stop_worker()  # the books stop moving: what is checked is what is final
            clock_stopped = datetime.now(UTC)
            await pool.close()
            pool = await stack.pool()
            verdict = await check(pool, outcomes, driver.terms, due_by=clock_stopped - CLOCK_GRACE)
            await _events_delivered(stack, pool, verdict)
            metrics = metrics_view.judge(
                metrics_view.read_view(stack.metrics_dir), await metrics_view.ledger_figures(pool), verdict
            )
            await pool.close()
        finally:
            stack.stop()
    return _summary(args, outcomes, stack.faults + driver.abandoned, verdict, started) | {"metrics": metrics}


async def _events_delivered(stack: Stack, pool: Pool, verdict: Verdict) -> None:
    """The books are final: a relay drains what the worker had not published, then the stream is
    checked against the outbox."""
    broker = await connect_broker(Settings(nats_url=stack.nats.url), name="chaos")
    try:
        js = broker.jetstream()
        await ensure_stream(js)
        if not await delivery.drain(pool, js, stack.postgres.url(user=WORKER_ROLE)):
            verdict.fail("delivered", "the outbox was not drained within the deadline")
        await delivery.check(pool, await delivery.stream(js), verdict)
    finally:
        await broker.close()


def _summary(
    args: argparse.Namespace, outcomes: list[Outcome], faults: Counter[str], verdict: Verdict, started: float
) -> dict[str, Any]:
    return {
        "seed": args.seed,
        "operations": len(outcomes),
        "by_kind": dict(Counter(outcome.op.kind for outcome in outcomes)),
        "answers": dict(Counter(outcome.status for outcome in outcomes)),
        "refusals": dict(Counter(outcome.rule for outcome in outcomes if outcome.status in ("rejected", "refused"))),
        "retried": sum(1 for outcome in outcomes if outcome.attempts > 1),
        "faults": dict(faults),
        "checked": dict(verdict.checked),
        "violations_by_check": {name: len(found) for name, found in verdict.by_check.items() if found},
        "violations": verdict.violations,
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    configure_logging("ERROR")
    summary = asyncio.run(run(args))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    print(
        f"seed {summary['seed']}: {summary['operations']} operations, {sum(summary['faults'].values())} faults, "
        f"{len(summary['violations'])} violations ({summary['seconds']}s)",
        file=sys.stderr,
    )
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
