"""The chaos run's own stack (Postgres, a Temporal dev server persisting to disk, NATS with JetStream
on a file store, a worker process that relays the events too), and the faults it suffers: each one
what production suffers, done for real."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from incentives.adapters.db import Pool, create_pool
from incentives.adapters.migrations import migrate
from incentives.adapters.settings import WORKER_ROLE
from incentives.devstack.servers import EmbeddedNats, EmbeddedPostgres, EmbeddedTemporal, free_port

FAULTS = (
    "worker_killed",
    "postgres_fast_restart",
    "postgres_immediate_restart",
    "backends_terminated",
    "temporal_killed",
    "nats_killed",
)
TASK_QUEUE = "chaos"


@dataclass
class Stack:
    home: Path
    postgres: EmbeddedPostgres = field(init=False)
    temporal: EmbeddedTemporal = field(init=False)
    nats: EmbeddedNats = field(init=False)
    worker: subprocess.Popen[bytes] | None = None
    faults: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.postgres = EmbeddedPostgres(self.home / "pg")
        self.temporal = EmbeddedTemporal(self.home / "temporal", port=free_port(), ui_port=free_port())
        self.nats = EmbeddedNats(self.home / "nats", free_port())

    @property
    def metrics_dir(self) -> Path:
        """Where every worker of the run counts (prometheus_client's multiprocess mode): the
        counts of a killed worker stay."""
        return self.home / "metrics"

    @property
    def database_url(self) -> str:
        return self.postgres.url()

    async def start(self) -> None:
        self.metrics_dir.mkdir()
        # It keeps commit timestamps (`EmbeddedPostgres`): the checks replay the ledger in commit
        # order, since a promotion's batch inserts its rows before a customer's redeem and may
        # commit after it.
        self.postgres.start()
        await self.postgres.create_database()
        pool = await create_pool(self.database_url)
        try:
            await migrate(pool)
            await self.record_what_events_saw(pool)
        finally:
            await pool.close()
        self.temporal.start()
        self.nats.start()
        self.start_worker()

    @staticmethod
    async def record_what_events_saw(pool: Pool) -> None:
        """Each outbox event records its transaction and the snapshot of the statement that wrote
        it (column defaults, evaluated in that statement), so that the delivery check can tell an
        event written after another committed from two written concurrently. The run's own
        instrument, not the schema's: the worker's statements name their columns."""
        await pool.execute(
            """ALTER TABLE outbox ADD COLUMN chaos_xact xid8 NOT NULL DEFAULT pg_current_xact_id(),
                               ADD COLUMN chaos_snapshot pg_snapshot NOT NULL DEFAULT pg_current_snapshot()"""
        )

    def stop(self) -> None:
        self.stop_worker()
        self.temporal.stop()
        self.nats.stop()
        self.postgres.stop()

    def start_worker(self) -> None:
        log = (self.home / "worker.log").open("ab")
        self.worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "incentives"), "worker"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "TEMPORAL_ADDRESS": self.temporal.address,
                "DATABASE_URL": self.database_url,
                "INCENTIVES_WORKER_DATABASE_URL": self.postgres.url(user=WORKER_ROLE),
                "INCENTIVES_TASK_QUEUE": TASK_QUEUE,
                "NATS_URL": self.nats.url,
                "INCENTIVES_HOME": str(self.home),
                "INCENTIVES_LOG_LEVEL": "WARNING",
                "INCENTIVES_METRICS_PORT": "0",
                "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            },
        )

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.kill()
            self.worker.wait()

    def keep_worker_alive(self) -> None:
        """A worker that exited on its own (it could not reach a server) is started again, as a
        supervisor would."""
        if self.worker is None or self.worker.poll() is not None:
            self.start_worker()

    async def inject(self, fault: str) -> None:
        self.faults[fault] += 1
        if fault == "worker_killed":
            self.stop_worker()
            await asyncio.sleep(0.5)
            self.start_worker()
        elif fault in ("postgres_fast_restart", "postgres_immediate_restart"):
            await asyncio.to_thread(self.postgres.stop, "fast" if fault == "postgres_fast_restart" else "immediate")
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self.postgres.start)
        elif fault == "backends_terminated":
            await self._terminate_backends()
        elif fault == "temporal_killed":
            await asyncio.to_thread(self.temporal.kill)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self.temporal.start)
        elif fault == "nats_killed":
            await asyncio.to_thread(self.nats.kill)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self.nats.start)
        else:
            raise ValueError(f"unknown fault {fault}")

    async def _terminate_backends(self) -> None:
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()

    async def pool(self) -> Pool:
        return await create_pool(self.database_url)
