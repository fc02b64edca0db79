"""The one Temporal seam: the data converter, the search attributes and the connection, defined
once and used by the client, the worker, the replayer, the tests, the benchmarks and the history
recorder. A replayer configured unlike the worker would mis-decode payloads without a word."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from incentives.adapters.endpoints import HINT, endpoints
from incentives.adapters.failures import connection_failure
from incentives.adapters.settings import Settings
from incentives.adapters.tracing import tracing_interceptors
from incentives.domain.errors import Unavailable
from incentives.domain.search_attributes import SEARCH_ATTRIBUTES

DATA_CONVERTER: DataConverter = pydantic_data_converter


def search_attribute_flags() -> list[str]:
    """`temporal server start-dev` flags that register the search attributes."""
    return [arg for name, kind in SEARCH_ATTRIBUTES.items() for arg in ("--search-attribute", f"{name}={kind}")]


async def connect_temporal(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A client of the configured Temporal; `Unavailable` naming the address and the cause in words
    (the core's own error is its Rust debug text) when it cannot connect. A long-lived process
    passes the `runtime` whose metrics it serves (`incentives.adapters.sdk_metrics`). While tracing
    is on (`incentives.adapters.tracing`), the client carries the tracing interceptor, and so does
    every worker built on it."""
    where = endpoints(settings)
    try:
        return await Client.connect(
            **where.temporal, data_converter=DATA_CONVERTER, runtime=runtime, interceptors=tracing_interceptors()
        )
    except RuntimeError as error:
        why = connection_failure(error)
        raise Unavailable(f"cannot reach Temporal at {where.temporal_address}: {why}; {HINT}") from error
