"""`./dev bench`: our redeem and grant paths against the bare platform, on the same servers, same run.

Starts its own PostgreSQL and Temporal dev server (the embedded stack's settings), measures the
ceilings (a no-op Update, an Update running one activity or one local activity, a bare redeem-shaped
Postgres transaction, update-with-start on new ids) beside ours, alternating between them (see
`benchmarks/measure.py`), and prints each of ours as a ratio to its ceiling. Absolute figures move
up to 2x between runs on a shared machine; the ratios are the numbers to quote. Then a checkout
rush: 400 concurrent redeems on one wallet, every answer checked against the ledger.

Options: `--quick` (fewer iterations, for a smoke run), `--json PATH` (write the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from benchmarks import api, events, metrics, promotion
from benchmarks.burst import Burst, checkout_burst
from benchmarks.measure import Call, Figure, alternating, interleaved
from benchmarks.probes import PROBE_SETUP, NoopEntity, ProbeActivities, bare_redeem_transaction
from benchmarks.servers import servers
from incentives.adapters.db import Pool
from incentives.adapters.logs import configure_logging
from incentives.app.client import IncentivesClient
from incentives.app.worker import build_worker
from incentives.domain.models import GrantRequest, RedeemRequest

Row = tuple[Figure, Figure | None, str]
IN_FLIGHT = 50
BURST = 400


@dataclass
class Bench:
    """The servers' clients, the probe workflow, our client, and this run's id prefix."""

    client: Client
    pool: Pool
    entity: WorkflowHandle[Any, Any]
    probe_queue: str
    wallets: IncentivesClient
    run: str

    def redeem(self, customer: str, prefix: str) -> Call:
        return lambda i: self.wallets.redeem(
            RedeemRequest(customer_id=customer, order_id=f"{prefix}-{i}", currency="USD", total=100)
        )

    def grant_new(self, prefix: str) -> Call:
        customer = f"{self.run}-{prefix}"
        return lambda i: self.wallets.grant(
            GrantRequest(
                lot_id=f"{customer}-{i}", customer_id=f"{customer}-{i}", currency="USD", kind="credit", amount=1
            )
        )

    def update_with_start_new(self, prefix: str) -> Call:
        async def call(i: int) -> object:
            start = WithStartWorkflowOperation(
                NoopEntity.run,
                id=f"noop-{self.run}-{prefix}-{i}",
                task_queue=self.probe_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            return await self.client.execute_update_with_start_workflow(
                NoopEntity.noop, "x", start_workflow_operation=start
            )

        return call


async def sequential_rows(bench: Bench, rounds: int, customer: str) -> list[Row]:
    entity, run = bench.entity, bench.run
    figures = await interleaved(
        rounds,
        {
            "bare redeem transaction (asyncpg)": lambda i: bare_redeem_transaction(bench.pool, "probe", f"b-{run}-{i}"),
            "no-op Update, one workflow": lambda i: entity.execute_update(NoopEntity.noop, f"{i}"),
            "Update + activity (redeem tx)": lambda i: entity.execute_update(NoopEntity.with_activity, f"a-{run}-{i}"),
            "Update + local activity (redeem tx)": lambda i: entity.execute_update(
                NoopEntity.with_local_activity, f"l-{run}-{i}"
            ),
            "redeem, sequential, one wallet": bench.redeem(customer, f"s-{run}"),
        },
    )
    bare, noop, upd_act, upd_local, ours = figures.values()
    both = ((noop.p50_ms or 0) + (bare.p50_ms or 0)) / 1000
    ceiling = Figure("ceiling: no-op Update + bare transaction", latencies=[both])
    return [
        (bare, None, ""),
        (noop, None, ""),
        (upd_act, None, ""),
        (upd_local, None, ""),
        (ours, ceiling, "p50 vs no-op Update + bare tx"),
        (ours, upd_local, "p50 vs Update + local activity"),
        (ours, upd_act, "p50 vs Update + activity"),
    ]


async def concurrent_rows(bench: Bench, count: int, customer: str) -> list[Row]:
    entity, run = bench.entity, bench.run
    ours_conc, conc_local = await alternating(
        count,
        count // 2,
        IN_FLIGHT,
        ("redeem, 50 concurrent, one wallet", bench.redeem(customer, f"c-{run}")),
        (
            "50 concurrent Updates + local activity, one workflow",
            lambda i: entity.execute_update(NoopEntity.with_local_activity, f"cl-{run}-{i}"),
        ),
    )
    ours_grant, uws = await alternating(
        count,
        count // 2,
        IN_FLIGHT,
        ("grant into new wallets, 50 in flight", bench.grant_new("g")),
        ("update-with-start, new ids, 50 in flight", bench.update_with_start_new("u")),
    )
    return [
        (conc_local, None, ""),
        (ours_conc, conc_local, "throughput vs 50 Updates + local activity"),
        (uws, None, ""),
        (ours_grant, uws, "throughput vs update-with-start, new ids"),
    ]


@asynccontextmanager
async def bench_stack(client: Client, pool: Pool) -> AsyncIterator[Bench]:
    """The probe worker and workflow beside our worker, each on its own task queue."""
    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    probe_queue = f"{task_queue}-probe"
    async with pool.acquire() as conn:
        await conn.execute(PROBE_SETUP)
        await conn.execute(
            "INSERT INTO probe_lots VALUES ('probe', 1000000000) ON CONFLICT (lot_id) DO UPDATE SET remaining = 1000000000"
        )
    probe_worker = Worker(
        client, task_queue=probe_queue, workflows=[NoopEntity], activities=[ProbeActivities(pool).probe_redeem]
    )
    async with probe_worker, build_worker(client, pool, task_queue):
        entity: WorkflowHandle[Any, Any] = await client.start_workflow(
            NoopEntity.run, id=f"noop-{uuid.uuid4().hex[:8]}", task_queue=probe_queue
        )
        wallets = IncentivesClient(client, pool, task_queue=task_queue)
        yield Bench(client, pool, entity, probe_queue, wallets, uuid.uuid4().hex[:8])
        await entity.signal(NoopEntity.finish)


async def measure(client: Client, pool: Pool, quick: bool) -> tuple[list[Row], Burst]:
    async with bench_stack(client, pool) as bench:
        customer = f"bench-{bench.run}"
        await bench.wallets.grant(
            GrantRequest(lot_id=f"{customer}-big", customer_id=customer, currency="USD", kind="credit", amount=10**12)
        )
        rows = await sequential_rows(bench, 40 if quick else 200, customer)
        rows += await concurrent_rows(bench, 100 if quick else 400, customer)
        burst = await checkout_burst(bench.wallets, pool, f"rush-{bench.run}", BURST, client)
    return rows, burst


def report(rows: list[Row]) -> str:
    lines = [
        "| what | n | p50 ms | p99 ms | per s | failed | ratio to ceiling |",
        "|---|---|---|---|---|---|---|",
    ]
    for figure, ceiling, basis in rows:
        ratio = ""
        if ceiling is not None:
            if basis.startswith("p50") and figure.p50_ms and ceiling.p50_ms:
                ratio = f"{figure.p50_ms / ceiling.p50_ms:.2f}x latency ({basis})"
            else:
                ratio = f"{figure.per_second / ceiling.per_second:.2f}x throughput ({basis})"
        p50 = f"{figure.p50_ms:.1f}" if figure.p50_ms is not None else ""
        p99 = f"{figure.p99_ms:.1f}" if figure.p99_ms is not None else ""
        lines.append(
            f"| {figure.name} | {figure.count} | {p50} | {p99} | {figure.per_second:.0f} | {figure.failures} | {ratio} |"
        )
    return "\n".join(lines)


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as scratch:
        async with servers(Path(scratch)) as running:
            rows, burst = await measure(running.temporal.client, running.pool, args.quick)
    print(report(rows))
    print(burst.summary())
    if args.json:
        figures = [figure.as_json() for figure, _, _ in rows] + [burst.figure.as_json()]
        args.json.write_text(json.dumps(figures, indent=2))
    if burst.problems or burst.figure.failures:
        raise SystemExit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["promotion"]:
        promotion.main(sys.argv[2:])
    elif sys.argv[1:2] == ["api"]:
        api.main(sys.argv[2:])
    elif sys.argv[1:2] == ["events"]:
        events.main(sys.argv[2:])
    elif sys.argv[1:2] == ["metrics"]:
        metrics.main(sys.argv[2:])
    else:
        asyncio.run(main())
