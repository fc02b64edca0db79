"""Where Temporal and Postgres are: the configured servers, or the embedded ones `dev up` runs.

Temporal: the standard Temporal client configuration (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`,
`TEMPORAL_API_KEY`, `TEMPORAL_TLS_*`, `TEMPORAL_PROFILE`, `TEMPORAL_CONFIG_FILE`), under the
settings' address and namespace (the command's `--address` and `--namespace`); when none names an
address, the embedded dev server on `INCENTIVES_TEMPORAL_PORT`.
Postgres: `DATABASE_URL` (the owner: migrations run as it); when unset, the embedded server under
`INCENTIVES_HOME`. The worker's activities use `INCENTIVES_WORKER_DATABASE_URL`, a least-privilege
login; when unset, the embedded server's `incentives_worker`, or `DATABASE_URL` on another server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.envconfig import ClientConfigProfile

from incentives.adapters.settings import EMBEDDED_DATABASE, WORKER_ROLE, Settings
from incentives.domain.errors import InvalidInput

HINT = "run `incentives dev up` (or `./dev up`), or check TEMPORAL_ADDRESS / DATABASE_URL"


@dataclass(frozen=True)
class Endpoints:
    temporal: dict[str, Any]
    database_url: str
    worker_database_url: str
    embedded_temporal: bool
    embedded_postgres: bool

    @property
    def temporal_address(self) -> str:
        return str(self.temporal["target_host"])

    @property
    def namespace(self) -> str:
        return str(self.temporal.get("namespace", "default"))


def embedded_database_url(data_dir: str, database: str = EMBEDDED_DATABASE, *, user: str = "postgres") -> str:
    """The embedded server listens only on a unix socket in its data directory (and trusts it)."""
    return f"postgresql://{user}@/{database}?host={data_dir}"


def endpoints(settings: Settings) -> Endpoints:
    try:
        config: dict[str, Any] = dict(ClientConfigProfile.load().to_client_connect_config())
    except RuntimeError as error:  # the SDK's ConfigError: a malformed file or a missing profile
        raise InvalidInput("TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE", str(error).splitlines()[0]) from None
    if settings.temporal_address is not None:
        config["target_host"] = settings.temporal_address
    if settings.temporal_namespace is not None:
        config["namespace"] = settings.temporal_namespace
    temporal_is_embedded = "target_host" not in config
    if temporal_is_embedded:
        config["target_host"] = settings.embedded_temporal_address
    if settings.database_url is None:
        database_url = embedded_database_url(str(settings.postgres_dir))
        worker_url = settings.worker_database_url or embedded_database_url(str(settings.postgres_dir), user=WORKER_ROLE)
    else:
        database_url = settings.database_url
        worker_url = settings.worker_database_url or database_url
    return Endpoints(config, database_url, worker_url, temporal_is_embedded, settings.database_url is None)
