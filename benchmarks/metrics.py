"""`./dev bench metrics`: what metrics cost checkout. Sequential redeems through two workers on the
same servers, in the same run, alternating call by call: one counting what the ledger decides,
its Temporal runtime exporting the SDK's metrics and its /metrics scraped every second (fifteen
times as often as Prometheus' default); the other counting nothing on a runtime without metrics.
The figure is the ratio of their redeem p50s.

Options: `--quick` (fewer rounds), `--json PATH` (write the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from temporalio.client import Client

from activities.counting import COUNTED, UNCOUNTED, Meter
from benchmarks.measure import Figure, interleaved
from benchmarks.servers import servers
from incentives.adapters.db import Pool
from incentives.adapters.logs import configure_logging
from incentives.adapters.metrics import REGISTRY
from incentives.adapters.sdk_metrics import sdk_metrics
from incentives.adapters.temporal import DATA_CONVERTER
from incentives.app.client import IncentivesClient
from incentives.app.metrics_endpoint import serve_metrics
from incentives.app.worker import WorkerOptions, build_worker
from incentives.devstack.servers import (
    free_port,
)
from incentives.domain.models import GrantRequest, RedeemRequest

SCRAPE_EVERY_S = 1.0


@contextlib.asynccontextmanager
async def scraped(url: str) -> AsyncIterator[list[int]]:
    """Scrapes `url` every second (in a thread, as Prometheus' requests reach the endpoint's own
    thread) while the block runs; yields the sizes of the scrapes taken."""
    sizes: list[int] = []

    def scrape() -> None:
        with urllib.request.urlopen(url, timeout=5) as response:
            sizes.append(len(response.read()))

    async def forever() -> None:
        while True:
            await asyncio.to_thread(scrape)
            await asyncio.sleep(SCRAPE_EVERY_S)

    task = asyncio.create_task(forever())
    try:
        yield sizes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def wallets_on(client: Client, pool: Pool, meter: Meter, name: str) -> AsyncIterator[IncentivesClient]:
    task_queue = f"bench-{name}-{uuid.uuid4().hex[:6]}"
    async with build_worker(client, pool, task_queue, WorkerOptions(meter=meter)):
        yield IncentivesClient(client, pool, task_queue=task_queue)


async def redeem_pair(plain: Client, metered: Client, pool: Pool, rounds: int, port: int) -> dict[str, Figure]:
    async with (
        wallets_on(plain, pool, UNCOUNTED, "off") as off,
        wallets_on(metered, pool, COUNTED, "on") as on,
        scraped(f"http://127.0.0.1:{port}/metrics") as scrapes,
    ):
        customers = {wallets: f"metrics-{uuid.uuid4().hex[:6]}" for wallets in (off, on)}
        for wallets, customer in customers.items():
            await wallets.grant(
                GrantRequest(
                    lot_id=f"{customer}-big", customer_id=customer, currency="USD", kind="credit", amount=10**9
                )
            )

        def redeem(wallets: IncentivesClient) -> Any:
            customer = customers[wallets]
            return lambda i: wallets.redeem(
                RedeemRequest(customer_id=customer, order_id=f"{customer}-{i}", currency="USD", total=1)
            )

        figures = await interleaved(rounds, {"metrics off": redeem(off), "metrics on": redeem(on)})
    assert scrapes, "the endpoint was scraped throughout"
    assert min(scrapes) > 0
    return figures


async def measure(quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        async with servers(Path(scratch)) as running:
            sdk, port = sdk_metrics(), free_port()
            stop = serve_metrics("127.0.0.1", port, [REGISTRY, sdk])
            try:
                metered = await Client.connect(
                    running.temporal.client.service_client.config.target_host,
                    data_converter=DATA_CONVERTER,
                    runtime=sdk.runtime,
                )
                plain = running.temporal.client
                figures = await redeem_pair(plain, metered, running.pool, 60 if quick else 400, port)
            finally:
                stop()
    off, on = figures["metrics off"], figures["metrics on"]
    return {
        "redeems_each": on.count,
        "redeem_p50_metrics_off_ms": round(off.p50_ms or 0, 2),
        "redeem_p50_metrics_on_ms": round(on.p50_ms or 0, 2),
        "redeem_p99_metrics_off_ms": round(off.p99_ms or 0, 2),
        "redeem_p99_metrics_on_ms": round(on.p99_ms or 0, 2),
        "ratio": round((on.p50_ms or 0) / (off.p50_ms or 1), 3),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="./dev bench metrics", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="60 redeems each instead of 400")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    figures = asyncio.run(measure(args.quick))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
