"""Process settings, read from the environment once at start and passed explicitly from there.

Temporal's connection comes from the standard Temporal client configuration (`TEMPORAL_ADDRESS`,
`TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, TLS variables, `TEMPORAL_PROFILE` and the config file),
read by `incentives.adapters.endpoints`; the address and namespace are also here, so that the
command's `--address` and `--namespace` override them and a malformed one is refused by name.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, AliasChoices, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from incentives.adapters.urls import database_url_problem
from incentives.domain.errors import InvalidInput
from incentives.domain.inputs import shown
from incentives.domain.messages import DEFAULT_REVERSAL_WINDOW
from incentives.domain.timeparse import parse_duration

# Settings whose value may hold a password: an error about one never quotes it.
SECRET_FIELDS = frozenset({"database_url", "worker_database_url", "nats_url", "nats_password"})
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HOME = PROJECT_ROOT / ".incentives"
EMBEDDED_HOST = "127.0.0.1"
EMBEDDED_DATABASE = "incentives"
# Created and granted by migrations/0004_worker_role.sql: what the worker's activities may write.
WORKER_ROLE = "incentives_worker"
DEFAULT_MAX_CACHED_WORKFLOWS = 5000

_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(?P<port>[0-9]{1,5})")
# A server's URL as the NATS clients take it; its user info, if any, is never echoed.
_NATS_SERVER = re.compile(r"(nats|tls|ws|wss)://([^@/\s]+@)?[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?/?")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


def _address(value: str) -> str:
    match = _ADDRESS.fullmatch(value)
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(f"{shown(value)} is not HOST:PORT, such as 127.0.0.1:7233")
    return value


def _namespace(value: str) -> str:
    if _NAMESPACE.fullmatch(value) is None:
        raise ValueError(f"{shown(value)} is not a namespace name (letters, digits, . _ -)")
    return value


def _log_level(value: str) -> str:
    if value.upper() not in LOG_LEVELS:
        raise ValueError(f"{shown(value)} is not a log level: use one of {', '.join(LOG_LEVELS)}")
    return value.upper()


def _duration(value: object) -> object:
    """`15s`, `2m`, or ISO 8601 (PT15S), as every duration the CLI takes; a timedelta as it is."""
    if not isinstance(value, str):
        return value
    try:
        return parse_duration(value, "duration")
    except InvalidInput as error:
        raise ValueError(error.reason) from None


def _database_url(value: str) -> str:
    """A Postgres URL asyncpg can take apart; refused otherwise, in words that quote none of it
    (it may hold a password)."""
    if not value:
        raise ValueError("is empty: unset it to use the embedded Postgres, or give a postgresql:// URL")
    problem = database_url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _nats_url(value: str) -> str:
    for server in value.split(","):
        if _NATS_SERVER.fullmatch(server.strip()) is None:
            raise ValueError("is not a list of nats://HOST:PORT (or tls://, ws://, wss://) URLs")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
Port = Annotated[int, Field(ge=1, le=65535)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INCENTIVES_", frozen=True, extra="ignore")

    database_url: Annotated[str, AfterValidator(_database_url)] | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "INCENTIVES_DATABASE_URL"),
        description="Postgres to use; unset means the embedded one under `home`.",
    )
    worker_database_url: Annotated[str, AfterValidator(_database_url)] | None = Field(
        default=None,
        description=(
            f"The worker's Postgres login, as {WORKER_ROLE} or a role granted it; unset means "
            f"{WORKER_ROLE} on the embedded Postgres, or DATABASE_URL's (owner) role on another."
        ),
    )
    home: Path = Field(default=DEFAULT_HOME, description="State of the embedded stack, and the command's log.")
    task_queue: str = "incentives"
    reversal_window: Annotated[timedelta, BeforeValidator(_duration)] = Field(
        default=DEFAULT_REVERSAL_WINDOW,
        description="How long a wallet stays open after a redemption, waiting for reversals.",
    )
    db_pool_max: int = Field(default=10, ge=1)
    max_cached_workflows: int = Field(
        default=DEFAULT_MAX_CACHED_WORKFLOWS,
        ge=0,
        description="Size it to the number of hot wallets: an evicted wallet replays.",
    )
    log_level: Annotated[str, AfterValidator(_log_level)] = "INFO"
    temporal_port: Port = Field(default=7233, description="Port of the embedded Temporal dev server.")
    temporal_ui_port: Port = Field(default=8233, description="Port of the embedded server's Web UI.")
    api_port: Port = Field(default=8080, description="Port `incentives api` listens on (its `--port` wins).")
    metrics_port: int = Field(
        default=9464, ge=0, le=65535, description="Port of the worker's /metrics (its `--metrics-port` wins); 0: none."
    )
    metrics_refresh: Annotated[timedelta, BeforeValidator(_duration)] = Field(
        default=timedelta(seconds=15),
        gt=timedelta(0),
        description="How often the worker computing the books' gauges reads them from Postgres.",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address of the worker's /metrics: 0.0.0.0 for a scraper on another host."
    )
    nats_url: Annotated[str, AfterValidator(_nats_url)] | None = Field(
        default=None,
        validation_alias=AliasChoices("NATS_URL", "nats_url"),
        description="NATS servers (comma-separated nats:// or tls:// URLs); unset means the embedded one.",
    )
    nats_creds: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("NATS_CREDS", "nats_creds"),
        description="A NATS credentials file (JWT and NKey seed), as the NATS CLI reads it.",
    )
    nats_user: str | None = Field(default=None, validation_alias=AliasChoices("NATS_USER", "nats_user"))
    nats_password: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("NATS_PASSWORD", "nats_password")
    )
    nats_port: Port = Field(default=4222, description="Port of the embedded NATS server.")
    event_source: str = Field(
        default="/incentives", description="The CloudEvents `source` of every event this deployment publishes."
    )
    temporal_address: Annotated[str, AfterValidator(_address)] | None = Field(
        default=None,
        validation_alias=AliasChoices("TEMPORAL_ADDRESS", "temporal_address"),
        description="Temporal's HOST:PORT: `--address`, else TEMPORAL_ADDRESS, else a profile, else the embedded server.",
    )
    temporal_namespace: Annotated[str, AfterValidator(_namespace)] | None = Field(
        default=None,
        validation_alias=AliasChoices("TEMPORAL_NAMESPACE", "temporal_namespace"),
        description="Temporal namespace: `--namespace`, else TEMPORAL_NAMESPACE, else a profile, else default.",
    )

    @property
    def postgres_dir(self) -> Path:
        return self.home / "pg"

    @property
    def embedded_temporal_address(self) -> str:
        return f"{EMBEDDED_HOST}:{self.temporal_port}"

    @property
    def embedded_ui_url(self) -> str:
        return f"http://{EMBEDDED_HOST}:{self.temporal_ui_port}"

    @property
    def nats_dir(self) -> Path:
        return self.home / "nats"


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment, with `overrides` (command-line flags) on top; a malformed
    one is `InvalidInput` naming the environment variable, or the override's own name."""
    try:
        return Settings(**{name: value for name, value in overrides.items() if value is not None})
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        field = name if name in overrides else _variable(name)
        reason = first["msg"].removeprefix("Value error, ")
        # Our validators word their own refusals; pydantic's do not quote the value, so it is added,
        # but never for a URL, which may hold a password.
        if "input" in first and first["type"] != "value_error" and name.lower() not in SECRET_FIELDS:
            reason = f"{shown(str(first['input']))}: {reason}"
        raise InvalidInput(field, reason) from None


def _variable(field: str) -> str:
    """The environment variable a settings field is read from."""
    info = Settings.model_fields.get(field.lower())
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        return str(info.validation_alias.choices[0])
    return f"INCENTIVES_{field.upper()}"
