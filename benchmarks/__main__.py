"""`./dev bench`: our redeem and grant paths against the bare platform, on the same servers, same run.

Starts its own PostgreSQL and Temporal dev server (the embedded stack's settings), measures the
ceilings (a no-op Update, an Update running one activity or one local activity, a bare redeem-shaped
Postgres transaction, update-with-start on new ids) and then ours, and prints each of ours as a
ratio to its ceiling. Absolute figures move up to 2x between runs on a shared machine; the
ratios, measured together, are the numbers to quote.

Options: `--quick` (fewer iterations, for a smoke run), `--json PATH` (write the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from benchmarks import promotion
from benchmarks.probes import PROBE_SETUP, NoopEntity, ProbeActivities, bare_redeem_transaction
from incentives.adapters.db import Pool, create_pool
from incentives.adapters.logs import configure_logging
from incentives.adapters.migrations import migrate
from incentives.adapters.temporal import DATA_CONVERTER
from incentives.app.client import IncentivesClient
from incentives.app.worker import build_worker
from incentives.devstack.servers import TEMPORAL_BIN, EmbeddedPostgres, temporal_dev_server_args
from incentives.domain.errors import Rejected
from incentives.domain.models import GrantRequest, RedeemRequest


@dataclass
class Figure:
    name: str
    count: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    failures: int = 0

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


async def sequential(name: str, count: int, call: Callable[[int], Awaitable[object]]) -> Figure:
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        await call(i)
        latencies.append(time.perf_counter() - t0)
    return _figure(name, count, time.perf_counter() - started, latencies)


async def concurrent(name: str, count: int, in_flight: int, call: Callable[[int], Awaitable[object]]) -> Figure:
    latencies: list[float] = []
    failures = 0
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        nonlocal failures
        async with gate:
            t0 = time.perf_counter()
            try:
                await call(i)
            except Rejected:
                pass  # a business answer, not a failure
            except Exception:
                failures += 1
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return _figure(name, count, time.perf_counter() - started, latencies, failures)


def _figure(name: str, count: int, seconds: float, latencies: Sequence[float], failures: int = 0) -> Figure:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000 if ordered else None
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else None
    return Figure(name, count, seconds, p50, p99, failures)


async def measure(client: Client, pool: Pool, quick: bool) -> list[tuple[Figure, Figure | None, str]]:
    n_seq = 40 if quick else 200
    n_conc = 50 if quick else 200
    rows: list[tuple[Figure, Figure | None, str]] = []
    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        await conn.execute(PROBE_SETUP)
        await conn.execute(
            "INSERT INTO probe_lots VALUES ('probe', 1000000000) ON CONFLICT (lot_id) DO UPDATE SET remaining = 1000000000"
        )
    probe_worker = Worker(
        client,
        task_queue=f"{task_queue}-probe",
        workflows=[NoopEntity],
        activities=[ProbeActivities(pool).probe_redeem],
    )
    wallet_worker = build_worker(client, pool, task_queue)
    async with probe_worker, wallet_worker:
        entity: WorkflowHandle[Any, Any] = await client.start_workflow(
            NoopEntity.run, id=f"noop-{uuid.uuid4().hex[:8]}", task_queue=f"{task_queue}-probe"
        )
        run = uuid.uuid4().hex[:8]

        # -- ceilings --------------------------------------------------------------------------
        bare = await sequential(
            "bare redeem transaction (asyncpg)",
            n_seq * 2,
            lambda i: bare_redeem_transaction(pool, "probe", f"bare-{run}-{i}"),
        )
        noop = await sequential(
            "no-op Update, one workflow", n_seq, lambda i: entity.execute_update(NoopEntity.noop, f"{i}")
        )
        upd_act = await sequential(
            "Update + activity (redeem tx)",
            n_seq,
            lambda i: entity.execute_update(NoopEntity.with_activity, f"a-{run}-{i}"),
        )
        upd_local = await sequential(
            "Update + local activity (redeem tx)",
            n_seq,
            lambda i: entity.execute_update(NoopEntity.with_local_activity, f"l-{run}-{i}"),
        )
        conc_act = await concurrent(
            "50 concurrent Updates + activity, one workflow",
            n_conc,
            50,
            lambda i: entity.execute_update(NoopEntity.with_activity, f"ca-{run}-{i}"),
        )
        conc_local = await concurrent(
            "50 concurrent Updates + local activity, one workflow",
            n_conc,
            50,
            lambda i: entity.execute_update(NoopEntity.with_local_activity, f"cl-{run}-{i}"),
        )

        async def uws_new(i: int) -> object:
            start = WithStartWorkflowOperation(
                NoopEntity.run,
                id=f"noop-{run}-{i}",
                task_queue=f"{task_queue}-probe",
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            return await client.execute_update_with_start_workflow(NoopEntity.noop, "x", start_workflow_operation=start)

        uws = await concurrent("update-with-start, new ids, 50 in flight", n_conc, 50, uws_new)
        ceiling_redeem = Figure(
            "ceiling: no-op Update + bare transaction",
            noop.count,
            noop.seconds + bare.seconds / 2,
            (noop.p50_ms or 0) + (bare.p50_ms or 0),
            None,
        )
        rows += [(bare, None, ""), (noop, None, ""), (upd_act, None, ""), (upd_local, None, "")]
        rows += [(conc_act, None, ""), (conc_local, None, ""), (uws, None, "")]

        # -- ours --------------------------------------------------------------------------------
        wallets = IncentivesClient(client, pool, task_queue=task_queue)
        customer = f"bench-{run}"
        await wallets.grant(
            GrantRequest(lot_id=f"{customer}-big", customer_id=customer, currency="USD", kind="credit", amount=10**12)
        )

        def redeem(prefix: str) -> Callable[[int], Awaitable[object]]:
            return lambda i: wallets.redeem(
                RedeemRequest(customer_id=customer, order_id=f"{prefix}-{i}", currency="USD", total=100)
            )

        ours_seq = await sequential("redeem, sequential, one wallet", n_seq, redeem(f"s-{run}"))
        rows.append((ours_seq, ceiling_redeem, "p50 vs no-op Update + bare tx"))
        rows.append((ours_seq, upd_act, "p50 vs Update + activity"))
        ours_conc = await concurrent("redeem, 50 concurrent, one wallet", n_conc, 50, redeem(f"c-{run}"))
        rows.append((ours_conc, conc_local, "throughput vs 50 Updates + local activity"))

        async def grant_new(i: int) -> object:
            return await wallets.grant(
                GrantRequest(
                    lot_id=f"g-{run}-{i}", customer_id=f"{customer}-{i}", currency="USD", kind="credit", amount=1000
                )
            )

        ours_grant = await concurrent("grant into new wallets, 50 in flight", n_conc, 50, grant_new)
        rows.append((ours_grant, uws, "throughput vs update-with-start, new ids"))
        await entity.signal(NoopEntity.finish)
    return rows


def report(rows: list[tuple[Figure, Figure | None, str]]) -> str:
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
        postgres = EmbeddedPostgres(Path(scratch) / "pg")
        postgres.start()
        try:
            await postgres.create_database()
            pool = await create_pool(postgres.url(), max_size=20)
            await migrate(pool)
            env = await WorkflowEnvironment.start_local(
                data_converter=DATA_CONVERTER,
                dev_server_existing_path=str(TEMPORAL_BIN),
                dev_server_extra_args=temporal_dev_server_args(),
            )
            async with env:
                rows = await measure(env.client, pool, args.quick)
            await pool.close()
        finally:
            postgres.stop()
    print(report(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(f) | {"per_second": f.per_second} for f, _, _ in rows], indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["promotion"]:
        promotion.main(sys.argv[2:])
    else:
        asyncio.run(main())
