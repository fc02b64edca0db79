"""Replaying workflow histories against the code at hand, as a worker of this code would: from saved
files (`temporal workflow show --output json`, `incentives history --json`) or fetched from the
server by workflow id, every run. Every history is checked before the SDK's Replayer sees it
(`incentives.app.history_checks`): a malformed one is bad input, never a panic or a hang. A history
that diverges is searched for the first workflow task whose commands this code no longer makes, so
the answer names the event to look at."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from incentives.adapters.temporal import DATA_CONVERTER
from incentives.app.history import runs
from incentives.app.history_checks import check_history, read_history_file
from workflows.registry import WORKFLOWS

# Events a workflow task's commands produce: where new code and an old history can disagree.
_COMMAND_EVENTS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_TIMER_CANCELED,
    EventType.EVENT_TYPE_MARKER_RECORDED,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}
# The SDK names the event itself when it can: "... HistoryEvent(id: 6, ActivityTaskScheduled)".
_NAMED_EVENT = re.compile(r"HistoryEvent\(id: (?P<id>[0-9]+), (?P<type>[A-Za-z]+)\)")


@dataclass(frozen=True)
class ReplayOutcome:
    source: str  # a file's path, or workflow id and run id
    events: int
    failure: str | None  # None: the code replays this history
    diverged_at: str | None = (
        None  # the first event this code disagrees with, e.g. "event 12 (ACTIVITY_TASK_SCHEDULED)"
    )


def replayer(workflows: Sequence[type[Any]] = WORKFLOWS) -> Replayer:
    """The workflows this code registers (or `workflows`), decoded as the worker decodes them."""
    return Replayer(workflows=list(workflows), data_converter=DATA_CONVERTER)


def load_history(path: Path, workflows: Sequence[type[Any]] = WORKFLOWS) -> WorkflowHistory:
    """The history in the file at `path`, checked for replay against `workflows`; `InvalidInput`
    naming the file when it is not one (see `incentives.app.history_checks`)."""
    history = read_history_file(path)
    check_history(str(path), history, workflows)
    return history


async def replay_files(paths: list[Path]) -> list[ReplayOutcome]:
    """Every file is read and checked before any is replayed: a bad file is an input error, not a
    divergence."""
    histories = [(str(path), load_history(path)) for path in paths]
    return [await replay(source, history) for source, history in histories]


async def replay_workflow(client: Client, workflow_id: str) -> list[ReplayOutcome]:
    """Every run of the workflow, fetched from the server, oldest first."""
    return [await replay(f"{workflow_id} run {run_id}", history) for run_id, history in await runs(client, workflow_id)]


async def replay(source: str, history: WorkflowHistory, workflows: Sequence[type[Any]] = WORKFLOWS) -> ReplayOutcome:
    """Replays `history` against `workflows` (this code's, unless a test swaps one); `InvalidInput`
    naming `source` when it is not a history the Replayer can take."""
    check_history(source, history, workflows)
    if len(history.events) == 1:
        # Only the run's start (a start delay not over yet): no command to disagree with, and the
        # SDK's Replayer would wait forever for a workflow task.
        return ReplayOutcome(source, 1, None)
    failure = await _failure(history, workflows)
    if failure is None:
        return ReplayOutcome(source, len(history.events), None)
    named = _NAMED_EVENT.search(failure)
    if named is not None:
        kind = re.sub(r"(?<!^)(?=[A-Z])", "_", named["type"]).upper()  # as EventType names it
        return ReplayOutcome(source, len(history.events), failure, f"event {named['id']} ({kind})")
    return ReplayOutcome(source, len(history.events), failure, await _first_divergence(history, workflows))


async def _failure(history: WorkflowHistory, workflows: Sequence[type[Any]]) -> str | None:
    result = await replayer(workflows).replay_workflow(history, raise_on_replay_failure=False)
    return None if result.replay_failure is None else str(result.replay_failure)


async def _first_divergence(history: WorkflowHistory, workflows: Sequence[type[Any]]) -> str | None:
    """Bisects over workflow-task boundaries for the shortest prefix that fails to replay; the first
    event its last task's commands produced is where this code and the history part."""
    events = list(history.events)
    cuts = [i for i, event in enumerate(events) if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED]
    cuts.append(len(events))
    low, high = 0, len(cuts) - 1  # prefixes up to cuts[low] replay (or low = 0); up to cuts[high] fail
    while high - low > 1:
        middle = (low + high) // 2
        prefix = WorkflowHistory(history.workflow_id, events[: cuts[middle]])
        if await _failure(prefix, workflows) is None:
            low = middle
        else:
            high = middle
    for event in events[cuts[low] : cuts[high]]:
        if event.event_type in _COMMAND_EVENTS:
            return f"event {event.event_id} ({EventType.Name(event.event_type).removeprefix('EVENT_TYPE_')})"
    return None
