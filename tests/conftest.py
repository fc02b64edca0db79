"""One stack per test session: a real Postgres (and, for workflow tests, a real Temporal dev
server and a time-skipping test server), each on its own directory and ports, stopped at the end
even when tests fail. Tests isolate themselves by unique ids and task queues, not by servers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.db import Pool, create_pool
from incentives.adapters.logs import configure_logging
from incentives.adapters.migrations import migrate
from incentives.adapters.settings import WORKER_ROLE
from incentives.adapters.temporal import DATA_CONVERTER, search_attribute_flags
from incentives.devstack.servers import (
    TEMPORAL_BIN,
    EmbeddedNats,
    EmbeddedPostgres,
    free_port,
    start_dev_server,
)
from incentives.domain.search_attributes import SEARCH_ATTRIBUTES

# Fixtures shared by tests of several layers, defined in tests/helpers.
pytest_plugins = ["tests.helpers.books"]

TEMPORAL_TEST_SERVER_BIN = TEMPORAL_BIN.parent / "temporal-test-server"
SHORT_HISTORY = 40

TEST_DATABASE = "incentives_test"


@pytest.fixture(scope="session", autouse=True)
def _no_default_metrics_port() -> Iterator[None]:
    """The workers the tests start (`dev up`'s, the CLI's) serve no /metrics unless a test gives
    them a port: two at once on the default port, or one beside a developer's own stack, would
    stop each other starting."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INCENTIVES_METRICS_PORT", "0")
        yield


@pytest.fixture(scope="session", autouse=True)
def _quiet_logs() -> None:
    """Warnings and errors only: the CLI tests read stdout and stderr of the same process."""
    configure_logging("WARNING", json=True)


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
    """The owner's pool: what tests read, stage and plant with."""
    pool = await create_pool(database_url, max_size=20)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def worker_database_url(postgres: EmbeddedPostgres, database_url: str) -> str:
    """The worker's login, its least-privilege role (the relay's too)."""
    return postgres.url(TEST_DATABASE, user=WORKER_ROLE)


@pytest.fixture(scope="session")
async def worker_pool(worker_database_url: str) -> AsyncIterator[Pool]:
    """The worker's pool, under its least-privilege role, as the production worker runs."""
    pool = await create_pool(worker_database_url, max_size=20)
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


async def _register_search_attributes(env: WorkflowEnvironment) -> None:
    """The time-skipping server knows no custom search attributes until told (the dev server is
    started with them)."""
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes=dict.fromkeys(SEARCH_ATTRIBUTES, IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD),
        )
    )


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A real NATS server with JetStream on a file store, on a free port."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server, with the settings the embedded stack uses."""
    env = await start_dev_server()
    async with env:
        yield env


@pytest.fixture(scope="session")
async def short_history_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new after 40 history events, so tests reach it quickly."""
    env = await start_dev_server("--dynamic-config-value", f"limit.historyCount.suggestContinueAsNew={SHORT_HISTORY}")
    async with env:
        yield env


@pytest.fixture(scope="session")
async def default_limits_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server as a real cluster comes by default: 10 Updates in flight per workflow."""
    env = await WorkflowEnvironment.start_local(
        data_converter=DATA_CONVERTER,
        dev_server_existing_path=str(TEMPORAL_BIN),
        dev_server_extra_args=search_attribute_flags(),
    )
    async with env:
        yield env


@pytest.fixture(scope="session")
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER, test_server_existing_path=str(TEMPORAL_TEST_SERVER_BIN)
    )
    async with env:
        await _register_search_attributes(env)
        yield env
