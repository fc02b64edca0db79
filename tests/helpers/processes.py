"""`incentives worker` as its own process in tests, as production runs it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.helpers import eventually


@asynccontextmanager
async def worker_process(
    env: WorkflowEnvironment,
    database_url: str,
    task_queue: str,
    log: Path,
    *,
    nats_url: str | None = None,
    metrics_port: int | None = None,
    environment: dict[str, str] | None = None,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`incentives worker` as its own process, as in production (relaying events to `nats_url`, if
    given; serving /metrics on `metrics_port`, if given; with `environment` added to this
    process's); killed at the end if still alive."""
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "incentives"),
            "worker",
            env={
                **os.environ,
                "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                "DATABASE_URL": database_url,
                "INCENTIVES_TASK_QUEUE": task_queue,
                **({"NATS_URL": nats_url} if nats_url else {}),
                # The books' gauges read every second: tests wait on them.
                **(
                    {"INCENTIVES_METRICS_PORT": str(metrics_port), "INCENTIVES_METRICS_REFRESH": "1s"}
                    if metrics_port
                    else {}
                ),
                **(environment or {}),
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        started = {"event": "worker started", "task_queue": task_queue}

        async def logged_start() -> None:
            assert process.returncode is None, log.read_text()
            lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
            assert any(started.items() <= line.items() for line in lines)

        await eventually(logged_start, timeout=30)
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
