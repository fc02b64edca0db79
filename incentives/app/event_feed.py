"""Following the event stream from a terminal (`incentives events tail`): an ephemeral, ordered
consumer of the stream on one filter, from now or from an instant, that acknowledges nothing and
leaves nothing behind."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from nats.js.api import ConsumerConfig, DeliverPolicy

from incentives.adapters.broker import connect_broker, ensure_stream
from incentives.adapters.settings import Settings
from incentives.domain.errors import InvalidInput
from incentives.domain.events import CLOUD_EVENT_TYPES, SUBJECT_PREFIX, subject_token

# What `--type` takes: the full type, or it without `incentives.`, or the outbox's own name.
_TYPES: dict[str, str] = {
    name: cloud_type
    for event_type, (_, cloud_type) in CLOUD_EVENT_TYPES.items()
    for name in (cloud_type, cloud_type.removeprefix(f"{SUBJECT_PREFIX}."), event_type)
}


def feed_subject(event_type: str | None, customer: str | None) -> str:
    """The subject filter for one type and/or one customer (or promotion): e.g.
    `incentives.lot.reminder.>`, `incentives.*.*.alice%2Esmith`, `incentives.>`."""
    if event_type is not None and event_type not in _TYPES:
        known = ", ".join(cloud_type for _, cloud_type in CLOUD_EVENT_TYPES.values())
        raise InvalidInput("--type", f"{event_type!r} is not an event type: use one of {known}")
    if event_type is None and customer is None:
        return f"{SUBJECT_PREFIX}.>"
    kind = _TYPES[event_type] if event_type is not None else f"{SUBJECT_PREFIX}.*.*"
    return f"{kind}.{subject_token(customer) if customer is not None else '>'}"


async def follow(settings: Settings, subject: str, since: datetime | None) -> AsyncIterator[dict[str, Any]]:
    """The stream's events on `subject`, as CloudEvents: from `since` (or only new ones), forever."""
    connection = await connect_broker(settings, name="incentives events tail")
    try:
        js = connection.jetstream()
        await ensure_stream(js)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        if since is not None:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since)
        subscription = await js.subscribe(subject, ordered_consumer=True, config=config)
        try:
            async for message in subscription.messages:
                yield json.loads(message.data)
        finally:
            await subscription.unsubscribe()
    finally:
        await connection.close()
