"""The Temporal SDK's runtime metrics (task schedule-to-start latency, slots, pollers, the sticky
cache, request failures), served on our own `/metrics`.

The SDK's core (Rust) keeps its metrics itself and exports them only on an HTTP address of its
own. Each process that connects to Temporal gives it a loopback port nobody else uses, and our
registry re-exports what that port serves at every scrape (`SdkMetrics`): one endpoint to scrape,
every series as the SDK named it.

Units: the core records durations in milliseconds unless told otherwise; it is told
`durations_as_seconds` (its histograms record seconds, with bucket boundaries in seconds) and
`unit_suffix` (so their names end in `_seconds`), and counters get `_total`, as Prometheus' naming
conventions want. No conversion happens here.
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from incentives.adapters.logs import get_logger

SCRAPE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class SdkMetrics:
    """A Temporal runtime whose metrics this process re-exports; register it in a registry."""

    runtime: Runtime
    url: str

    def collect(self) -> Iterable[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=SCRAPE_TIMEOUT_S) as response:
                text = response.read().decode()
        except OSError as error:
            # A scrape without the SDK's series says so in the log; ours are still served.
            get_logger("incentives.metrics").warning("the Temporal SDK's metrics did not answer", error=str(error))
            return []
        return list(text_string_to_metric_families(text))


def sdk_metrics() -> SdkMetrics:
    """A runtime exporting the SDK's metrics on a free loopback port, to pass to `Client.connect`."""
    port = _free_loopback_port()
    config = PrometheusConfig(
        bind_address=f"127.0.0.1:{port}", counters_total_suffix=True, unit_suffix=True, durations_as_seconds=True
    )
    return SdkMetrics(Runtime(telemetry=TelemetryConfig(metrics=config)), f"http://127.0.0.1:{port}/metrics")


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
