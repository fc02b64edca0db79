"""Where Temporal and Postgres are, and connecting to them.

Temporal: the standard Temporal client configuration (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`,
`TEMPORAL_API_KEY`, `TEMPORAL_TLS_*`, `TEMPORAL_PROFILE`, `TEMPORAL_CONFIG_FILE`). When it names no
address, the embedded dev server from `incentives dev up` is used.
Postgres: `DATABASE_URL`; when unset, the embedded server from `incentives dev up`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile

from incentives.db import Pool, create_pool, redact
from incentives.errors import Unavailable
from incentives.migrations import migrate
from incentives.settings import Settings
from incentives.stack import EmbeddedPostgres, EmbeddedTemporal

HINT = "run `incentives dev up` (or `./dev up`), or check TEMPORAL_ADDRESS / DATABASE_URL"


@dataclass(frozen=True)
class Endpoints:
    temporal: dict[str, Any]
    database_url: str
    embedded_temporal: bool
    embedded_postgres: bool

    @property
    def temporal_address(self) -> str:
        return str(self.temporal["target_host"])

    @property
    def namespace(self) -> str:
        return str(self.temporal.get("namespace", "default"))


def embedded_postgres(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.home / "pg")


def embedded_temporal(settings: Settings) -> EmbeddedTemporal:
    return EmbeddedTemporal(settings.home, settings.temporal_port, settings.temporal_ui_port)


def endpoints(settings: Settings) -> Endpoints:
    config: dict[str, Any] = dict(ClientConfigProfile.load().to_client_connect_config())
    temporal_is_embedded = "target_host" not in config
    if temporal_is_embedded:
        config["target_host"] = embedded_temporal(settings).address
    database_url = settings.database_url or embedded_postgres(settings).url()
    return Endpoints(config, database_url, temporal_is_embedded, settings.database_url is None)


async def connect_temporal(settings: Settings) -> Client:
    where = endpoints(settings)
    try:
        return await Client.connect(**where.temporal, data_converter=pydantic_data_converter)
    except RuntimeError as error:
        raise Unavailable(f"cannot reach Temporal at {where.temporal_address}: {error}; {HINT}") from error


async def connect_database(settings: Settings, *, max_size: int | None = None) -> Pool:
    """A pool on the project's database, migrated to the current schema."""
    where = endpoints(settings)
    try:
        pool = await create_pool(where.database_url, max_size=max_size or settings.db_pool_max)
    except Unavailable as error:
        raise Unavailable(f"cannot reach Postgres at {redact(where.database_url)}; {HINT}") from error
    try:
        await migrate(pool)
    except BaseException:
        await pool.close()
        raise
    return pool
