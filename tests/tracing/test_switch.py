"""Tracing is on only where OTLP export is configured. Off (no endpoint, or OTEL_SDK_DISABLED),
nothing is installed, nor the SDK even imported, in the API's or the worker's process; on, spans
reach the collector over OTLP/HTTP under OTEL_SERVICE_NAME (else the process's own name), and
`incentives api` flushes its requests' spans before it exits. Each switch is checked in a fresh
process: a global tracer provider can be set only once per process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import SERVICE_NAME
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.adapters.settings import Settings
from incentives.adapters.temporal import connect_temporal
from incentives.adapters.tracing import tracing_interceptors, tracing_to
from incentives.adapters.tracing_sdk import new_provider
from incentives.app.client import IncentivesClient
from tests.helpers.builders import NewId, credit
from tests.helpers.processes import worker_process
from tests.http.api_process import api_process

# What a process that configured tracing has installed, as JSON on stdout. It imports the API's
# and the worker's modules first, so that "the SDK was not imported" covers them too.
_PROCESS = """
import json, sys
import asyncpg
import incentives.app.worker, incentives.http.__main__
from opentelemetry import trace
from incentives.adapters import tracing

on = tracing.configure_tracing("incentives-worker")
app = object()
with trace.get_tracer("tests").start_as_current_span("probe") as span:
    recording = span.is_recording()
tracing.flush_tracing()
print(json.dumps({
    "on": on,
    "again": tracing.configure_tracing("incentives-worker"),
    "sdk_imported": sorted(set(sys.modules) & {
        "incentives.adapters.tracing_sdk",
        "opentelemetry.sdk.trace",
        "opentelemetry.instrumentation.asgi",
        "opentelemetry.instrumentation.asyncpg",
    }),
    "provider": type(trace.get_tracer_provider()).__name__,
    "asyncpg_patched": hasattr(asyncpg.connection.Connection.execute, "__wrapped__"),
    "interceptors": len(tracing.tracing_interceptors()),
    "asgi_wrapped": tracing.traced_asgi(app) is not app,
    "recording": recording,
}))
"""


def _process(**environment: str) -> dict[str, Any]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", _PROCESS], env={**clean, **environment}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    facts: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return facts


OFF = {
    "on": False,
    "again": False,
    "sdk_imported": [],
    "provider": "ProxyTracerProvider",
    "asyncpg_patched": False,
    "interceptors": 0,
    "asgi_wrapped": False,
    "recording": False,
}


def test_without_an_endpoint_nothing_is_installed_nor_imported() -> None:
    assert _process() == OFF


def test_the_sdk_disabled_is_off_even_with_an_endpoint() -> None:
    assert _process(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_SDK_DISABLED="true") == OFF


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the test reads what it received."""


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """An OTLP/HTTP endpoint on a free port, keeping what it receives."""
    received: list[tuple[str, bytes]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_with_an_endpoint_spans_are_exported_under_the_service_name(
    collector: tuple[str, list[tuple[str, bytes]]],
) -> None:
    endpoint, received = collector
    facts = _process(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_SERVICE_NAME="checkout-edge")
    assert facts == {
        "on": True,
        "again": True,
        "sdk_imported": [
            "incentives.adapters.tracing_sdk",
            "opentelemetry.instrumentation.asgi",
            "opentelemetry.instrumentation.asyncpg",
            "opentelemetry.sdk.trace",
        ],
        "provider": "TracerProvider",
        "asyncpg_patched": True,
        "interceptors": 1,
        "asgi_wrapped": True,
        "recording": True,
    }
    [(path, body)] = received
    exported = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = exported.resource_spans
    attributes = {each.key: each.value.string_value for each in resource_spans.resource.attributes}
    assert (path, attributes[SERVICE_NAME]) == ("/v1/traces", "checkout-edge")
    assert [span.name for scope in resource_spans.scope_spans for span in scope.spans] == ["probe"]


def test_a_process_names_its_service_unless_otel_service_name_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert new_provider("incentives-api").resource.attributes[SERVICE_NAME] == "incentives-api"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout-edge")
    assert new_provider("incentives-api").resource.attributes[SERVICE_NAME] == "checkout-edge"


async def test_a_client_carries_the_interceptor_only_while_tracing_is_on(dev_server: WorkflowEnvironment) -> None:
    settings = Settings(temporal_address=dev_server.client.service_client.config.target_host)
    assert tracing_interceptors() == []
    assert (await connect_temporal(settings)).config()["interceptors"] == []
    with tracing_to(new_provider("incentives-tests")):
        [interceptor] = (await connect_temporal(settings)).config()["interceptors"]
    assert isinstance(interceptor, TracingInterceptor)
    assert tracing_interceptors() == []


async def test_the_api_process_exports_its_requests_spans_before_it_exits(
    collector: tuple[str, list[tuple[str, bytes]]], dev_server: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    """`incentives api` as production runs it: a span a request but the probes', named by route,
    its lines carrying the span's ids, and flushed when SIGTERM ends it (it exits with `os._exit`)."""
    endpoint, received = collector
    env = {
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "DATABASE_URL": database_url,
        "INCENTIVES_HOME": str(tmp_path),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "600000",  # nothing exported on a timer: only the flush at exit
    }
    async with api_process(env, tmp_path / "api.log") as api:
        async with api.client() as http:
            assert (await http.get("/v1/customers/c-1/wallet")).status_code == 401
        assert await api.stop() == 0
        lines = api.lines()
    spans = _exported(received, "incentives-api")
    assert [span.name for span in spans] == ["GET /v1/customers/{customer}/wallet"]
    requests = [line for line in lines if line.get("event") == "request"]
    [request] = [line for line in requests if line["route"] == "/v1/customers/{customer}/wallet"]
    assert (request["trace_id"], request["span_id"]) == (spans[0].trace_id.hex(), spans[0].span_id.hex())
    assert not [line for line in requests if "trace_id" in line and line is not request]  # the probes'


async def test_the_worker_process_exports_its_spans_before_it_exits(
    collector: tuple[str, list[tuple[str, bytes]]],
    dev_server: WorkflowEnvironment,
    pool: Pool,
    database_url: str,
    new_id: NewId,
    tmp_path: Path,
) -> None:
    """`incentives worker` as production runs it: a grant's activity and its SQL traced, and flushed
    when SIGTERM ends it."""
    endpoint, received = collector
    task_queue, customer = new_id("traced"), new_id("c")
    environment = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "600000"}
    log = tmp_path / "worker.log"
    async with worker_process(dev_server, database_url, task_queue, log, environment=environment) as worker:
        await IncentivesClient(dev_server.client, pool, task_queue=task_queue).grant(
            credit(new_id("lot"), customer, 100)
        )
        worker.send_signal(signal.SIGTERM)
        assert await worker.wait() == 0, log.read_text()
    names = {span.name for span in _exported(received, "incentives-worker")}
    assert "RunActivity:load_and_grant" in names, names
    assert any(name.startswith("INSERT") for name in names), names


def _exported(received: list[tuple[str, bytes]], service: str) -> list[Span]:
    """The spans `service` exported to the collector, in the order received."""
    return [
        span
        for body in (body for path, body in received if path == "/v1/traces")
        for resource in ExportTraceServiceRequest.FromString(body).resource_spans
        if {each.key: each.value.string_value for each in resource.resource.attributes}[SERVICE_NAME] == service
        for scope in resource.scope_spans
        for span in scope.spans
    ]
