"""Recorded wallet histories (tests/replay/histories, from `python -m tests.replay.record`) replay
against the current workflow code: a change that would break running wallets fails here."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.worker import Replayer

from incentives.adapters.temporal import DATA_CONVERTER
from incentives.app.replay import replay
from tests.helpers.corpus import HISTORIES, load
from tests.replay.altered import PromotionThatSkipsOpening, WalletThatSleepsFirst
from workflows.registry import WORKFLOWS


def _activities(path: Path) -> list[tuple[str, str | None]]:
    """(activity type, failure type or None) of each activity a history scheduled."""
    scheduled: dict[str, str] = {}
    outcome: dict[str, str | None] = {}
    for event in json.loads(path.read_text())["events"]:
        if attributes := event.get("activityTaskScheduledEventAttributes"):
            scheduled[event["eventId"]] = attributes["activityType"]["name"]
        elif attributes := event.get("activityTaskFailedEventAttributes"):
            failure = attributes["failure"].get("cause", attributes["failure"])
            outcome[attributes["scheduledEventId"]] = failure.get("applicationFailureInfo", {}).get("type")
    return [(name, outcome.get(event_id)) for event_id, name in scheduled.items()]


def _local_activities(path: Path) -> list[str]:
    """The activity type of each local activity a history recorded, in order."""
    calls = []
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker and marker["markerName"] == "core_local_activity":
            data = json.loads(base64.b64decode(marker["details"]["data"]["payloads"][0]["data"]))
            calls.append(data["activity_type"])
    return calls


def test_histories_cover_every_operation_rejection_timer_and_continue_as_new() -> None:
    calls = [call for path in HISTORIES for call in _activities(path)]
    assert {name for name, _ in calls} >= {
        "load_wallet", "grant_lot", "redeem", "reverse", "revoke_lot", "activate_lot", "record_reminder", "expire_lot",
    }  # fmt: skip
    assert {failure for _, failure in calls} >= {
        "UnknownLot",
        "UnknownOrder",
    }  # rejections by the ledger (regular calls)
    text = "\n".join(path.read_text() for path in HISTORIES)
    assert "WORKFLOW_EXECUTION_CONTINUED_AS_NEW" in text
    assert "WORKFLOW_EXECUTION_COMPLETED" in text
    # Three generations: regular ledger calls (before the patches), local ones behind
    # LOCAL_LEDGER_CALLS, and one call for a new run's first operation behind FIRST_CALL_LOADS.
    local = "\n".join(path.read_text() for path in HISTORIES if path.parent.name == "local_ledger_calls")
    assert '"core_patch"' in local
    assert '"core_local_activity"' in local
    first = [path for path in HISTORIES if path.parent.name == "first_call_loads"]
    assert {name for path in first for name in _local_activities(path)} >= {"load_and_grant", "redeem"}
    assert all("load_wallet" not in _local_activities(path) for path in first)


def _accepted_updates(path: Path, name: str) -> int:
    events = json.loads(path.read_text())["events"]
    return sum(
        event.get("workflowExecutionUpdateAcceptedEventAttributes", {})
        .get("acceptedRequest", {})
        .get("input", {})
        .get("name")
        == name
        for event in events
    )


def test_concurrent_redeems_went_to_the_ledger_together_after_batched_redeems() -> None:
    """Behind BATCHED_REDEEMS every redeem is a `redeem_together` call, and a burst of concurrent
    redeems (some refused: the last burst asks for more than is left) takes fewer calls than redeems."""
    batched = [path for path in HISTORIES if path.parent.name == "batched_redeems"]
    assert all("redeem" not in _local_activities(path) for path in batched)
    burst = [path for path in batched if path.stem.startswith("wallet_continue_as_new")]
    calls = sum(_local_activities(path).count("redeem_together") for path in burst)
    redeems = sum(_accepted_updates(path, "redeem") for path in burst)
    assert 0 < calls < redeems / 2, (calls, redeems)
    assert "NothingToRedeem" in "\n".join(path.read_text() for path in burst)


def test_promotion_histories_cover_batches_controls_the_clock_and_continue_as_new() -> None:
    paths = [path for path in HISTORIES if path.parent.name == "promotions"]
    assert {name for path in paths for name, _ in _activities(path)} == {
        "open_promotion", "grant_batch", "tick_clock", "record_state", "revoke_outstanding",
    }  # fmt: skip
    text = "\n".join(path.read_text() for path in paths)
    for update in ("pause", "resume", "cancel", "add_audience", "extend"):
        assert f'"name": "{update}"' in text, update
    assert "WORKFLOW_EXECUTION_CONTINUED_AS_NEW" in text
    assert "WORKFLOW_EXECUTION_COMPLETED" in text


def _batches_per_workflow_task(path: Path) -> list[int]:
    """How many grant batches each workflow task of a history scheduled (tasks that scheduled some)."""
    counts, current = [], 0
    for event in json.loads(path.read_text())["events"]:
        if event["eventType"] == "EVENT_TYPE_WORKFLOW_TASK_COMPLETED":
            counts.append(current)
            current = 0
        attributes = event.get("activityTaskScheduledEventAttributes")
        current += bool(attributes and attributes["activityType"]["name"] == "grant_batch")
    return [n for n in [*counts, current] if n]


def test_promotion_generations_before_and_after_paired_batches() -> None:
    """Before the patch, one batch per workflow task; after it, two while far from the budget and
    one near it; both generations replay (below)."""
    before = [path for path in HISTORIES if path.parent.name == "promotions"]
    after = [path for path in HISTORIES if path.parent.name == "paired_batches"]
    assert {n for path in before for n in _batches_per_workflow_task(path)} == {1}
    assert {n for path in after for n in _batches_per_workflow_task(path)} == {1, 2}
    assert all('"core_patch"' in path.read_text() for path in after if path.stem.endswith("_0"))


def test_the_steerable_batches_generation_covers_failure_interruption_and_no_schedule() -> None:
    """Behind STEERABLE_BATCHES: a batch the database refused (the promotion failed), batches a
    control cancelled in flight, a second cancel that revokes (REVOKE_AFTER_CANCEL), and a
    promotion without a schedule; all of it replays (below)."""
    paths = [path for path in HISTORIES if path.parent.name == "steerable_batches"]
    failures = {failure for path in paths for name, failure in _activities(path) if name == "grant_batch"}
    assert "BatchRefused" in failures
    text = {path.stem: path.read_text() for path in paths}
    assert any("EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED" in history for history in text.values())
    assert all('"core_patch"' in history for stem, history in text.items() if stem.endswith("_0"))
    assert sum(_accepted_updates(path, "cancel") for path in paths if path.stem.startswith("promotion_cancelled")) == 2
    started = json.loads(text["promotion_without_schedule_0"])["events"][0]
    payload = started["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]["data"]
    terms = json.loads(base64.b64decode(payload))["terms"]
    assert (terms["starts_at"], terms["ends_at"]) == (None, None)


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_recorded_history_replays(path: Path) -> None:
    replayer = Replayer(workflows=WORKFLOWS, data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(load(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_a_non_deterministic_change_fails_replay_naming_the_event() -> None:
    path = next(path for path in HISTORIES if path.parent.name == "regular_ledger_calls")
    outcome = await replay(path.name, load(path), workflows=[WalletThatSleepsFirst])
    assert outcome.failure is not None
    assert "nondeterminism" in outcome.failure.lower()
    # The run's first command was loading the wallet; the altered code starts a timer instead.
    first_activity = next(
        event["eventId"]
        for event in json.loads(path.read_text())["events"]
        if "activityTaskScheduledEventAttributes" in event
    )
    assert outcome.diverged_at == f"event {first_activity} (ACTIVITY_TASK_SCHEDULED)"


async def test_the_promotion_corpus_catches_a_breaking_change() -> None:
    first_runs = [path for path in HISTORIES if path.parent.name == "promotions" and path.stem.endswith("_0")]
    assert first_runs
    for path in first_runs:
        outcome = await replay(path.name, load(path), workflows=[PromotionThatSkipsOpening])
        assert outcome.failure is not None, path.name
        # open_promotion, then the first record_state: where the altered code schedules nothing.
        scheduled = [e for e in json.loads(path.read_text())["events"] if "activityTaskScheduledEventAttributes" in e]
        assert outcome.diverged_at == f"event {scheduled[1]['eventId']} (ACTIVITY_TASK_SCHEDULED)", path.name
