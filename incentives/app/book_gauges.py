"""The gauges read from the books: liability, promotions' budget burn, the outbox's age and the last
scheduled reconcile's violations.

They describe the database, not a process, so exactly one worker computes them: whichever holds
`GAUGES_LOCK` (a session advisory lock on a connection of its own; another worker takes over
within moments of its death, when Postgres drops the session). It queries every `refresh`
(INCENTIVES_METRICS_REFRESH) and its `/metrics` serves the last values; the other workers serve none of these series, so a sum
over workers is still the truth. A query that fails leaves the series out until the next success:
a stale figure served as current would be a lie on the dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta

import asyncpg
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from incentives.adapters.failures import infrastructure_failure
from incentives.adapters.logs import get_logger
from incentives.adapters.metrics import GAUGES
from incentives.adapters.reconcile import last_reconcile

# Arbitrary but fixed, like the relay's: every worker of every version contends for this one.
GAUGES_LOCK = 7_243_655_193_003
# The promotions whose budget can still move: grants, or coupons redeemed against it.
LIVE_STATES = ("scheduled", "granting", "paused", "active", "ended")

_OUTSTANDING = """
SELECT currency, coalesce(sum(remaining_minor) FILTER (
           WHERE kind = 'credit' AND status IN ('pending', 'active')), 0)::float8 AS outstanding
FROM lots GROUP BY currency ORDER BY currency
"""
_BUDGETS = """
SELECT promotion_id, committed_minor::float8 / budget_minor AS used
FROM promotions WHERE state = ANY($1::text[]) AND budget_minor > 0 ORDER BY promotion_id
"""
# The oldest unpublished event, found through the relay's own partial index.
_OUTBOX_AGE = """
SELECT coalesce(extract(epoch FROM now() - (
    SELECT created_at FROM outbox WHERE published_at IS NULL ORDER BY event_id LIMIT 1)), 0)::float8
"""

Connect = Callable[[], Awaitable["asyncpg.Connection[asyncpg.Record]"]]


class BookGauges:
    """A collector (register it in a registry) of the last values read, while this process leads."""

    def __init__(self, refresh: timedelta) -> None:
        self._refresh = refresh.total_seconds()
        self._families: list[Metric] = []
        self.leading = asyncio.Event()

    def collect(self) -> Iterable[Metric]:
        return list(self._families)  # replaced whole by `refresh`: a scrape never sees half of one

    async def refresh(self, conn: asyncpg.Connection[asyncpg.Record]) -> None:
        outstanding = _family("incentives_outstanding_minor")
        for row in await conn.fetch(_OUTSTANDING):
            outstanding.add_metric([row["currency"]], row["outstanding"])
        budgets = _family("incentives_promotion_budget_used_ratio")
        for row in await conn.fetch(_BUDGETS, list(LIVE_STATES)):
            budgets.add_metric([row["promotion_id"]], row["used"])
        outbox = _family("incentives_outbox_oldest_unpublished_seconds")
        outbox.add_metric([], await conn.fetchval(_OUTBOX_AGE))
        families: list[Metric] = [outstanding, budgets, outbox]
        last = await last_reconcile(conn)
        if last is not None:  # before the first scheduled reconcile has run, both are absent
            violations = _family("incentives_reconcile_violations")
            violations.add_metric([], last.violation_count)
            finished = _family("incentives_reconcile_last_finished_timestamp_seconds")
            finished.add_metric([], last.finished_at.timestamp())
            families += [violations, finished]
        self._families = families

    async def run(self, connect: Connect) -> None:
        """Leads when it can, refreshing until its connection is lost; then starts over."""
        log = get_logger("incentives.metrics")
        backoff = 1.0
        while True:
            try:
                await self._lead(connect)
            except Exception as error:
                failure = infrastructure_failure(error)
                if failure is None and not isinstance(error, asyncpg.PostgresError):
                    raise
                log.warning(
                    "the books' gauges lost their database connection; starting over", error=failure or str(error)
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _lead(self, connect: Connect) -> None:
        conn = await connect()
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", GAUGES_LOCK)  # waits while another leads
            self.leading.set()
            get_logger("incentives.metrics").info("computing the books' gauges", backend_pid=conn.get_server_pid())
            while True:
                await self.refresh(conn)
                await asyncio.sleep(self._refresh)
        finally:
            self.leading.clear()
            self._families = []
            with contextlib.suppress(Exception):
                await conn.close()


def _family(name: str) -> GaugeMetricFamily:
    help_text, labels = GAUGES[name]
    return GaugeMetricFamily(name, help_text, labels=list(labels))
