"""One stack per test session: a real Postgres (and, for workflow tests, a real Temporal dev
server and a time-skipping test server), each on its own directory and ports, stopped at the end
even when tests fail. Tests isolate themselves by unique ids and task queues, not by servers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from incentives.db import Pool, create_pool
from incentives.migrations import migrate
from incentives.stack import EmbeddedPostgres

TEST_DATABASE = "incentives_test"


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def database_url(postgres: EmbeddedPostgres) -> str:
    await postgres.create_database(TEST_DATABASE)
    url = postgres.url(TEST_DATABASE)
    pool = await create_pool(url, max_size=2)
    try:
        await migrate(pool)
    finally:
        await pool.close()
    return url


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[Pool]:
    pool = await create_pool(database_url, max_size=20)
    yield pool
    await pool.close()


@pytest.fixture
def new_id() -> Callable[[str], str]:
    """Unique ids per test, so tests share one database without seeing each other's rows."""
    run = uuid.uuid4().hex[:8]
    return lambda prefix: f"{prefix}-{run}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
