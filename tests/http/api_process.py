"""`incentives api` as its own process in tests, started as production starts it (the installed
command), on a free port, logging JSON lines to a file; stopped with SIGTERM, killed if it hangs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import eventually

INCENTIVES = Path(sys.executable).parent / "incentives"
STOP_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class ApiProcess:
    process: asyncio.subprocess.Process
    base_url: str
    log: Path
    started_in: float  # seconds from the spawn to the first answer of /healthz

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=120, **kwargs)

    async def stop(self) -> int:
        """SIGTERM, then the exit code (killed, and an AssertionError, past `STOP_TIMEOUT`)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"the API did not exit within {STOP_TIMEOUT} s of SIGTERM") from None


async def _answering(base_url: str, process: asyncio.subprocess.Process, log: Path, path: str) -> None:
    async def answers() -> None:
        assert process.returncode is None, log.read_text()
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
                response = await client.get(path)
        except httpx.TransportError as error:
            raise AssertionError(str(error)) from None
        assert response.status_code == 200, response.text

    await eventually(answers, timeout=30, interval=0.02)


@asynccontextmanager
async def api_process(
    environment: Mapping[str, str], log: Path, *, ready: bool = True, port_from_environment: bool = False
) -> AsyncIterator[ApiProcess]:
    """The API on a free port (given as `--port`, or as INCENTIVES_API_PORT); once /healthz answers
    (and, with `ready`, /readyz says both servers do)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    flags = [] if port_from_environment else ["--port", str(port)]
    spawned = time.monotonic()
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            str(INCENTIVES),
            "api",
            *flags,
            # With --port, the variable names a port nobody may take here: the flag must win.
            env={
                **os.environ,
                "INCENTIVES_LOG_LEVEL": "INFO",
                "INCENTIVES_API_PORT": str(port) if port_from_environment else "1",
                **environment,
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await _answering(base_url, process, log, "/healthz")
        api = ApiProcess(process, base_url, log, time.monotonic() - spawned)
        if ready:
            await _answering(base_url, process, log, "/readyz")
        yield api
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
