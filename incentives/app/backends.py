"""Temporal and Postgres as a long-running server holds them (the HTTP API): one Temporal client
and one Postgres pool, connected in the background, so that the process starts, and answers its
health checks, while either is down; a caller is then told which one is unavailable, before
anything is sent, rather than kept waiting.

Postgres is connected as the writer it is (`connect_database`: the schema is brought current
first): the API stages promotion audiences and reads API keys as the owner, as `promotion start`
does. Once connected, Temporal is asked every `WATCH_EVERY` whether it answers; once it has not,
`MISSED_CHECKS` times in a row, a call is refused before it is sent. A call sent before the watch
noticed is answered as any call is: its result, a refusal, or "outcome unknown" at its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError

from incentives.adapters.db import Pool
from incentives.adapters.failures import connection_failure, infrastructure_failure
from incentives.adapters.logs import get_logger
from incentives.adapters.migrations import MigrationError, connect_database
from incentives.adapters.sdk_metrics import sdk_metrics
from incentives.adapters.settings import Settings
from incentives.adapters.temporal import connect_temporal
from incentives.app.client import IncentivesClient
from incentives.app.promotions import PromotionsClient
from incentives.domain.errors import InvalidInput, Unavailable
from incentives.domain.models import Model

# How often an unreachable server is tried again, and a connected Temporal asked whether it answers.
WATCH_EVERY = timedelta(seconds=1)
# How long a readiness check waits for each server.
CHECK_TIMEOUT = timedelta(seconds=1)
# Checks of a connected Temporal that must go unanswered in a row before calls are refused.
MISSED_CHECKS = 2
_NOT_YET = "not connected yet"


class Readiness(Model):
    """`GET /readyz`: each server's answer now, null when it answered, else why not."""

    temporal: str | None
    postgres: str | None

    @property
    def ready(self) -> bool:
        return self.temporal is None and self.postgres is None


class Backends:
    """The clients a server process calls the engine through; each accessor raises `Unavailable`
    (saying which server, and why) while what it needs is not connected or not answering."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: Pool | None = None
        self._temporal: Client | None = None
        self._wallets: IncentivesClient | None = None
        self._promotions: PromotionsClient | None = None
        self._postgres_down: str | None = _NOT_YET
        self._temporal_down: str | None = _NOT_YET
        self._missed = 0
        self._task: asyncio.Task[None] | None = None
        self._log = get_logger("incentives.api", task_queue=settings.task_queue)
        self.sdk_metrics = sdk_metrics()  # the client's: request failures (RESOURCE_EXHAUSTED), latencies

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_connected(), name="backends")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pool is not None:
            await self._pool.close()

    def pool(self) -> Pool:
        if self._pool is None:
            raise Unavailable(f"Postgres is unavailable: {self._postgres_down}")
        return self._pool

    def wallets(self) -> IncentivesClient:
        self._require_temporal()
        assert self._wallets is not None, "built once both are connected"
        return self._wallets

    def promotions(self) -> PromotionsClient:
        self._require_temporal()
        assert self._promotions is not None, "built once both are connected"
        return self._promotions

    def _require_temporal(self) -> None:
        self.pool()
        if self._temporal_down is not None or self._wallets is None:
            raise Unavailable(f"Temporal is unavailable: {self._temporal_down or _NOT_YET}")

    async def readiness(self) -> Readiness:
        """Asks both servers now, each within `CHECK_TIMEOUT`."""
        postgres, temporal = await asyncio.gather(self._postgres_answers(), self._temporal_answers())
        return Readiness(temporal=temporal, postgres=postgres)

    async def _postgres_answers(self) -> str | None:
        if self._pool is None:
            return self._postgres_down
        try:
            async with asyncio.timeout(CHECK_TIMEOUT.total_seconds()):
                await self._pool.fetchval("SELECT 1")
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT.total_seconds():g} s"
        except Exception as error:
            return infrastructure_failure(error) or connection_failure(error)
        return None

    async def _temporal_answers(self) -> str | None:
        if self._temporal is None:
            return self._temporal_down
        try:
            await self._temporal.service_client.check_health(timeout=CHECK_TIMEOUT)
        except (RPCError, RuntimeError) as error:
            return connection_failure(error)
        return None

    async def _keep_connected(self) -> None:
        while True:
            if self._pool is None:
                await self._connect_postgres()
            if self._temporal is None:
                await self._connect_temporal()
            else:
                await self._watch_temporal()
            if self._pool is not None and self._temporal is not None and self._wallets is None:
                self._build_clients(self._pool, self._temporal)
            await asyncio.sleep(WATCH_EVERY.total_seconds())

    async def _watch_temporal(self) -> None:
        """Temporal is down after `MISSED_CHECKS` checks in a row went unanswered (a check slow once
        under load is not an outage), and up again at its first answer."""
        down = await self._temporal_answers()
        self._missed = self._missed + 1 if down else 0
        if down is None or self._missed >= MISSED_CHECKS:
            self._temporal_state(down)

    async def _connect_postgres(self) -> None:
        try:
            self._pool = await connect_database(self._settings)
        except (Unavailable, MigrationError, InvalidInput) as error:
            self._postgres_state(str(error))
        else:
            self._postgres_state(None)

    async def _connect_temporal(self) -> None:
        try:
            self._temporal = await connect_temporal(self._settings, runtime=self.sdk_metrics.runtime)
        except (Unavailable, InvalidInput) as error:
            self._temporal_state(str(error))
        else:
            self._temporal_state(None)

    def _build_clients(self, pool: Pool, temporal: Client) -> None:
        settings = self._settings
        self._wallets = IncentivesClient(
            temporal, pool, task_queue=settings.task_queue, reversal_window=settings.reversal_window
        )
        self._promotions = PromotionsClient(temporal, pool, task_queue=settings.task_queue)

    def _postgres_state(self, down: str | None) -> None:
        self._say("postgres", self._postgres_down, down)
        self._postgres_down = down

    def _temporal_state(self, down: str | None) -> None:
        self._say("temporal", self._temporal_down, down)
        self._temporal_down = down

    def _say(self, server: str, before: str | None, now: str | None) -> None:
        """One log line when a server's state changes, not one a second while it stays down."""
        if now == before:
            return
        if now is None:
            self._log.info(f"{server} up")
        else:
            self._log.warning(f"{server} down", reason=now)
