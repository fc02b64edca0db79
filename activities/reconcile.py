"""The scheduled reconcile's activity: runs the books' checks over the whole database (the same
statements `incentives reconcile` runs, `incentives.adapters.reconcile`) and records the result in
`reconcile_runs`, once per workflow run.

- Idempotent on the run id: a retry of a run that has recorded returns the first result without
  checking again (a retry after a lost answer does not take a second pass over the ledger), and two
  attempts racing both return the row that won.
- Bounded: a few violations of each check are kept (`VIOLATIONS_KEPT_PER_CHECK`), the counts whole;
  the activity returns the summary, never the violations, so the workflow's history stays small.
- Reads value tables, writes only `reconcile_runs`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from activities.ledger_writes import activity_log
from incentives.adapters.db import Pool
from incentives.adapters.reconcile import reconcile, recorded_reconcile
from incentives.domain.reconcile import VIOLATIONS_KEPT_PER_CHECK, ReconcileRequest, ReconcileSummary

_RECORD = """INSERT INTO reconcile_runs (run_id, workflow_id, started_at, finished_at, lots, ledger_rows, checks, violations)
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
              ON CONFLICT (run_id) DO NOTHING"""


class ReconcileActivities:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def activities(self) -> list[Callable[..., Any]]:
        return [self.reconcile_books]

    @activity.defn(name="reconcile_books")
    async def reconcile_books(self, request: ReconcileRequest) -> ReconcileSummary:
        log = activity_log()
        recorded = await recorded_reconcile(self._pool, request.run_id)
        if recorded is not None:
            log.info("books already reconciled by this run")
            return recorded.summary()
        started_at = datetime.now(UTC)
        books = await reconcile(self._pool, keep=VIOLATIONS_KEPT_PER_CHECK)
        await self._pool.execute(
            _RECORD,
            request.run_id,
            request.workflow_id,
            started_at,
            datetime.now(UTC),
            books.lots,
            books.ledger_rows,
            books.checks,
            [violation.model_dump(mode="json") for violation in books.violations],
        )
        # Read back, not `books`: an attempt racing this one may have recorded first.
        recorded = await recorded_reconcile(self._pool, request.run_id)
        assert recorded is not None, "recorded by this attempt or by one that won the race"
        summary = recorded.summary()
        log.info("books reconciled", violations=summary.violations, checks=summary.checks)
        return summary
