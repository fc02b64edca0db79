"""The Temporal Schedule that reconciles the books: `incentives-reconcile` starts the `Reconcile`
workflow (`workflows.reconcile`) every hour on the workers' task queue. `incentives dev up` creates
it, and `incentives reconcile --schedule` on a real cluster. Creating it again updates it in place,
so either command is harmless to repeat; a pause an operator set survives the update.

Here, under the workflows' layer, because `incentives dev up` (beside `incentives.app`) calls it: the
workflow is named by its type (`RECONCILE_WORKFLOW`), as the workflow module registers it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from incentives.domain.reconcile import (
    RECONCILE_EVERY,
    RECONCILE_SCHEDULE_ID,
    RECONCILE_WORKFLOW,
    RECONCILE_WORKFLOW_ID,
)

# A firing missed while the Temporal server was down is still taken this late, and not later: the
# next one is at most an hour away, and a backlog of runs would only repeat the same check.
CATCHUP_WINDOW = timedelta(minutes=10)
# A run that has not finished within this (no worker polled, or Postgres stayed down) gives up, so
# it never keeps later firings away: with overlap SKIP, a run still open makes the schedule skip.
RUN_TIMEOUT = timedelta(hours=1)


@dataclass(frozen=True)
class ScheduleOutcome:
    created: bool  # False: it existed, and was updated to this code's schedule
    paused: bool  # an operator paused it; the update kept it paused


def reconcile_schedule(task_queue: str, every: timedelta = RECONCILE_EVERY) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RECONCILE_WORKFLOW, id=RECONCILE_WORKFLOW_ID, task_queue=task_queue, execution_timeout=RUN_TIMEOUT
        ),
        # Intervals count from the Unix epoch: every hour fires on the hour (UTC).
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW),
        state=ScheduleState(note="the books reconciled; the last result: `incentives reconcile --last`"),
    )


async def ensure_reconcile_schedule(
    client: Client, task_queue: str, every: timedelta = RECONCILE_EVERY
) -> ScheduleOutcome:
    """Creates the schedule, or updates the one that exists to start `Reconcile` on `task_queue`
    every `every`, keeping its state (paused or not, and why)."""
    schedule = reconcile_schedule(task_queue, every)
    try:
        await client.create_schedule(RECONCILE_SCHEDULE_ID, schedule)
        return ScheduleOutcome(created=True, paused=False)
    except ScheduleAlreadyRunningError:
        pass
    kept: list[ScheduleState] = []

    def keep_state(current: ScheduleUpdateInput) -> ScheduleUpdate:
        kept.append(current.description.schedule.state)
        return ScheduleUpdate(schedule=dataclasses.replace(schedule, state=kept[-1]))

    await client.get_schedule_handle(RECONCILE_SCHEDULE_ID).update(keep_state)
    return ScheduleOutcome(created=False, paused=kept[-1].paused)
