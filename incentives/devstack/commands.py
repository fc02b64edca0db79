"""`incentives dev up | down | status`: the embedded stack as a whole, for people and for the demo."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass

from incentives.adapters.broker import broker_endpoint, connect_broker, ensure_stream
from incentives.adapters.db import create_pool, redact
from incentives.adapters.endpoints import Endpoints, endpoints
from incentives.adapters.failures import connection_failure, infrastructure_failure
from incentives.adapters.migrations import connect_database
from incentives.adapters.reconcile_schedule import ensure_reconcile_schedule
from incentives.adapters.settings import Settings
from incentives.adapters.temporal import connect_temporal
from incentives.devstack.servers import DetachedWorker, EmbeddedNats, EmbeddedPostgres, EmbeddedTemporal
from incentives.domain.errors import Unavailable

# A health check answers quickly: a server silent this long is down for the caller.
PROBE_TIMEOUT_S = 5.0


def embedded_postgres(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.postgres_dir)


def embedded_temporal(settings: Settings) -> EmbeddedTemporal:
    return EmbeddedTemporal(settings.home, settings.temporal_port, settings.temporal_ui_port)


def embedded_nats(settings: Settings) -> EmbeddedNats:
    return EmbeddedNats(settings.nats_dir, settings.nats_port)


@dataclass(frozen=True)
class Status:
    where: Endpoints
    temporal_pid: int | None
    postgres_pid: int | None
    worker_pid: int | None
    ui_url: str | None
    nats_pid: int | None = None
    nats_url: str = ""
    nats_embedded: bool = True
    metrics_url: str | None = None  # the worker's /metrics, when it serves one


async def up(settings: Settings) -> Status:
    """Starts (or reuses) what is embedded, creates the database, applies the migrations, and
    creates (or updates) the event stream and the schedule that reconciles the books."""
    where = endpoints(settings)
    if where.embedded_postgres:
        postgres = embedded_postgres(settings)
        postgres.start()
        await postgres.create_database()
    if where.embedded_temporal:
        embedded_temporal(settings).start()
    if broker_endpoint(settings).embedded:
        embedded_nats(settings).start()
    pool = await connect_database(settings, max_size=1)  # migrates
    await pool.close()
    broker = await connect_broker(settings, name="incentives dev up", reconnect=False)
    try:
        await ensure_stream(broker.jetstream())
    finally:
        await broker.close()
    await ensure_reconcile_schedule(await connect_temporal(settings), settings.task_queue)
    return status(settings)


def down(settings: Settings) -> list[str]:
    """Stops the detached worker, then Temporal, NATS and Postgres; returns what was running."""
    stopped = []
    if DetachedWorker(settings.home).stop():
        stopped.append("worker")
    if embedded_temporal(settings).stop():
        stopped.append("Temporal")
    if embedded_nats(settings).stop():
        stopped.append("NATS")
    if embedded_postgres(settings).stop():
        stopped.append("Postgres")
    return stopped


def status(settings: Settings) -> Status:
    where = endpoints(settings)
    temporal = embedded_temporal(settings)
    return Status(
        where=where,
        temporal_pid=temporal.pid() if where.embedded_temporal else None,
        postgres_pid=embedded_postgres(settings).pid() if where.embedded_postgres else None,
        worker_pid=DetachedWorker(settings.home).pid(),
        ui_url=temporal.ui_url if where.embedded_temporal else None,
        nats_pid=embedded_nats(settings).pid() if broker_endpoint(settings).embedded else None,
        nats_url=broker_endpoint(settings).shown,
        nats_embedded=broker_endpoint(settings).embedded,
        metrics_url=f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
        if settings.metrics_port
        else None,
    )


@dataclass(frozen=True)
class Health:
    """Whether each server answers a connection now: None when it does, else where it was looked
    for and why it did not answer, in words."""

    temporal: str | None
    postgres: str | None
    nats: str | None = None

    @property
    def ok(self) -> bool:
        return self.temporal is None and self.postgres is None and self.nats is None

    def problems(self) -> list[tuple[str, str | None]]:
        return [("Temporal", self.temporal), ("Postgres", self.postgres), ("NATS", self.nats)]


async def health(settings: Settings) -> Health:
    """Connects to Temporal, Postgres and NATS, embedded or not, as a client would, all at once."""
    where, broker = endpoints(settings), broker_endpoint(settings)

    async def postgres() -> None:
        pool = await create_pool(where.database_url, min_size=1, max_size=1)
        await pool.close()

    async def nats() -> None:
        connection = await connect_broker(settings, name="incentives dev status", reconnect=False)
        await connection.close()

    temporal_problem, postgres_problem, nats_problem = await asyncio.gather(
        _problem(connect_temporal(settings)), _problem(postgres()), _problem(nats())
    )
    return Health(
        temporal=None if temporal_problem is None else f"{where.temporal_address}: {temporal_problem}",
        postgres=None if postgres_problem is None else f"{redact(where.database_url)}: {postgres_problem}",
        nats=None if nats_problem is None else f"{broker.shown}: {nats_problem}",
    )


async def _problem(probe: Awaitable[object]) -> str | None:
    """None when `probe` connects in time; else why not, in words."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await probe
    except Unavailable as error:
        return connection_failure(error.__cause__ or error)
    except TimeoutError:
        return f"timed out (no answer within {PROBE_TIMEOUT_S:g}s)"
    except Exception as error:
        # A server that answers its first call with an error (RPCError, a Postgres refusal) is down
        # for this check too; anything else is a bug, and goes up.
        failure = infrastructure_failure(error)
        if failure is None:
            raise
        return failure
    return None


def describe(current: Status, answers: Health | None = None) -> list[str]:
    """What runs where, one line per server, for `dev up` and `dev status` (the database URL
    without its password); with `answers`, one more line per server: up, or DOWN and why."""
    where = current.where
    if where.embedded_temporal:
        state = f"running (pid {current.temporal_pid})" if current.temporal_pid else "not running"
        lines = [f"Temporal      {where.temporal_address} ({state}, namespace {where.namespace})"]
        lines.append(f"Web UI        {current.ui_url}")
    else:
        lines = [f"Temporal      {where.temporal_address} (external: TEMPORAL_ADDRESS or a profile)"]
    shown_url = redact(where.database_url)
    if where.embedded_postgres:
        state = f"running (pid {current.postgres_pid})" if current.postgres_pid else "not running"
        lines.append(f"DATABASE_URL  {shown_url} ({state})")
    else:
        lines.append(f"DATABASE_URL  {shown_url} (external)")
    if current.nats_embedded:
        state = f"running (pid {current.nats_pid})" if current.nats_pid else "not running"
        lines.append(f"NATS          {current.nats_url} ({state}, JetStream stream INCENTIVES)")
    else:
        lines.append(f"NATS          {current.nats_url} (external: NATS_URL)")
    if current.worker_pid:
        lines.append(f"worker        running (pid {current.worker_pid}), started by ./dev demo")
        if current.metrics_url:
            lines.append(f"metrics       {current.metrics_url} (the worker's)")
    if answers is not None:
        for name, why in answers.problems():
            lines.append(f"{name}: up" if why is None else f"{name}: DOWN ({why})")
    return lines
