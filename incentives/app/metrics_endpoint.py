"""A process's `/metrics`: Prometheus' text format on `host:port`, from a thread of its own (a
scrape never waits for the event loop, nor the loop for a scrape)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.registry import Collector

from incentives.domain.errors import InvalidInput


def serve_metrics(host: str, port: int, collectors: Iterable[Collector]) -> Callable[[], None]:
    """Serves what `collectors` collect on `http://host:port/metrics` (any path, as
    prometheus_client serves it); returns what stops it. `InvalidInput` naming the setting when
    the address cannot be had: a worker that cannot be watched should not start unwatched."""
    # Not auto-described: each collector is registered elsewhere too, or checked there.
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        raise InvalidInput(
            "--metrics-port", f"cannot serve metrics on {host}:{port}: {error.strerror or error} (0 serves none)"
        ) from None

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return stop
