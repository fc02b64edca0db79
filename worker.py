"""The worker process: hosts the workflows and the ledger activities on one task queue.

SIGTERM or SIGINT starts a graceful shutdown: no new tasks are polled, in-flight activities get
`graceful_shutdown_timeout` to finish, and anything unfinished is handed back to Temporal, which
retries it on another worker (every activity is idempotent, so a retry is safe).
"""

from __future__ import annotations

import asyncio
import functools
import signal
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.ledger import LedgerActivities
from incentives.connect import connect_database, connect_temporal
from incentives.db import Pool
from incentives.logs import configure_logging, get_logger
from incentives.settings import Settings
from workflows import WORKFLOWS

GRACEFUL_SHUTDOWN = timedelta(seconds=10)


def build_worker(
    client: Client,
    pool: Pool,
    task_queue: str,
    *,
    max_cached_workflows: int = 5000,
    workflows: Sequence[type[Any]] = WORKFLOWS,
    **options: Any,
) -> Worker:
    """The one way a worker is assembled: the CLI, the demo and the tests all call this."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(workflows),
        activities=LedgerActivities(pool).activities(),
        max_cached_workflows=max_cached_workflows,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        **options,
    )


async def run_worker(settings: Settings) -> None:
    configure_logging(settings.log_level)
    log = get_logger("incentives.worker", task_queue=settings.task_queue)
    client = await connect_temporal(settings)
    pool = await connect_database(settings)
    try:
        worker = build_worker(client, pool, settings.task_queue, max_cached_workflows=settings.max_cached_workflows)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, functools.partial(_shutdown, worker, sig))
        log.info("worker started", namespace=client.namespace)
        await worker.run()
        log.info("worker stopped")
    finally:
        await pool.close()


_shutdowns: set[asyncio.Task[None]] = set()


def _shutdown(worker: Worker, sig: signal.Signals) -> None:
    get_logger("incentives.worker").info("shutting down", signal=sig.name)
    task = asyncio.get_running_loop().create_task(worker.shutdown())
    _shutdowns.add(task)  # held until done: the loop keeps only weak references to tasks
    task.add_done_callback(_shutdowns.discard)
