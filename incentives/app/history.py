"""A workflow's story for people: every run of a wallet or a promotion, oldest first, its events
decoded ("granted 10.00 USD lot spring:c42", "update redeem rejected: ..."), and for a customer
the ledger rows promotions wrote for them (a promotion's grant is not in the wallet's history)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from incentives.adapters.db import Pool
from incentives.adapters.temporal import DATA_CONVERTER
from incentives.domain.errors import UnknownCustomer
from incentives.domain.models import Model, wallet_id
from incentives.domain.money import format_money
from incentives.domain.promotions import promotion_workflow_id

Json = Any  # a decoded payload: JSON objects as dicts


class UnknownWorkflow(UnknownCustomer):
    """No workflow with this id in the namespace."""


class TimelineEntry(Model):
    at: datetime
    source: Literal["workflow", "ledger"]
    run_id: str | None
    event_id: int | None
    text: str


async def resolve(pool: Pool, target: str) -> str:
    """`wallet:…`, `promotion:…` or any id with a `:` is a workflow id; a promotion's id names
    its workflow; anything else is a customer, whose wallet it is."""
    if target.startswith(("wallet:", "promotion:")):
        return target
    if await pool.fetchval("SELECT true FROM promotions WHERE promotion_id = $1", target):
        return promotion_workflow_id(target)
    return wallet_id(target)


async def runs(client: Client, workflow_id: str) -> list[tuple[str, WorkflowHistory]]:
    """(run id, history) of every run of the workflow (continue-as-new, restarts), oldest first."""
    executions = [execution async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    if not executions:  # visibility may lag a just-started run: ask for the latest directly
        try:
            description = await client.get_workflow_handle(workflow_id).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise UnknownWorkflow(f"no workflow {workflow_id} in this namespace") from None
            raise
        executions = [description]
    executions.sort(key=lambda execution: execution.start_time)
    return [(e.run_id, await client.get_workflow_handle(e.id, run_id=e.run_id).fetch_history()) for e in executions]


def timeline(history: WorkflowHistory, run_id: str | None) -> list[TimelineEntry]:
    names = _names(history.events)
    entries = []
    for event in history.events:
        text = _describe(event, names)
        if text is not None:
            at = event.event_time.ToDatetime(tzinfo=UTC)
            entries.append(TimelineEntry(at=at, source="workflow", run_id=run_id, event_id=event.event_id, text=text))
    return entries


def ledger_calls(history: WorkflowHistory) -> list[str]:
    """The activity types a run called, in order: local ones (from their markers) and regular ones."""
    calls = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            calls.append(event.activity_task_scheduled_event_attributes.activity_type.name)
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_local_activity":
                calls.append(json.loads(marker.details["data"].payloads[0].data)["activity_type"])
    return calls


async def ledger_rows_by_others(pool: Pool, customer_id: str) -> list[TimelineEntry]:
    """The customer's ledger rows written by a workflow other than their wallet (promotions)."""
    rows = await pool.fetch(
        """SELECT entry_id, entry_type, lot_id, amount_minor, currency, workflow_id, run_id, created_at
           FROM ledger_entries WHERE customer_id = $1 AND workflow_id IS DISTINCT FROM $2 ORDER BY entry_id""",
        customer_id,
        wallet_id(customer_id),
    )
    return [
        TimelineEntry(
            at=row["created_at"],
            source="ledger",
            run_id=row["run_id"],
            event_id=None,
            text=f"{row['workflow_id'] or 'ledger'}: {row['entry_type']} "
            f"{format_money(abs(row['amount_minor']), row['currency'])} lot {row['lot_id']} (ledger row {row['entry_id']})",
        )
        for row in rows
    ]


# -- decoding -------------------------------------------------------------------------------------


def _decode(payloads: Any) -> list[Json]:
    return list(DATA_CONVERTER.payload_converter.from_payloads(list(payloads.payloads))) if payloads else []


def _names(events: Sequence[HistoryEvent]) -> dict[str, str]:
    """Update id → update name, scheduled event id → activity name (and `state:<id>` → the state
    a `record_state` call records), to name what completes."""
    names: dict[str, str] = {}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            names[request.meta.update_id] = request.input.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            names[str(event.event_id)] = attributes.activity_type.name
            if attributes.activity_type.name == "record_state":
                change = (_decode(attributes.input) or [{}])[0]
                names[f"state:{event.event_id}"] = change.get("state", "") if isinstance(change, dict) else ""
    return names


def _describe(event: HistoryEvent, names: dict[str, str]) -> str | None:
    kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    describe = _DESCRIBERS.get(kind)
    return describe(event, names) if describe else None


def _started(event: HistoryEvent, names: dict[str, str]) -> str:
    attributes = event.workflow_execution_started_event_attributes
    arg = (_decode(attributes.input) or [{}])[0]
    if attributes.continued_execution_run_id:
        return f"run started (continued from run {attributes.continued_execution_run_id})"
    terms = arg.get("terms") if isinstance(arg, dict) else None
    if terms:
        return f"promotion started: {_terms(terms)}"
    return f"{attributes.workflow_type.name} started"


def _terms(terms: Json) -> str:
    value = format_money(terms["amount"], terms["currency"]) if terms.get("amount") else "a coupon"
    return f"{terms['kind']} of {value}, budget {format_money(terms['budget']['amount'], terms['currency'])}"


def _update_accepted(event: HistoryEvent, names: dict[str, str]) -> str:
    request = event.workflow_execution_update_accepted_event_attributes.accepted_request
    args = _decode(request.input.args)
    return f"update {request.input.name} accepted{_request(request.input.name, args[0] if args else None)}"


def _request(name: str, arg: Json) -> str:
    if not isinstance(arg, dict):
        return ""
    if name == "redeem":
        return f": order {arg['order_id']}, total {format_money(arg['total'], arg['currency'])}"
    if name == "grant":
        return f": lot {arg['lot_id']}"
    if name in ("reverse", "revoke"):
        return f": {arg.get('order_id') or arg.get('lot_id')}"
    return ""


def _update_completed(event: HistoryEvent, names: dict[str, str]) -> str:
    attributes = event.workflow_execution_update_completed_event_attributes
    name = names.get(attributes.meta.update_id, "update")
    if attributes.outcome.HasField("failure"):
        failure = attributes.outcome.failure
        rule = failure.application_failure_info.type or "failure"
        return f"update {name} rejected ({rule}): {failure.message}"
    results = _decode(attributes.outcome.success)
    return _result(name, results[0] if results else None)


def _result(name: str, result: Json) -> str:
    if not isinstance(result, dict):
        return f"update {name} done"
    currency = result.get("currency", "")

    def money(minor: int) -> str:
        return format_money(minor, currency)

    if name == "grant":
        expiry = f", expires {result['expires_at'][:10]}" if result.get("expires_at") else ""
        return f"granted {money(result['amount'])} lot {result['lot_id']}{expiry}"
    if name == "redeem":
        return f"redeemed {money(result['discount'])} on order {result['order_id']} (to pay {money(result['to_pay'])})"
    if name == "reverse":
        return f"reversed {money(result['amount'])} of order {result['order_id']} ({result['reversal_id']})"
    if name == "revoke":
        return f"revoked lot {result['lot_id']}: {money(result['amount'])} ({result['reason']})"
    effect = f"{result['effect']}; " if result.get("effect") else ""
    return f"{name}: {effect}now {result.get('state', 'done')}"


def _activity_completed(event: HistoryEvent, names: dict[str, str]) -> str | None:
    attributes = event.activity_task_completed_event_attributes
    name = names.get(str(attributes.scheduled_event_id), "activity")
    results = _decode(attributes.result)
    result = results[0] if results else None
    if name == "grant_batch" and isinstance(result, dict):
        skipped = ", ".join(f"{n:,} skipped ({reason})" for reason, n in result["skipped"].items())
        return f"batch: {result['granted']:,} granted" + (f", {skipped}" if skipped else "")
    if name == "tick_clock" and isinstance(result, dict):
        return (
            f"clock: {result['activated']:,} activated, {result['reminded']:,} reminded, {result['expired']:,} "
            f"expired; {result['holding']:,} lots still live"
        )
    if name == "expire_lot" and isinstance(result, dict):
        expiry = result["expiry"]
        return f"lot {expiry['lot_id']} expired: {format_money(expiry['amount'], expiry['currency'])} written off"
    if name in ("activate_lot", "record_reminder") and isinstance(result, dict):
        return f"lot {result['lot_id']} {'activated' if name == 'activate_lot' else 'reminder recorded'}"
    if name == "revoke_outstanding":
        return f"{result} outstanding lots revoked"
    if name == "record_state":
        return f"state: {names.get(f'state:{attributes.scheduled_event_id}', '?')}"
    return None  # the update's own result says what a ledger call did


def _activity_failed(event: HistoryEvent, names: dict[str, str]) -> str:
    attributes = event.activity_task_failed_event_attributes
    name = names.get(str(attributes.scheduled_event_id), "activity")
    cause = attributes.failure.cause if attributes.failure.HasField("cause") else attributes.failure
    return f"{name} failed: {cause.message}"


def _timer_started(event: HistoryEvent, names: dict[str, str]) -> str:
    seconds = event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
    fires = event.event_time.ToDatetime(tzinfo=UTC) + seconds
    return f"timer set, fires {fires:%Y-%m-%d %H:%M:%S} UTC"


_DESCRIBERS: dict[str, Callable[[HistoryEvent, dict[str, str]], str | None]] = {
    "WORKFLOW_EXECUTION_STARTED": _started,
    "WORKFLOW_EXECUTION_UPDATE_ACCEPTED": _update_accepted,
    "WORKFLOW_EXECUTION_UPDATE_COMPLETED": _update_completed,
    "ACTIVITY_TASK_COMPLETED": _activity_completed,
    "ACTIVITY_TASK_FAILED": _activity_failed,
    "TIMER_STARTED": _timer_started,
    "TIMER_FIRED": lambda event, names: "timer fired",
    "WORKFLOW_EXECUTION_CONTINUED_AS_NEW": lambda event, names: "continued as new (history kept short)",
    "WORKFLOW_EXECUTION_COMPLETED": lambda event, names: "run completed",
    "WORKFLOW_EXECUTION_FAILED": lambda event, names: (
        "run failed: " + event.workflow_execution_failed_event_attributes.failure.message
    ),
    "WORKFLOW_EXECUTION_TERMINATED": lambda event, names: (
        "run terminated: " + event.workflow_execution_terminated_event_attributes.reason
    ),
    "WORKFLOW_TASK_FAILED": lambda event, names: (
        "workflow task failed: " + event.workflow_task_failed_event_attributes.failure.message
    ),
}
