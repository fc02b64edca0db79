"""Running wallets in tests: a worker on a fresh task queue, a client on it, and waiting on conditions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import NamedTuple, TypeVar

from temporalio.client import Client

from incentives.adapters.db import Pool
from incentives.app.client import IncentivesClient
from incentives.app.promotions import PromotionsClient
from incentives.app.worker import WorkerOptions, build_worker
from incentives.domain.messages import DEFAULT_REVERSAL_WINDOW

T = TypeVar("T")


@asynccontextmanager
async def running_wallets(
    temporal: Client,
    worker_pool: Pool,
    *,
    reversal_window: timedelta = DEFAULT_REVERSAL_WINDOW,
    options: WorkerOptions | None = None,
) -> AsyncIterator[IncentivesClient]:
    """A worker on its own task queue for the duration of the block, as the worker's database role,
    and a client that uses it (the client only reads the database)."""
    task_queue = f"test-{uuid.uuid4().hex[:12]}"
    worker = build_worker(temporal, worker_pool, task_queue, options)
    async with worker:
        yield IncentivesClient(temporal, worker_pool, task_queue=task_queue, reversal_window=reversal_window)


class Stack(NamedTuple):
    wallets: IncentivesClient
    promotions: PromotionsClient


@asynccontextmanager
async def running_stack(
    temporal: Client,
    worker_pool: Pool,
    owner_pool: Pool,
    *,
    batch_size: int = 100,
    options: WorkerOptions | None = None,
) -> AsyncIterator[Stack]:
    """A worker on its own task queue, as the worker's database role, with a wallets client and a
    promotions client on it; the promotions client stages audiences as the owner, as the CLI does."""
    task_queue = f"test-{uuid.uuid4().hex[:12]}"
    async with build_worker(temporal, worker_pool, task_queue, options):
        yield Stack(
            IncentivesClient(temporal, worker_pool, task_queue=task_queue),
            PromotionsClient(temporal, owner_pool, task_queue=task_queue, batch_size=batch_size),
        )


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 15.0, interval: float = 0.05) -> T:
    """Polls `check` until it returns without an AssertionError, or re-raises the last one at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)
