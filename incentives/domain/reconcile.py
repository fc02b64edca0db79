"""The books' reconciliation as it crosses boundaries: what `incentives reconcile` prints, what the
scheduled run's activity records and returns, and what `incentives reconcile --last` reads back.

Pure pydantic, no I/O: the reconcile workflow imports this module through the sandbox.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from incentives.domain.errors import InvalidDuration
from incentives.domain.models import Instant, Model
from incentives.domain.timeparse import format_duration

# The workflow type the schedule starts, and the schedule's id: named here, once, because the
# schedule is created below the layer that defines the workflow (`incentives dev up` may not import
# `incentives.app`, only what is under it).
RECONCILE_WORKFLOW = "Reconcile"
RECONCILE_SCHEDULE_ID = "incentives-reconcile"
# Each scheduled run's workflow id is this, followed by the instant it was scheduled for (the
# schedule appends it), e.g. `reconcile-2026-05-01T10:00:00Z`.
RECONCILE_WORKFLOW_ID = "reconcile"
RECONCILE_EVERY = timedelta(hours=1)
# `--every` within these: more often than a minute would keep Postgres busy re-reading the whole
# ledger; less often than daily is not a schedule an on-call engineer can lean on.
RECONCILE_EVERY_MIN = timedelta(minutes=1)
RECONCILE_EVERY_MAX = timedelta(days=1)
# What a scheduled run keeps of each check's violations: examples to start from. The counts are
# always whole; `incentives reconcile` lists every violation. A disastrous run (a million lots
# wrong) stays a small row, a small activity result and a small worker.
VIOLATIONS_KEPT_PER_CHECK = 20


class Violation(Model):
    check: str
    subject: str = Field(description="the lot, order, promotion or pool concerned")
    detail: str


class Reconciliation(Model):
    scope: str
    lots: int
    ledger_rows: int
    checks: dict[str, int] = Field(description="check -> violations found")
    violations: list[Violation] = Field(
        description="every violation found; a scheduled run keeps a few of each check (`checks` has the counts)"
    )

    @property
    def violation_count(self) -> int:
        return sum(self.checks.values())

    @property
    def ok(self) -> bool:
        return self.violation_count == 0


class ReconcileRequest(Model):
    """A scheduled run's activity input: its workflow run, which keys the recorded result."""

    workflow_id: str
    run_id: str


class ReconcileSummary(Model):
    """What the scheduled run's workflow returns: small, whatever the books hold."""

    run_id: str
    lots: int
    ledger_rows: int
    checks: dict[str, int] = Field(description="check -> violations found")
    violations: int = Field(description="violations found, all checks together")


class ReconcileRun(Reconciliation):
    """A scheduled run's recorded result: always over the whole database."""

    workflow_id: str
    run_id: str
    started_at: Instant
    finished_at: Instant

    def summary(self) -> ReconcileSummary:
        return ReconcileSummary(
            run_id=self.run_id,
            lots=self.lots,
            ledger_rows=self.ledger_rows,
            checks=self.checks,
            violations=self.violation_count,
        )


def check_reconcile_every(every: timedelta, field: str) -> timedelta:
    """How often the schedule reconciles: from `RECONCILE_EVERY_MIN` to `RECONCILE_EVERY_MAX`."""
    if not RECONCILE_EVERY_MIN <= every <= RECONCILE_EVERY_MAX:
        raise InvalidDuration(
            field,
            f"{format_duration(every)} is not from {format_duration(RECONCILE_EVERY_MIN)} "
            f"to {format_duration(RECONCILE_EVERY_MAX)}: the books are reconciled at most every minute, at least daily",
        )
    return every
