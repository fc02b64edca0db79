"""What tracing installs once it is on (`incentives.adapters.tracing` decides, and imports this only
then): the SDK's tracer provider and its sampler, asyncpg's instrumentation, the Temporal
interceptor, the ASGI middleware."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import opentelemetry.context
import temporalio.worker
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.http import sanitize_method
from opentelemetry.util.types import Attributes
from temporalio.api.common.v1 import Payload
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor

# The helper the SDK's own interceptor attaches contexts with: a workflow evicted mid-handler is
# finalized wherever garbage collection runs, where a plain detach would log an error.
from temporalio.contrib.opentelemetry._context import attached_context

if TYPE_CHECKING:
    from starlette.types import ASGIApp

# Probes and scrapes, every few seconds from machines: a span each would drown the requests.
_UNTRACED_ROUTES = r"^[a-z]+://[^/]+/(healthz|readyz|metrics)$"
# What asyncpg's instrumentation marks a statement's span with (older and stable conventions).
_STATEMENT_MARKS = frozenset({"db.system", "db.system.name"})


def otlp_provider(service_name: str) -> TracerProvider:
    """`new_provider`, exporting in batches over OTLP/HTTP (where `OTEL_EXPORTER_OTLP_*` say)."""
    provider = new_provider(service_name)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def new_provider(service_name: str) -> TracerProvider:
    """A tracer provider as this project configures one, without a processor: `service.name` from
    `OTEL_SERVICE_NAME` (or `OTEL_RESOURCE_ATTRIBUTES`) if set, else `service_name`; the sampler
    `OTEL_TRACES_SAMPLER` names (parent-based always-on by default), lone statements dropped."""
    resource = Resource.create({SERVICE_NAME: service_name}).merge(OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource)
    # Wrapped before the provider hands out a tracer: each tracer keeps the sampler it was given.
    provider.sampler = NoLoneStatements(provider.sampler)
    return provider


def instrument_asyncpg(provider: TracerProvider) -> None:
    """Spans for asyncpg's statements, in every pool of the process (it patches asyncpg's classes,
    hence here, once, rather than where a pool is made). Parameters are never recorded: they hold
    customers' ids and amounts."""
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]  # ships no types


def uninstrument_asyncpg() -> None:
    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]  # ships no types


def temporal_interceptor(provider: TracerProvider) -> TracingInterceptor:
    return _CallerTracing(provider.get_tracer("temporalio.contrib.opentelemetry"))


def asgi_middleware(app: ASGIApp, provider: TracerProvider) -> ASGIApp:
    """A span for each request but the probes' (a caller's `traceparent` header continues its trace)."""
    return OpenTelemetryMiddleware(
        app,
        excluded_urls=_UNTRACED_ROUTES,
        default_span_details=_named_by_method,
        tracer_provider=provider,
        # Not a span around every read of the body and every write of the answer.
        exclude_spans=["receive", "send"],
    )


def _named_by_method(scope: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A request's span is named by its method (an unknown one as `_OTHER`) until its route is
    known (`tracing.name_request_span`): the path holds ids, and a name is meant to be shared."""
    return sanitize_method(str(scope.get("method", "HTTP"))), {}


class NoLoneStatements(Sampler):
    """Drops a statement's span that nothing encloses: the relay's poll of the outbox (every second
    when idle), the gauges' queries, a health check's. Each would be a trace of one span, with no
    request, Update or activity to explain it. Everything else is `configured`'s call."""

    def __init__(self, configured: Sampler) -> None:
        self._configured = configured

    def should_sample(
        self,
        parent_context: opentelemetry.context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        lone = not trace.get_current_span(parent_context).get_span_context().is_valid
        if lone and kind is SpanKind.CLIENT and attributes and not _STATEMENT_MARKS.isdisjoint(attributes):
            return SamplingResult(Decision.DROP)
        return self._configured.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"NoLoneStatements{{{self._configured.get_description()}}}"


class _CallerTracing(TracingInterceptor):
    """The SDK's interceptor, with an Update's spans in its caller's trace (`_UpdateInCallersTrace`)."""

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)  # registers the span-making function the workflow calls
        return _UpdateInCallersTrace


@dataclass
class _Outbound:
    """What the SDK's `_completed_span` writes a new span's context into."""

    headers: Mapping[str, Payload] = field(default_factory=dict)


class _UpdateInCallersTrace(TracingWorkflowInboundInterceptor):
    """The SDK parents an Update's validation and handling on the workflow's first caller, with
    only a link to the Update's own: a wallet lives for weeks, so every redeem would land in the
    trace of the call that started its wallet, and the redeem's own trace would end at its client
    span. Here they are children of the Update's caller, and the handling span is current while
    the handler runs, so that the ledger activity it starts is that span's child. An Update sent
    untraced (by the `temporal` command) is left to the SDK, and so are the other spans (the run,
    its timers' activities: in the first caller's trace)."""

    def handle_update_validator(self, input: temporalio.worker.HandleUpdateInput) -> None:
        caller = self._context_from(input.headers)
        if caller is None:
            super().handle_update_validator(input)
            return
        with attached_context(caller):
            self._completed_span(f"ValidateUpdate:{input.update}", kind=SpanKind.SERVER)
            temporalio.worker.WorkflowInboundInterceptor.handle_update_validator(self, input)

    async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
        caller = self._context_from(input.headers)
        if caller is None:
            return await super().handle_update_handler(input)
        with attached_context(caller):
            handling = _Outbound()
            self._completed_span(
                f"HandleUpdate:{input.update}",
                add_to_outbound=handling,
                additional_attributes={"temporalUpdateID": input.id},
                kind=SpanKind.SERVER,
            )
            # None when replaying (no span is made again): the handler then runs in the caller's.
            with attached_context(self._context_from(handling.headers)):
                return await temporalio.worker.WorkflowInboundInterceptor.handle_update_handler(self, input)

    def _context_from(self, headers: Mapping[str, Payload]) -> opentelemetry.context.Context | None:
        header = headers.get(self.header_key)
        if header is None:
            return None
        carrier = self.payload_converter.from_payloads([header])[0]
        # The interceptor rides on the context, as the SDK's does, for `workflow.completed_span`.
        return self._set_on_context(self.text_map_propagator.extract(carrier))
