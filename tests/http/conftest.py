"""The API as production runs it, for the session: the installed `incentives api` in its own
process, against the session's Postgres and Temporal dev server, with a worker (in this process,
under the worker's database role) on a fresh task queue; keys for every scope, made as the CLI
makes them. Tests isolate themselves by their own ids, as everywhere in the suite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool
from incentives.app import api_keys
from incentives.app.worker import build_worker
from tests.http.api_process import ApiProcess, api_process


@dataclass(frozen=True)
class Keys:
    """One key per scope, one with all of them, and one revoked."""

    checkout: str
    grant: str
    promotions: str
    read: str
    every: str
    revoked: str

    def of(self, scope: str) -> str:
        value: str = getattr(self, scope)
        return value


def environment(dev_server: WorkflowEnvironment, database_url: str, task_queue: str, home: Path) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
        "DATABASE_URL": database_url,
        "INCENTIVES_TASK_QUEUE": task_queue,
        "INCENTIVES_HOME": str(home),
    }


@pytest.fixture(scope="session")
async def api(
    dev_server: WorkflowEnvironment, worker_pool: Pool, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiProcess]:
    """The session's API server and its worker."""
    task_queue = f"http-{uuid.uuid4().hex[:12]}"
    home = tmp_path_factory.mktemp("api")
    async with build_worker(dev_server.client, worker_pool, task_queue):
        env = environment(dev_server, database_url, task_queue, home)
        async with api_process(env, home / "api.log", port_from_environment=True) as server:
            yield server
            await server.stop()


@pytest.fixture(scope="session")
async def keys(pool: Pool) -> Keys:
    run = uuid.uuid4().hex[:8]

    async def key(name: str, *scopes: str) -> str:
        return (await api_keys.create_key(pool, f"{name}-{run}", scopes)).key

    made = {scope: await key(scope, scope) for scope in api_keys.SCOPES}
    revoked = await key("revoked", *api_keys.SCOPES)
    await api_keys.revoke_key(pool, f"revoked-{run}")
    return Keys(**made, every=await key("every", *api_keys.SCOPES), revoked=revoked)


@pytest.fixture(scope="session")
async def http(api: ApiProcess) -> AsyncIterator[httpx.AsyncClient]:
    """A keep-alive client of the session's API, with no key."""
    async with api.client(limits=httpx.Limits(max_connections=500, max_keepalive_connections=500)) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def problem(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    """The response's problem+json body, once its status, content type and class are the ones expected."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body: dict[str, Any] = response.json()
    assert body["error_type"] == error_type, body
    assert (body["status"], body["type"].startswith("/problems/")) == (status, True), body
    assert "Traceback" not in response.text
    return body
