"""Reading a wallet run's history back, for tests that assert on which ledger calls it made."""

from __future__ import annotations

import json

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from incentives.domain.models import wallet_id


async def ledger_calls(temporal: Client, customer_id: str, run_id: str | None = None) -> list[str]:
    """The activity types the wallet's run called, in order: local ones (from their markers) and regular ones."""
    history = await temporal.get_workflow_handle(wallet_id(customer_id), run_id=run_id).fetch_history()
    calls = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            calls.append(event.activity_task_scheduled_event_attributes.activity_type.name)
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_local_activity":
                calls.append(json.loads(marker.details["data"].payloads[0].data)["activity_type"])
    return calls
