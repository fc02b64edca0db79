"""The books reconciled on a schedule: the Temporal Schedule `incentives-reconcile`
(`incentives.adapters.reconcile_schedule`) starts this workflow every hour; it runs one activity
that checks the whole database and records the result under this run's id, and returns a summary.

The activity is a regular one, retried until it succeeds: the checks only read, and the record is
keyed by the run id, so every attempt ends with the first result. The run's own deadline (the
schedule's `RUN_TIMEOUT`) bounds the retries, so a run that cannot finish never holds back the next.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import ReconcileActivities
    from incentives.domain.reconcile import RECONCILE_WORKFLOW, ReconcileRequest, ReconcileSummary

# One statement per check over the whole ledger: seconds for a million lots. An attempt still
# running after this is stuck (a lock, a lost connection) and is retried.
_START_TO_CLOSE = timedelta(minutes=20)
_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=1)
)


@workflow.defn(name=RECONCILE_WORKFLOW)
class ReconcileWorkflow:
    @workflow.run
    async def run(self) -> ReconcileSummary:
        info = workflow.info()
        return await workflow.execute_activity_method(
            ReconcileActivities.reconcile_books,
            ReconcileRequest(workflow_id=info.workflow_id, run_id=info.run_id),
            start_to_close_timeout=_START_TO_CLOSE,
            retry_policy=_RETRY,
        )
