"""Process settings, read from the environment once at start and passed explicitly from there.

Temporal's connection is not here: it comes from the standard Temporal client configuration
(`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, TLS variables, `TEMPORAL_PROFILE`
and the config file), read by `incentives.adapters.temporal`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from incentives.domain.messages import DEFAULT_REVERSAL_WINDOW

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_HOST = "127.0.0.1"
EMBEDDED_DATABASE = "incentives"
DEFAULT_MAX_CACHED_WORKFLOWS = 5000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INCENTIVES_", frozen=True, extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "INCENTIVES_DATABASE_URL"),
        description="Postgres to use; unset means the embedded one under `home`.",
    )
    home: Path = Field(default=PROJECT_ROOT / ".incentives", description="State of the embedded stack.")
    task_queue: str = "incentives"
    reversal_window: timedelta = Field(
        default=DEFAULT_REVERSAL_WINDOW,
        description="How long a wallet stays open after a redemption, waiting for reversals.",
    )
    db_pool_max: int = Field(default=10, ge=1)
    max_cached_workflows: int = Field(
        default=DEFAULT_MAX_CACHED_WORKFLOWS,
        ge=0,
        description="Size it to the number of hot wallets: an evicted wallet replays.",
    )
    log_level: str = "INFO"
    temporal_port: int = Field(default=7233, description="Port of the embedded Temporal dev server.")
    temporal_ui_port: int = Field(default=8233, description="Port of the embedded server's Web UI.")

    @property
    def postgres_dir(self) -> Path:
        return self.home / "pg"

    @property
    def embedded_temporal_address(self) -> str:
        return f"{EMBEDDED_HOST}:{self.temporal_port}"

    @property
    def embedded_ui_url(self) -> str:
        return f"http://{EMBEDDED_HOST}:{self.temporal_ui_port}"
