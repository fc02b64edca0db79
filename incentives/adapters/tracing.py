"""Traces (OpenTelemetry), on only where OTLP export is configured: `OTEL_EXPORTER_OTLP_ENDPOINT`
(or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) in the environment, and not `OTEL_SDK_DISABLED=true`.

On, a process gets a tracer provider exporting in batches over OTLP/HTTP, asyncpg's statements
instrumented, Temporal's `TracingInterceptor` on each client it connects (a worker inherits it
from its client: given again, every span would be made twice) and, in the API, a span a request
(`incentives.adapters.tracing_sdk` holds those parts). Off, nothing is installed, nor even
imported: no provider (the API's no-op one stays), no patched driver, no interceptor, no
middleware, so the request path and the ledger path run exactly the code they run without this
module. Why: `docs/decisions/0012-tracing.md`.

The exporter, the sampler and the resource read the standard `OTEL_*` variables themselves
(`OTEL_SERVICE_NAME` wins over the name a process gives; `OTEL_TRACES_SAMPLER`; headers, timeouts).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from opentelemetry import trace
from temporalio.client import Interceptor

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from starlette.types import ASGIApp

# The standard variables (as `opentelemetry.sdk.environment_variables` names them, not imported:
# the SDK is imported only once tracing is on).
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_DISABLED = "OTEL_SDK_DISABLED"

_provider: TracerProvider | None = None


def configure_tracing(service_name: str) -> bool:
    """Turns tracing on for this process if OTLP export is configured, and says whether it is on.
    Once per process (a global tracer provider can be set only once): later calls answer the
    first's. Call it before connecting to Temporal, and `flush_tracing` before the process ends."""
    if _provider is not None:
        return True
    if not _export_configured(os.environ):
        return False
    from incentives.adapters import tracing_sdk  # ~0.1 s of imports, paid only when on

    provider = tracing_sdk.otlp_provider(service_name)
    trace.set_tracer_provider(provider)
    _install(provider)
    return True


@contextlib.contextmanager
def tracing_to(provider: TracerProvider) -> Iterator[None]:
    """Tracing on, to `provider`, for the block; off again after. The tests' seam (an in-memory
    exporter): unlike `configure_tracing`, it leaves the process's global provider alone, since
    that can be set only once and every later test of the session would then run traced."""
    if _provider is not None:
        raise RuntimeError("tracing is on already in this process")
    _install(provider)
    try:
        yield
    finally:
        _uninstall()


def flush_tracing() -> None:
    """Exports the spans still buffered. The API and the CLI end with `os._exit`, which runs no
    exit hook: without this, a process's last seconds of spans would be lost. A collector that does
    not answer holds the exit for the exporter's timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s)."""
    if _provider is not None:
        _provider.force_flush()


def tracing_interceptors() -> Sequence[Interceptor]:
    """Temporal client interceptors: the tracing one while tracing is on, none otherwise."""
    if _provider is None:
        return []
    from incentives.adapters.tracing_sdk import temporal_interceptor

    return [temporal_interceptor(_provider)]


def traced_asgi(app: ASGIApp) -> ASGIApp:
    """`app` with a span for each request while tracing is on; `app` itself otherwise."""
    if _provider is None:
        return app
    from incentives.adapters.tracing_sdk import asgi_middleware

    return asgi_middleware(app, _provider)


def name_request_span(method: str, route: str) -> None:
    """Names the current request's span by its route's template (`POST
    /v1/customers/{customer}/redemptions`): one name for every request to the route, no id in it."""
    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)


def _export_configured(environ: Mapping[str, str]) -> bool:
    if environ.get(_DISABLED, "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in _ENDPOINTS)


def _install(provider: TracerProvider) -> None:
    global _provider
    from incentives.adapters.tracing_sdk import instrument_asyncpg

    instrument_asyncpg(provider)
    _provider = provider


def _uninstall() -> None:
    global _provider
    from incentives.adapters.tracing_sdk import uninstrument_asyncpg

    uninstrument_asyncpg()
    _provider = None
