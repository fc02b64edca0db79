"""Traces with everything in this process (the API's app through httpx's ASGI transport, a worker
on the same traced client) so that an in-memory exporter sees every span. One redeem through the
API is one trace: the request, the Update's client span and its handling in the wallet, the ledger
activity and its SQL statements, each the child of the one before. A promotion's sandboxed run is
traced too; probes and lone statements are not; a traced wallet's history still replays."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from incentives.adapters.db import Pool
from incentives.adapters.settings import Settings
from incentives.adapters.temporal import DATA_CONVERTER, connect_temporal
from incentives.adapters.tracing import traced_asgi, tracing_to
from incentives.adapters.tracing_sdk import new_provider, temporal_interceptor
from incentives.app import api_keys
from incentives.app.backends import Backends
from incentives.app.history import runs
from incentives.app.replay import replay_workflow
from incentives.app.worker import build_worker
from incentives.http.app import Api
from tests.helpers import eventually
from tests.helpers.builders import NewId
from tests.helpers.promotions import customers
from workflows.registry import WORKFLOWS


@dataclass
class Traced:
    http: httpx.AsyncClient
    temporal: Client
    exporter: InMemorySpanExporter
    provider: TracerProvider
    grant_key: str
    checkout_key: str
    promotions_key: str

    def spans(self, where: Callable[[ReadableSpan], bool] = lambda _: True) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if where(span)]


@pytest.fixture
async def traced(
    dev_server: WorkflowEnvironment, database_url: str, worker_pool: Pool, pool: Pool, tmp_path: Path
) -> AsyncIterator[Traced]:
    """The API and a worker, traced to memory, for the test only."""
    exporter = InMemorySpanExporter()
    provider = new_provider("incentives-tests")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    run = uuid.uuid4().hex[:8]
    grant_key = (await api_keys.create_key(pool, f"trace-grant-{run}", ["grant"])).key
    checkout_key = (await api_keys.create_key(pool, f"trace-checkout-{run}", ["checkout"])).key
    promotions_key = (await api_keys.create_key(pool, f"trace-promotions-{run}", ["promotions"])).key
    settings = Settings(
        database_url=database_url,
        temporal_address=dev_server.client.service_client.config.target_host,
        task_queue=f"trace-{run}",
        home=tmp_path,
    )
    with tracing_to(provider):
        client = await connect_temporal(settings)
        backends = Backends(settings)
        backends.start()
        app = traced_asgi(Api(backends))
        try:
            async with (
                build_worker(client, worker_pool, settings.task_queue),
                httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api", timeout=60) as http,
            ):

                async def ready() -> None:
                    assert (await http.get("/readyz")).status_code == 200

                await eventually(ready, timeout=30)
                yield Traced(http, client, exporter, provider, grant_key, checkout_key, promotions_key)
        finally:
            await backends.close()


def _one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    named = [span for span in spans if span.name == name]
    assert len(named) == 1, (name, [span.name for span in spans])
    return named[0]


def _parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def _grant_then_redeem(traced: Traced, new_id: NewId) -> str:
    """A grant, which starts the customer's wallet, then a redeem: a plain Update to the running
    wallet, which the SDK's own workflow interceptor would have put in the grant's trace."""
    customer = new_id("c")
    grant = {"lot_id": new_id("lot"), "currency": "USD", "kind": "credit", "amount": 1000}
    answer = await traced.http.post(
        f"/v1/customers/{customer}/grants", json=grant, headers={"Authorization": f"Bearer {traced.grant_key}"}
    )
    assert answer.status_code == 201, answer.text
    order = {"order_id": new_id("o"), "currency": "USD", "total": 400}
    answer = await traced.http.post(
        f"/v1/customers/{customer}/redemptions", json=order, headers={"Authorization": f"Bearer {traced.checkout_key}"}
    )
    assert answer.status_code == 201, answer.text
    return customer


async def test_a_redeem_through_the_api_is_one_trace_from_the_request_to_its_sql(traced: Traced, new_id: NewId) -> None:
    await _grant_then_redeem(traced, new_id)
    route = "POST /v1/customers/{customer}/redemptions"

    async def traced_to_its_sql() -> list[ReadableSpan]:
        request = _one(traced.spans(), route)
        assert request.context is not None
        spans = traced.spans(
            lambda span: span.context is not None and span.context.trace_id == request.context.trace_id
        )
        assert any(span.name == "RunActivity:redeem_together" for span in spans)
        return spans

    spans = await eventually(traced_to_its_sql)
    request = _one(spans, route)
    update = _one(spans, "StartWorkflowUpdate:redeem")
    validation = _one(spans, "ValidateUpdate:redeem")
    handling = _one(spans, "HandleUpdate:redeem")
    start = _one(spans, "StartActivity:redeem_together")
    activity = _one(spans, "RunActivity:redeem_together")  # once: the worker did not add the interceptor again
    assert (request.parent, request.kind, update.kind) == (None, SpanKind.SERVER, SpanKind.CLIENT)
    assert (request.attributes or {}).get("http.route") == "/v1/customers/{customer}/redemptions"
    chain = [(request, update), (update, validation), (update, handling), (handling, start), (start, activity)]
    for parent, child in chain:
        assert parent.context is not None
        assert _parent_of(child) == parent.context.span_id, (child.name, parent.name)
    assert activity.context is not None
    statements = sorted(
        (span for span in spans if _parent_of(span) == activity.context.span_id), key=lambda span: span.start_time or 0
    )
    sql = [str((span.attributes or {}).get("db.statement", "")) for span in statements]
    # The activity's one transaction, the ledger's rows in it; no parameter recorded (they hold ids).
    assert (sql[0], sql[-1]) == ("BEGIN;", "COMMIT;"), sql
    assert any(text.startswith("INSERT INTO ledger_entries") for text in sql), sql
    assert all(span.kind is SpanKind.CLIENT for span in statements)
    assert not any("db.statement.parameters" in (span.attributes or {}) for span in spans)


async def test_a_promotion_started_through_the_api_traces_its_sandboxed_run_to_its_batch_sql(
    traced: Traced, new_id: NewId
) -> None:
    """The promotion runs in the full sandbox (the wallet's module passes through it): the
    interceptor's workflow side needs no passthrough of OpenTelemetry to make its spans there."""
    spec = {
        "id": new_id("p"),
        "name": "traced credit",
        "kind": "credit",
        "value": {"amount": "1.00"},
        "currency": "USD",
        "validity": {"expires_after": "14d"},
        "budget": {"amount": "100.00"},
        "audience": {"customers": customers(new_id, 3)},
    }
    answer = await traced.http.post(
        "/v1/promotions", json=spec, headers={"Authorization": f"Bearer {traced.promotions_key}"}
    )
    assert answer.status_code == 201, answer.text

    async def granted() -> list[ReadableSpan]:
        request = _one(traced.spans(), "POST /v1/promotions")
        assert request.context is not None
        spans = traced.spans(
            lambda span: span.context is not None and span.context.trace_id == request.context.trace_id
        )
        _one(spans, "RunActivity:grant_batch")
        return spans

    spans = await eventually(granted, timeout=30)
    start, run = _one(spans, "StartWorkflow:Promotion"), _one(spans, "RunWorkflow:Promotion")
    batch = _one(spans, "RunActivity:grant_batch")
    assert start.context is not None
    assert _parent_of(run) == start.context.span_id
    assert batch.context is not None
    assert any(_parent_of(span) == batch.context.span_id and span.kind is SpanKind.CLIENT for span in spans)


async def test_probes_are_not_traced_nor_a_lone_statement_and_no_span_is_named_by_an_id(
    traced: Traced, pool: Pool
) -> None:
    before = {span.context.span_id for span in traced.spans() if span.context is not None}
    for probe in ("/healthz", "/readyz"):  # /readyz asks Postgres too: a lone statement
        assert (await traced.http.get(probe)).status_code == 200
    assert (await traced.http.get("/v1/nowhere/c-41")).status_code == 404
    assert (await traced.http.request("BREW", "/v1/customers/c-41/wallet")).status_code == 405
    assert await pool.fetchval("SELECT 1") == 1
    with traced.provider.get_tracer("tests").start_as_current_span("enclosing"):
        assert await pool.fetchval("SELECT 2") == 2
    new = [span for span in traced.spans() if span.context is not None and span.context.span_id not in before]
    assert sorted((span.name, (span.attributes or {}).get("db.statement")) for span in new) == [
        ("GET", None),  # no route: named by its method alone
        ("SELECT", "SELECT 2"),
        ("_OTHER", None),  # nor by a method of the caller's invention
        ("enclosing", None),
    ]


async def test_a_traced_wallet_replays_without_the_interceptor_and_with_it_makes_no_span(
    traced: Traced, new_id: NewId
) -> None:
    """The replayer has no interceptor: the trace headers in a history are not its business. A
    worker restarted traced replays with it, and a replayed handler makes no span again."""
    wallet = f"wallet:{await _grant_then_redeem(traced, new_id)}"
    outcomes = await replay_workflow(traced.temporal, wallet)
    assert [outcome.failure for outcome in outcomes] == [None]
    [(_, history)] = await runs(traced.temporal, wallet)
    made = len(traced.spans())
    traced_replayer = Replayer(
        workflows=list(WORKFLOWS), data_converter=DATA_CONVERTER, interceptors=[temporal_interceptor(traced.provider)]
    )
    assert (await traced_replayer.replay_workflow(history, raise_on_replay_failure=False)).replay_failure is None
    assert len(traced.spans()) == made
