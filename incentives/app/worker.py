"""The worker: hosts the workflows and the activities on one task queue, relays the outbox's
events to NATS (`incentives.app.relay`; one worker relays at a time) and serves its metrics
(`/metrics`: the ledger's counters, the SDK's, and the books' gauges from one worker at a time).

SIGTERM or SIGINT starts a graceful shutdown: no new tasks are polled, in-flight activities get
`GRACEFUL_SHUTDOWN` to finish, and anything unfinished is handed back to Temporal, which retries
it on another worker (every activity is idempotent, so a retry is safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import all_activities
from activities.counting import COUNTED, Meter
from incentives.adapters.db import Pool, connect_one
from incentives.adapters.endpoints import endpoints
from incentives.adapters.logs import configure_logging, get_logger
from incentives.adapters.metrics import REGISTRY
from incentives.adapters.migrations import connect_worker_database
from incentives.adapters.sdk_metrics import sdk_metrics
from incentives.adapters.settings import DEFAULT_MAX_CACHED_WORKFLOWS, WORKER_ROLE, Settings
from incentives.adapters.temporal import connect_temporal
from incentives.adapters.tracing import configure_tracing, flush_tracing
from incentives.app.book_gauges import BookGauges
from incentives.app.metrics_endpoint import serve_metrics
from incentives.app.relay import relay_forever
from workflows.registry import WORKFLOWS

GRACEFUL_SHUTDOWN = timedelta(seconds=10)
# The sandbox re-imports a workflow's module for every new run: for the wallet, started for every
# customer who acts, that was a third of the worker's CPU per new wallet (module code, the SDK's
# processing of its decorators, the restricted imports). Its module holds no state and is passed
# through: wallets run in the sandbox's event loop with its builtins restricted, but share one
# import. The restrictions on its own calls are checked where replay runs (`Replayer` keeps the
# full sandbox): every recorded history in tests/replay replays the wallet fully restricted. See
# docs/decisions/0005-the-wallet-module-passes-through-the-sandbox.md.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows.wallet")
)


@dataclass(frozen=True)
class WorkerOptions:
    """What differs between the production worker and the tests' and benchmarks' workers."""

    max_cached_workflows: int = DEFAULT_MAX_CACHED_WORKFLOWS
    workflows: Sequence[type[Any]] = field(default_factory=lambda: list(WORKFLOWS))
    meter: Meter = COUNTED  # UNCOUNTED: what the ledger decides is not counted (to measure the cost)


def build_worker(client: Client, pool: Pool, task_queue: str, options: WorkerOptions | None = None) -> Worker:
    """The one way a worker is assembled: the CLI, the demo, the tests and the benchmarks call this."""
    options = options or WorkerOptions()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(options.workflows),
        activities=all_activities(pool, options.meter),
        workflow_runner=WORKFLOW_RUNNER,
        max_cached_workflows=options.max_cached_workflows,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )


async def run_worker(settings: Settings) -> None:
    configure_logging(settings.log_level)
    configure_tracing("incentives-worker")  # before the client connects: its interceptor is chosen then
    log = get_logger("incentives.worker", task_queue=settings.task_queue)
    # Served first: a port that cannot be had stops the worker before it takes any work.
    sdk = sdk_metrics() if settings.metrics_port else None
    gauges = BookGauges(settings.metrics_refresh)
    stop_serving = serve_metrics(settings.metrics_host, settings.metrics_port, [REGISTRY, sdk, gauges]) if sdk else None
    companions: list[asyncio.Task[None]] = []
    pool: Pool | None = None
    try:
        client = await connect_temporal(settings, runtime=sdk.runtime if sdk else None)
        pool = await connect_worker_database(settings)
        if endpoints(settings).worker_database_url == endpoints(settings).database_url:
            log.warning(
                "the worker writes as the database owner: set INCENTIVES_WORKER_DATABASE_URL to a login "
                f"granted {WORKER_ROLE} (see the README)"
            )
        worker = build_worker(
            client, pool, settings.task_queue, WorkerOptions(max_cached_workflows=settings.max_cached_workflows)
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, functools.partial(_shutdown, worker, sig))
        companions.append(asyncio.create_task(relay_forever(settings)))  # the outbox, delivered to NATS
        if stop_serving is not None:  # the books' gauges, computed only where they are served
            database_url = endpoints(settings).worker_database_url
            companions.append(asyncio.create_task(gauges.run(lambda: connect_one(database_url))))
        log.info("worker started", namespace=client.namespace, metrics_port=settings.metrics_port or None)
        await worker.run()
        log.info("worker stopped")
    finally:
        for task in companions:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if pool is not None:
            await pool.close()
        if stop_serving is not None:
            stop_serving()
        flush_tracing()  # `incentives worker` ends with os._exit: no exit hook sends the last spans


_shutdowns: set[asyncio.Task[None]] = set()


def _shutdown(worker: Worker, sig: signal.Signals) -> None:
    get_logger("incentives.worker").info("shutting down", signal=sig.name)
    task = asyncio.get_running_loop().create_task(worker.shutdown())
    _shutdowns.add(task)  # held until done: the loop keeps only weak references to tasks
    task.add_done_callback(_shutdowns.discard)
