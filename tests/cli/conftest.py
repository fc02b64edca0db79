"""Running the `incentives` command in-process (as a shell would, on its own event loop) against the
session's Postgres and Temporal dev server, with a worker on a fresh task queue."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

import client
from incentives.adapters.db import Pool
from tests.helpers import running_wallets

# Where nothing listens: a command that gets past its input checks exits 3 there.
CLOSED_TEMPORAL = "127.0.0.1:1"
CLOSED_DATABASE = "postgresql://nobody@127.0.0.1:1/nothing"
CLOSED_NATS = "nats://127.0.0.1:1"

# Model fields a message must not name: the user typed flags.
INTERNAL_NAMES = re.compile(
    r"\b(customer_id|lot_id|order_id|reversal_id|promotion_id|coupon_lot_id|amount_off|percent_off|min_order|"
    r"max_credit|expires_at|expires_in|effective_at|remind_before|request)\b"
)


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def refused_with(self, message: str) -> bool:
        """Exit 2 on one stderr line containing `message`, nothing on stdout, no traceback."""
        return (
            self.code == 2
            and self.out == ""
            and message in self.err
            and self.err.count("\n") == 1
            and "Traceback" not in self.err
        )


@dataclass
class Cli:
    capsys: pytest.CaptureFixture[str]

    async def __call__(self, *argv: str) -> Result:
        # The CLI runs its own event loop, as from a shell; here in a thread beside the test's loop.
        code = await asyncio.to_thread(client.run, list(argv))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
async def cli(
    dev_server: WorkflowEnvironment,
    worker_pool: Pool,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> AsyncIterator[Cli]:
    async with running_wallets(dev_server.client, worker_pool) as wallets:
        monkeypatch.setenv("TEMPORAL_ADDRESS", dev_server.client.service_client.config.target_host)
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("INCENTIVES_TASK_QUEUE", wallets.task_queue)
        monkeypatch.setenv("COLUMNS", "200")
        yield Cli(capsys)


@pytest.fixture
def offline_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """The command with no server to talk to: input checks answer 2, anything past them 3."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", CLOSED_TEMPORAL)
    monkeypatch.setenv("DATABASE_URL", CLOSED_DATABASE)
    monkeypatch.setenv("NATS_URL", CLOSED_NATS)
    return Cli(capsys)


def grant(customer: str, lot: str, *extra: str) -> list[str]:
    return ["grant", customer, "--lot", lot, "--currency", "USD", *extra]
