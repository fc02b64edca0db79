"""Events in tests: a connection to the session's NATS server, a relay running for the duration of a
block, and reading what reached the stream back, as a consumer would."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jsonschema
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from incentives.adapters.broker import connect_broker, ensure_stream
from incentives.adapters.db import connect_one
from incentives.adapters.settings import Settings
from incentives.app.relay import Relay
from incentives.devstack.servers import EmbeddedNats

SOURCE = "/incentives-tests"
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "events"


@asynccontextmanager
async def broker(server: EmbeddedNats) -> AsyncIterator[tuple[Nats, JetStreamContext]]:
    """A connection to the test's NATS server, with the stream in place."""
    connection = await connect_broker(Settings(nats_url=server.url), name="tests")
    js = connection.jetstream()
    await ensure_stream(js)
    try:
        yield connection, js
    finally:
        await connection.close()


@asynccontextmanager
async def running_relay(js: JetStreamContext, database_url: str, *, batch: int = 5000) -> AsyncIterator[Relay]:
    """A relay for the duration of the block, leading once it is yielded."""
    relay = Relay(lambda: connect_one(database_url), js, source=SOURCE, batch=batch)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(relay.leading.wait(), 30)
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def stream_events(
    js: JetStreamContext, subject: str = "incentives.>", *, keep: Callable[[dict[str, Any]], bool] = lambda _: True
) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """Every message in the stream on `subject`, from the first, as (CloudEvent, headers) in stream
    order, kept by `keep`; it reads until the stream has nothing more for a moment."""
    subscription = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    found: list[tuple[dict[str, Any], dict[str, str]]] = []
    try:
        while True:
            try:
                message = await subscription.next_msg(timeout=0.5)
            except TimeoutError:
                return found
            event = json.loads(message.data)
            if keep(event):
                found.append((event, dict(message.headers or {}) | {"subject": message.subject}))
    finally:
        await subscription.unsubscribe()


def conforms(event: dict[str, Any]) -> None:
    """The event validates against its type's committed JSON Schema (docs/events), and carries
    exactly the fields its models state (the schema lets consumers accept more; we send no more)."""
    path = SCHEMAS / f"{event['type']}.schema.json"
    schema = json.loads(path.read_text())
    jsonschema.validate(event, schema, format_checker=jsonschema.FormatChecker())
    assert event.keys() == schema["properties"].keys(), sorted(event.keys() ^ schema["properties"].keys())
    data_schema = schema["properties"]["data"]
    assert event["data"].keys() == data_schema["properties"].keys(), sorted(
        event["data"].keys() ^ data_schema["properties"].keys()
    )
