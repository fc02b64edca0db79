"""`incentives reconcile`: the books' invariants, checked over the whole database (or one customer's
or one promotion's part of it), on demand, and every hour by a Temporal Schedule whose last result
is kept in Postgres (`incentives reconcile --last`, the gauge `incentives_reconcile_violations`).

What the command, the metrics' collector, the chaos run and the benchmarks import. The parts live
lower, each where its other users can reach it: the checks' SQL and the reads of recorded runs in
`incentives.adapters.reconcile` (the scheduled run's activity, `activities.reconcile`, runs the same
checks), the schedule in `incentives.adapters.reconcile_schedule` (`incentives dev up` creates it),
the models in `incentives.domain.reconcile` (the workflow returns one).
"""

from __future__ import annotations

from incentives.adapters.reconcile import CHECKS, last_reconcile, reconcile
from incentives.adapters.reconcile_schedule import ScheduleOutcome, ensure_reconcile_schedule
from incentives.domain.reconcile import ReconcileRun, Reconciliation, Violation

__all__ = [
    "CHECKS",
    "ReconcileRun",
    "Reconciliation",
    "ScheduleOutcome",
    "Violation",
    "ensure_reconcile_schedule",
    "last_reconcile",
    "reconcile",
]
