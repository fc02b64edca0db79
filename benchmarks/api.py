"""`./dev bench api`: a redeem over HTTP against the same redeem through the Python client, measured
in the same run on the same servers, and reported as ratios (absolute figures move between runs
on a shared machine; the ratios are the numbers to quote).

Starts its own PostgreSQL and Temporal dev server (the embedded stack's settings), a worker and the
API as production runs them (`incentives worker`, `incentives api`: their own processes, logging
at INFO), and measures from this process:
- sequential redeems, one wallet each way, alternating one HTTP call (a keep-alive httpx client)
  and one Python client call per round: p50 and p99, and the ratio of the p50s (target <= 1.15);
- 64 concurrent redeems on 64 wallets, in alternating chunks of each: throughput, and its ratio
  (target >= 0.9).

Options: `--quick` (fewer calls, for a smoke run), `--json PATH` (write the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httptools
import httpx
from temporalio.testing import WorkflowEnvironment

from benchmarks.measure import Call, Figure, alternating, interleaved
from incentives.adapters.db import create_pool
from incentives.adapters.logs import configure_logging
from incentives.adapters.migrations import migrate
from incentives.adapters.settings import WORKER_ROLE
from incentives.app.api_keys import SCOPES, create_key
from incentives.app.client import IncentivesClient
from incentives.devstack.servers import EmbeddedPostgres, start_dev_server
from incentives.domain.errors import REJECTIONS, OutcomeUnknown
from incentives.domain.models import GrantRequest, RedeemRequest

INCENTIVES = Path(sys.executable).parent / "incentives"
WALLETS = 64
SEQUENTIAL_TARGET = 1.15
THROUGHPUT_TARGET = 0.9
STARTUP = 60.0


class _Response:
    """What `httptools` parses of one response: its status and body (headers are not needed)."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.complete = False

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


class KeepAlive:
    """A keep-alive HTTP/1.1 client as a checkout service would hold one: `size` connections, each
    carrying one request at a time, responses parsed by `httptools` (the parser the server uses).
    It costs the caller a fraction of what httpx does, so that the figures are the server's cost."""

    def __init__(self, host: str, port: int, headers: Mapping[str, str], size: int) -> None:
        self._host, self._port = host, port
        self._headers = "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode()
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(None)
        self._open: list[asyncio.StreamWriter] = []

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        connection = await self._idle.get()
        try:
            if connection is None:
                connection = await asyncio.open_connection(self._host, self._port)
                self._open.append(connection[1])
            reader, writer = connection
            head = f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nContent-Length: {len(body)}\r\n".encode()
            writer.write(head + self._headers + b"\r\n" + body)
            response = _Response()
            parser = httptools.HttpResponseParser(response)
            while not response.complete:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                parser.feed_data(data)
            return parser.get_status_code(), bytes(response.body)
        except BaseException:
            connection = None  # a connection in an unknown state is not reused
            raise
        finally:
            self._idle.put_nowait(connection)

    async def close(self) -> None:
        for writer in self._open:
            writer.close()


@dataclass
class Paths:
    """The two ways to redeem, on their own wallets, and the figures they made."""

    python: IncentivesClient
    http: KeepAlive
    run: str

    def python_redeem(self, prefix: str, wallets: int, tag: str = "m") -> Call:
        return lambda i: self.python.redeem(self._order(prefix, i, wallets, tag))

    def http_redeem(self, prefix: str, wallets: int, tag: str = "m") -> Call:
        async def call(i: int) -> object:
            order = self._order(prefix, i, wallets, tag)
            status, body = await self.http.post(
                f"/v1/customers/{order.customer_id}/redemptions", order.model_dump_json().encode()
            )
            if status == 504:
                raise OutcomeUnknown(body.decode())
            if status in (409, 422):
                raise REJECTIONS[json.loads(body)["error_type"]](body.decode())
            if status != 201:
                raise RuntimeError(f"{status}: {body.decode()}")
            return body

        return call

    def _order(self, prefix: str, i: int, wallets: int, tag: str) -> RedeemRequest:
        customer = f"{self.run}-{prefix}-{i % wallets}"
        return RedeemRequest(customer_id=customer, order_id=f"{customer}-{tag}-{i}", currency="USD", total=100)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def _process(argv: Sequence[str], environment: Mapping[str, str], log: Path) -> AsyncIterator[None]:
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            *argv, env={**os.environ, **environment}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield
    finally:
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 30)
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _until(what: str, log: Path, probe: Callable[[], Awaitable[bool]]) -> None:
    """Polls `probe` until it returns true, within `STARTUP` seconds."""
    deadline = time.monotonic() + STARTUP
    while not await probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start within {STARTUP:g} s (its log: {log})")
        await asyncio.sleep(0.1)


async def _ready(base_url: str, log: Path) -> None:
    async def answers() -> bool:
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
                return (await client.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await _until("the API", log, answers)


def _logged(log: Path, event: str) -> bool:
    return log.exists() and f'"{event}"' in log.read_text()


async def _worker_started(log: Path) -> None:
    async def started() -> bool:
        return await asyncio.to_thread(_logged, log, "worker started")

    await _until("the worker", log, started)


@asynccontextmanager
async def stack(env: WorkflowEnvironment, postgres: EmbeddedPostgres, scratch: Path) -> AsyncIterator[Paths]:
    """A worker and the API in their own processes; a Python client and a keep-alive HTTP client."""
    task_queue, port = f"bench-api-{uuid.uuid4().hex[:8]}", _free_port()
    environment = {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "DATABASE_URL": postgres.url(),
        "INCENTIVES_WORKER_DATABASE_URL": postgres.url(user=WORKER_ROLE),
        "INCENTIVES_TASK_QUEUE": task_queue,
        "INCENTIVES_HOME": str(scratch),
        "INCENTIVES_LOG_LEVEL": "INFO",
    }
    pool = await create_pool(postgres.url(), max_size=4)
    key = (await create_key(pool, f"bench-{task_queue}", SCOPES)).key
    worker_log, api_log = scratch / "worker.log", scratch / "api.log"
    async with (
        _process([str(INCENTIVES), "worker"], environment, worker_log),
        _process([str(INCENTIVES), "api", "--port", str(port)], environment, api_log),
    ):
        await asyncio.gather(_worker_started(worker_log), _ready(f"http://127.0.0.1:{port}", api_log))
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        http = KeepAlive("127.0.0.1", port, headers, WALLETS)
        try:
            yield Paths(IncentivesClient(env.client, pool, task_queue=task_queue), http, uuid.uuid4().hex[:8])
        finally:
            await http.close()
    await pool.close()


async def _credit(paths: Paths, prefixes: Sequence[str], wallets: int) -> None:
    """A credit that outlasts the run in each wallet, granted through the Python client."""
    grants = [
        GrantRequest(
            lot_id=f"{paths.run}-{prefix}-{i}-credit",
            customer_id=f"{paths.run}-{prefix}-{i}",
            currency="USD",
            kind="credit",
            amount=10**12,
        )
        for prefix in prefixes
        for i in range(wallets)
    ]
    await asyncio.gather(*(paths.python.grant(grant) for grant in grants))


async def measure(paths: Paths, quick: bool) -> tuple[Figure, Figure, Figure, Figure]:
    await _credit(paths, ["seq-py", "seq-http"], 1)
    await _credit(paths, ["conc-py", "conc-http"], WALLETS)
    rounds, count = (40, 256) if quick else (300, 1280)
    # Warm-up: connections opened, wallets loaded in the worker's cache, each way.
    await interleaved(
        5, {"http": paths.http_redeem("seq-http", 1, "warm"), "python": paths.python_redeem("seq-py", 1, "warm")}
    )
    sequential = await interleaved(
        rounds,
        {
            "redeem over HTTP, sequential": paths.http_redeem("seq-http", 1),
            "redeem, Python client, sequential": paths.python_redeem("seq-py", 1),
        },
    )
    http_conc, python_conc = await alternating(
        count,
        WALLETS * 2,
        WALLETS,
        (f"redeem over HTTP, {WALLETS} concurrent on {WALLETS} wallets", paths.http_redeem("conc-http", WALLETS)),
        (f"redeem, Python client, {WALLETS} concurrent", paths.python_redeem("conc-py", WALLETS)),
    )
    http_seq, python_seq = sequential.values()
    return http_seq, python_seq, http_conc, python_conc


def report(http_seq: Figure, python_seq: Figure, http_conc: Figure, python_conc: Figure) -> str:
    lines = ["| what | n | p50 ms | p99 ms | per s | failed |", "|---|---|---|---|---|---|"]
    for figure in (http_seq, python_seq, http_conc, python_conc):
        lines.append(
            f"| {figure.name} | {figure.count} | {figure.p50_ms or 0:.1f} | {figure.p99_ms or 0:.1f} "
            f"| {figure.per_second:.0f} | {figure.failures} |"
        )
    latency = (http_seq.p50_ms or 0) / (python_seq.p50_ms or 1)
    throughput = http_conc.per_second / (python_conc.per_second or 1)
    lines.append("")
    lines.append(
        f"sequential p50, HTTP / Python client: {latency:.2f}x (target <= {SEQUENTIAL_TARGET}: "
        f"{'met' if latency <= SEQUENTIAL_TARGET else 'MISSED'})"
    )
    lines.append(
        f"{WALLETS} concurrent throughput, HTTP / Python client: {throughput:.2f}x (target >= {THROUGHPUT_TARGET}: "
        f"{'met' if throughput >= THROUGHPUT_TARGET else 'MISSED'})"
    )
    return "\n".join(lines)


async def run(quick: bool) -> tuple[Figure, Figure, Figure, Figure]:
    with tempfile.TemporaryDirectory() as scratch:
        postgres = EmbeddedPostgres(Path(scratch) / "pg")
        postgres.start()
        try:
            await postgres.create_database()
            owner = await create_pool(postgres.url(), max_size=2)
            await migrate(owner)
            await owner.close()
            env = await start_dev_server()
            async with env, stack(env, postgres, Path(scratch)) as paths:
                return await measure(paths, quick)
        finally:
            postgres.stop()


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="./dev bench api", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    figures = asyncio.run(run(args.quick))
    print(report(*figures))
    if args.json:
        args.json.write_text(json.dumps([figure.as_json() for figure in figures], indent=2))
    if any(figure.failures for figure in figures):
        raise SystemExit(1)
