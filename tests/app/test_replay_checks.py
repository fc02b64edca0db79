"""Histories are checked before the SDK's Replayer sees them: every shape on which the Temporal core
panics and the replay waits forever (no events, a second run appended, a workflow task left open) is
refused as bad input naming the file, and so are files that are not one history at all. Real
histories come from the recorded corpus (tests/replay/histories)."""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from incentives.app.history_checks import MAX_HISTORY_BYTES
from incentives.app.replay import load_history, replay
from incentives.domain.errors import InvalidInput
from tests.helpers.corpus import HISTORIES

Events = list[dict[str, Any]]
CORPUS = Path(__file__).resolve().parents[1] / "replay" / "histories"
WALLET = CORPUS / "local_ledger_calls" / "wallet_operations_0.json"


def events_of(path: Path = WALLET) -> Events:
    events: Events = json.loads(path.read_text())["events"]
    return events


def renumbered(events: Events) -> Events:
    """The events numbered 1 to n again, as someone covering their tracks would."""
    events = [copy.deepcopy(event) for event in events]  # one copy per place, even of the same event
    for number, event in enumerate(events, start=1):
        event["eventId"] = str(number)
    return events


def write(tmp_path: Path, document: object, name: str = "history.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def refused(path: Path) -> str:
    """The reason `load_history` refuses the file with, naming it."""
    with pytest.raises(InvalidInput) as raised:
        load_history(path)
    assert raised.value.field == str(path)
    return raised.value.reason


def _with_started_type(name: str) -> Callable[[Events], Events]:
    def change(events: Events) -> Events:
        events = copy.deepcopy(events)
        events[0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"] = name
        return events

    return change


def _without_run_id(events: Events) -> Events:
    events = copy.deepcopy(events)
    del events[0]["workflowExecutionStartedEventAttributes"]["originalExecutionRunId"]
    return events


def _retyped(index: int, event_type: str) -> Callable[[Events], Events]:
    def change(events: Events) -> Events:
        events = copy.deepcopy(events)
        events[index]["eventType"] = event_type
        return events

    return change


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda events: [], "it has no events"),
        (lambda events: events + events, "event 58 has id 1: a history's events are numbered 1, 2, 3... in order"),
        (lambda events: [e for event in events for e in (event, event)], "event 2 has id 1"),
        (lambda events: renumbered(events + events), "event 58 starts a second run"),
        (lambda events: events[1:], "event 1 has id 2"),
        (lambda events: renumbered(events[1:]), "its first event is WORKFLOW_TASK_SCHEDULED"),
        (_without_run_id, "has no run id"),
        (
            _with_started_type("Nope"),
            "workflow type 'Nope' is not one this code registers (Promotion, Reconcile, Wallet)",
        ),
        (_retyped(3, "EVENT_TYPE_TIMER_FIRED"), "event 4 (TIMER_FIRED) does not carry timer_fired_event_attributes"),
        (_retyped(3, "EVENT_TYPE_UNSPECIFIED"), "event 4 has no known event type"),
        (
            lambda events: renumbered([*events[:3], events[5], *events[3:]]),
            "event 4 (MARKER_RECORDED) follows a WORKFLOW_TASK_STARTED",
        ),
    ],
    ids=[
        "no-events",
        "concatenated",
        "each-event-twice",
        "concatenated-renumbered",
        "first-event-missing",
        "first-event-missing-renumbered",
        "no-run-id",
        "unknown-workflow-type",
        "attributes-of-another-type",
        "unspecified-type",
        "workflow-task-left-open",
    ],
)
def test_a_malformed_history_is_refused_naming_why(
    tmp_path: Path, change: Callable[[Events], Events], why: str
) -> None:
    assert why in refused(write(tmp_path, {"events": change(events_of())}))


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "not JSON"),
        (b"nope", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[]", "a JSON object with a list of events is expected"),
        (b'{"events": {}}', "a JSON object with a list of events is expected"),
        (b'{"events": [1, 2]}', "event 1 has id (not an object)"),
        (b'{"events": [{"eventId": true}]}', "event 1 has id (none)"),
        (b'{"events": [{"eventId": "1", "eventType": 12345678}]}', "event 1 has no known event type"),
        (
            b'{"events": [{"eventId": "1", "eventTime": "yesterday"}]}',
            "not a workflow history (Failed to parse events field: Failed to parse eventTime",
        ),
    ],
    ids=[
        "empty",
        "text",
        "not-utf8",
        "deep",
        "a-list",
        "events-not-a-list",
        "events-not-objects",
        "bool-id",
        "unknown-enum",
        "bad-time",
    ],
)
def test_a_file_that_is_not_a_history_is_refused(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "history.json"
    path.write_bytes(content)
    assert why in refused(path)


def test_what_is_not_a_regular_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opened for reading without a writer: a plain open() would wait forever
    for path in (tmp_path, fifo, Path("/dev/null"), Path("/dev/zero")):
        assert "not a regular file (a directory, FIFO or device)" in refused(path)
    (tmp_path / "dangling.json").symlink_to(tmp_path / "gone.json")
    assert refused(tmp_path / "dangling.json") == "cannot open it: no such file or directory"


def test_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as file:
        file.truncate(MAX_HISTORY_BYTES + 1)  # sparse: nothing is written
    assert refused(path) == "larger than 64 MiB: too large for one history"


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_recorded_history_passes(path: Path) -> None:
    assert len(load_history(path).events) == len(events_of(path))


async def test_a_history_fetched_or_built_elsewhere_is_checked_too(tmp_path: Path) -> None:
    """`replay` checks whatever it is given, not only files: the server's histories go through it."""
    history = load_history(WALLET)
    with pytest.raises(InvalidInput, match="workflow type 'Wallet' is not one this code registers"):
        await replay("wallet:x run r", history, workflows=[])


async def test_a_history_of_only_the_start_replays_without_waiting(tmp_path: Path) -> None:
    """A run whose start delay is not over: nothing to replay (the SDK's Replayer waited forever on it)."""
    path = write(tmp_path, {"events": events_of()[:1]})
    outcome = await asyncio.wait_for(replay(str(path), load_history(path)), timeout=30)
    assert (outcome.events, outcome.failure) == (1, None)
