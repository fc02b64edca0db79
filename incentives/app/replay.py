"""Replaying workflow histories against the code at hand, as a worker of this code would: from saved
files (`temporal workflow show --output json`, `incentives history --json`) or fetched from the
server by workflow id, every run. A history that diverges is searched for the first workflow task
whose commands this code no longer makes, so the answer names the event to look at."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from incentives.adapters.temporal import DATA_CONVERTER
from incentives.app.history import runs
from incentives.domain.errors import InvalidInput
from workflows import WORKFLOWS

_BOOKKEEPING = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
}


@dataclass(frozen=True)
class ReplayOutcome:
    source: str  # a file's path, or workflow id and run id
    events: int
    failure: str | None  # None: the code replays this history
    diverged_at: str | None = (
        None  # the first event this code disagrees with, e.g. "event 12 (ACTIVITY_TASK_SCHEDULED)"
    )


def replayer() -> Replayer:
    """The workflows this code registers, decoded as the worker decodes them."""
    return Replayer(workflows=WORKFLOWS, data_converter=DATA_CONVERTER)


def load_history(path: Path) -> WorkflowHistory:
    try:
        return WorkflowHistory.from_json(path.stem, path.read_text())
    except (OSError, ValueError, KeyError) as error:
        raise InvalidInput(str(path), f"not a workflow history in JSON ({error})") from None


async def replay_files(paths: list[Path]) -> list[ReplayOutcome]:
    """Every file is read before any is replayed: a bad path is an input error, not a divergence."""
    histories = [(str(path), load_history(path)) for path in paths]
    return [await replay(source, history) for source, history in histories]


async def replay_workflow(client: Client, workflow_id: str) -> list[ReplayOutcome]:
    """Every run of the workflow, fetched from the server, oldest first."""
    return [await replay(f"{workflow_id} run {run_id}", history) for run_id, history in await runs(client, workflow_id)]


async def replay(source: str, history: WorkflowHistory) -> ReplayOutcome:
    failure = await _failure(history)
    if failure is None:
        return ReplayOutcome(source, len(history.events), None)
    return ReplayOutcome(source, len(history.events), failure, await _first_divergence(history))


async def _failure(history: WorkflowHistory) -> str | None:
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    return None if result.replay_failure is None else str(result.replay_failure)


async def _first_divergence(history: WorkflowHistory) -> str | None:
    """Bisects over workflow-task boundaries for the shortest prefix that fails to replay; the first
    event of its last task's commands is where this code and the history part."""
    events = list(history.events)
    cuts = [i for i, event in enumerate(events) if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED]
    cuts.append(len(events))
    low, high = 0, len(cuts) - 1  # prefixes up to cuts[low] replay (or low = 0); up to cuts[high] fail
    while high - low > 1:
        middle = (low + high) // 2
        prefix = WorkflowHistory(history.workflow_id, events[: cuts[middle]])
        if await _failure(prefix) is None:
            low = middle
        else:
            high = middle
    for event in events[cuts[low] : cuts[high]]:
        if event.event_type not in _BOOKKEEPING:
            return f"event {event.event_id} ({EventType.Name(event.event_type).removeprefix('EVENT_TYPE_')})"
    return None
