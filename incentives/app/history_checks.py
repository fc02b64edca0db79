"""Histories checked before the SDK's Replayer sees them: the Temporal core panics on a history it
cannot take apart (no events, a second run appended, a workflow task left open) and the replay then
waits forever, so every rule its replay relies on is checked here first and refused as bad input
naming the source. Files are read with a size limit, and only when they are regular files."""

from __future__ import annotations

import itertools
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from incentives.domain.errors import InvalidInput

# Temporal refuses a history past 50 MB; its JSON form is larger (base64 payloads, field names),
# and this project's workflows continue-as-new long before either.
MAX_HISTORY_BYTES = 64 * 1024 * 1024
_READ_CHUNK = 1024 * 1024
_STARTED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
_TASK_STARTED = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
# What the core accepts right after a workflow task started: the task's end, or the run's.
_AFTER_TASK_STARTED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
}


def read_history_file(path: Path) -> WorkflowHistory:
    """The history in `path` (Temporal's JSON form), its events numbered 1 to n; `InvalidInput`
    naming the file otherwise. The workflow id is the file's stem (a file does not hold it)."""
    document = _parse_json(path, _read_regular_file(path))
    events = document.get("events") if isinstance(document, dict) else None
    if not isinstance(events, list):
        raise InvalidInput(str(path), "not a workflow history: a JSON object with a list of events is expected")
    _check_numbering(str(path), [_raw_id(event) for event in events])
    try:
        return WorkflowHistory.from_json(path.stem, document)
    except Exception as error:  # whatever the SDK's parser refuses, the file is not a history it reads
        raise InvalidInput(str(path), f"not a workflow history ({_first_line(error)})") from None


def _read_regular_file(path: Path) -> bytes:
    """The file's bytes, at most `MAX_HISTORY_BYTES`. Opened without blocking (a FIFO would wait
    for a writer), refused unless it is a regular file, and the limit held while reading too (a
    file can grow after it is measured)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        raise InvalidInput(str(path), f"cannot open it: {_os_reason(error)}") from None
    too_large = InvalidInput(
        str(path), f"larger than {MAX_HISTORY_BYTES // (1024 * 1024)} MiB: too large for one history"
    )
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput(str(path), "not a regular file (a directory, FIFO or device): give a saved history")
        if info.st_size > MAX_HISTORY_BYTES:
            raise too_large
        chunks, size = [], 0
        while chunk := os.read(fd, min(_READ_CHUNK, MAX_HISTORY_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_HISTORY_BYTES:
                raise too_large
        return b"".join(chunks)
    except OSError as error:
        raise InvalidInput(str(path), f"cannot read it: {_os_reason(error)}") from None
    finally:
        os.close(fd)


def _parse_json(path: Path, data: bytes) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise InvalidInput(str(path), "not a workflow history: JSON nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, an integer too long
        raise InvalidInput(str(path), f"not JSON ({_first_line(error)})") from None


def _raw_id(event: object) -> str:
    """An event's id as the JSON gives it (a string, as proto3 writes int64, or a number)."""
    if not isinstance(event, dict):
        return "(not an object)"
    value = event.get("eventId", event.get("event_id"))
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else "(none)"


def check_history(source: str, history: WorkflowHistory, workflows: Sequence[type[Any]]) -> None:
    """`InvalidInput` naming `source` unless `history` is one run of a workflow type in `workflows`
    that the SDK's Replayer can take: events numbered 1 to n, the first (and only the first) the
    run's start, with its run id, each event carrying the attributes of its type, and every workflow
    task that started followed by its end (or the run's)."""
    events = list(history.events)
    _check_numbering(source, [str(event.event_id) for event in events])
    for event in events:
        _check_attributes(source, event)
    first = events[0]
    if first.event_type != _STARTED:
        raise InvalidInput(source, f"its first event is {_type_name(first)}, not WORKFLOW_EXECUTION_STARTED")
    started = first.workflow_execution_started_event_attributes
    if not started.original_execution_run_id:
        raise InvalidInput(source, "its WORKFLOW_EXECUTION_STARTED event has no run id (originalExecutionRunId)")
    _check_workflow_type(source, started.workflow_type.name, workflows)
    for event, following in itertools.pairwise(events):
        if following.event_type == _STARTED:
            raise InvalidInput(
                source, f"event {following.event_id} starts a second run: a history is one run (two histories in one?)"
            )
        if event.event_type == _TASK_STARTED and following.event_type not in _AFTER_TASK_STARTED:
            raise InvalidInput(
                source,
                f"event {following.event_id} ({_type_name(following)}) follows a WORKFLOW_TASK_STARTED, "
                "where only the task's completion, failure or timeout can",
            )


def _check_numbering(source: str, ids: list[str]) -> None:
    if not ids:
        raise InvalidInput(source, "not a workflow history: it has no events")
    for number, event_id in enumerate(ids, start=1):
        if event_id != str(number):
            raise InvalidInput(
                source,
                f"event {number} has id {event_id[:20]}: a history's events are numbered 1, 2, 3... in order "
                "(is it two histories in one?)",
            )


def _check_attributes(source: str, event: HistoryEvent) -> None:
    """Each event type has its own attributes field (EVENT_TYPE_TIMER_FIRED: timer_fired_event_attributes)."""
    name = EventType.Name(event.event_type) if event.event_type in EventType.values() else None
    if name is None or event.event_type == EventType.EVENT_TYPE_UNSPECIFIED:
        raise InvalidInput(source, f"event {event.event_id} has no known event type")
    expected = name.removeprefix("EVENT_TYPE_").lower() + "_event_attributes"
    if event.WhichOneof("attributes") != expected:
        raise InvalidInput(source, f"event {event.event_id} ({_type_name(event)}) does not carry {expected}")


def _check_workflow_type(source: str, name: str, workflows: Sequence[type[Any]]) -> None:
    # The name each `@workflow.defn` class is registered under; None for a dynamic one, which takes any.
    names = [workflow._Definition.must_from_class(defined).name for defined in workflows]
    if name in names or None in names:
        return
    known = ", ".join(sorted(known for known in names if known is not None))
    raise InvalidInput(source, f"workflow type {name[:100]!r} is not one this code registers ({known})")


def _type_name(event: HistoryEvent) -> str:
    if event.event_type not in EventType.values():
        return f"event type {event.event_type}"
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")


def _os_reason(error: OSError) -> str:
    return (error.strerror or type(error).__name__).lower()


def _first_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= 200 else text[:200] + "…"
