"""The worker's log: a business refusal is one INFO line with its type and ids and no traceback, and
every line the worker writes is JSON when stdout is not a terminal, the Temporal core's included;
a line logged while a span is current carries its trace and span ids."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.adapters.logs import configure_logging, get_logger
from incentives.domain.errors import UnknownLot
from tests.helpers import running_wallets
from tests.helpers.builders import NewId, order

INCENTIVES = Path(sys.executable).parent / "incentives"


@contextlib.contextmanager
def logging_to_stdout(level: str) -> Iterator[None]:
    """The worker's configuration for the length of a test, then the session's back."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging(level, json=True)
    try:
        yield
    finally:
        root.handlers, _ = saved
        root.setLevel(saved[1])


async def test_a_business_refusal_is_one_info_line_with_its_type_and_ids(
    dev_server: WorkflowEnvironment, worker_pool: Pool, new_id: NewId, capsys: pytest.CaptureFixture[str]
) -> None:
    customer, coupon = new_id("c"), new_id("nope")
    with logging_to_stdout("INFO"):
        async with running_wallets(dev_server.client, worker_pool) as wallets:
            with pytest.raises(UnknownLot):
                await wallets.redeem(order(customer, new_id("o"), 500, coupon_lot_id=coupon))
        out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    [refusal] = [line for line in lines if line.get("error_type") == "UnknownLot"]
    assert {key: refusal[key] for key in ("event", "level", "activity", "workflow_id")} == {
        "event": "business refusal",
        "level": "info",
        "activity": "load_and_redeem",  # a new wallet's first operation loads it in the same call
        "workflow_id": f"wallet:{customer}",
    }
    assert coupon in refusal["reason"]
    assert refusal["run_id"]
    assert "Traceback" not in out
    assert not [line for line in lines if "exception" in line]


class Proxy:
    """A TCP proxy to a server the test cannot stop: closing it makes the server go away."""

    def __init__(self, target: str) -> None:
        self._host, port = target.rsplit(":", 1)
        self._port = int(port)
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(self._host, self._port)
        self._writers += [writer, upstream_writer]
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True)

    def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def worker_process(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        str(INCENTIVES), "worker", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        yield process
    finally:
        process.kill()  # our own child; a graceful stop would wait on a server that is gone
        await process.wait()


async def _lines_until(process: asyncio.subprocess.Process, found: str, seen: list[dict[str, Any]]) -> None:
    assert process.stdout is not None
    while line := await process.stdout.readline():
        seen.append(json.loads(line))  # every line is JSON, or this fails
        if found in line.decode():
            return
    raise AssertionError(f"the worker ended before writing {found!r}")


async def test_every_line_the_worker_writes_is_json_the_temporal_core_included(
    dev_server: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    proxy = Proxy(dev_server.client.service_client.config.target_host)
    env = os.environ | {
        "TEMPORAL_ADDRESS": await proxy.start(),
        "DATABASE_URL": database_url,
        "INCENTIVES_TASK_QUEUE": f"logs-{uuid.uuid4().hex[:8]}",
        "INCENTIVES_HOME": str(tmp_path),
    }
    seen: list[dict[str, Any]] = []
    async with worker_process(env) as worker:
        await asyncio.wait_for(_lines_until(worker, "worker started", seen), timeout=60)
        proxy.close()  # Temporal goes away: the core retries its polls, and warns
        await asyncio.wait_for(_lines_until(worker, "sdk_core", seen), timeout=60)
    assert worker.stderr is not None
    assert await worker.stderr.read() == b""
    assert seen[-1]["level"] == "warning"
    assert seen[-1]["logger"].startswith("temporalio.core")


def test_a_line_logged_in_a_span_carries_its_trace_and_span_ids(capsys: pytest.CaptureFixture[str]) -> None:
    """As OpenTelemetry writes them: 32 and 16 lowercase hex digits, leading zeros kept."""
    span = NonRecordingSpan(SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7, is_remote=False))
    with logging_to_stdout("INFO"):
        with trace.use_span(span):
            get_logger("tests").info("structlog line")
            logging.getLogger("tests.stdlib").info("standard library line")
        get_logger("tests").info("outside any span")
        out = capsys.readouterr().out
    lines = {line["event"]: line for line in map(json.loads, out.splitlines())}
    for inside in ("structlog line", "standard library line"):
        ids = (lines[inside]["trace_id"], lines[inside]["span_id"])
        assert ids == ("0af7651916cd43dd8448eb211c80319c", "00f067aa0ba902b7"), lines[inside]
    assert "trace_id" not in lines["outside any span"]
    assert "span_id" not in lines["outside any span"]
