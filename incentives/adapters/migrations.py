"""Versioned SQL migrations from `migrations/NNNN_name.sql`, applied at worker and client start.

Each migration runs in its own transaction and is recorded with the SHA-256 of its text. All of
it happens under one Postgres advisory lock, so processes starting together apply each migration
exactly once; a recorded migration whose file has since changed is an error, never re-applied.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from incentives.adapters.db import Connection, Pool, create_pool
from incentives.adapters.endpoints import HINT, endpoints
from incentives.adapters.settings import Settings
from incentives.domain.errors import IncentivesError, Unavailable

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_FILE = re.compile(r"(?P<version>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql")
# Arbitrary but fixed: every process of every version of this project takes the same lock.
_ADVISORY_LOCK_KEY = 7_243_655_193_001


class MigrationError(IncentivesError):
    """The migrations on disk disagree with what the database has recorded."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lower_snake.sql")
        migrations.append(Migration(int(match["version"]), match["name"], path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version in {directory}")
    return migrations


async def migrate(pool: Pool, migrations: list[Migration] | None = None) -> list[Migration]:
    """Applies what is not applied yet; returns what it applied (empty when up to date)."""
    todo = load_migrations() if migrations is None else migrations
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _ADVISORY_LOCK_KEY)
        try:
            return await _apply(conn, todo)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _ADVISORY_LOCK_KEY)


async def _apply(conn: Connection, migrations: list[Migration]) -> list[Migration]:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version    integer PRIMARY KEY,
               name       text NOT NULL,
               checksum   text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    recorded = {
        row["version"]: row for row in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    }
    applied = []
    for migration in migrations:
        row = recorded.get(migration.version)
        if row is not None:
            if row["checksum"] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} changed after it was applied "
                    f"(recorded checksum {row['checksum'][:12]}, file {migration.checksum[:12]}): "
                    "add a new migration instead of editing an applied one"
                )
            continue
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
        applied.append(migration)
    return applied


class SchemaBehind(Unavailable):
    """The database's schema is older than this code: a reading command waits for a writer (`dev up`,
    a worker, `promotion start`) to bring it current instead of migrating it itself."""


async def connect_reader(settings: Settings, *, max_size: int | None = None) -> Pool:
    """A pool for a command that only reads (`wallet`, `promotion status`, `history`, `reconcile`...):
    the schema is checked, never migrated, so reading takes no global lock and needs no owner rights."""
    url = endpoints(settings).database_url
    pool = await _open(url, max_size or settings.db_pool_max)
    try:
        await require_current_schema(pool)
    except BaseException:
        await pool.close()
        raise
    return pool


async def require_current_schema(pool: Pool, migrations: list[Migration] | None = None) -> None:
    """`SchemaBehind` unless every migration of this code is applied (a newer schema is fine for a
    reader); `MigrationError` if an applied one has since changed."""
    wanted = load_migrations() if migrations is None else migrations
    async with pool.acquire() as conn:
        recorded: dict[int, str] = {}
        if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
            recorded = {row["version"]: row["checksum"] for row in await conn.fetch("SELECT * FROM schema_migrations")}
    missing = [migration for migration in wanted if migration.version not in recorded]
    if missing:
        first = missing[0]
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise SchemaBehind(
            f"the database's schema is behind this code: migration {first.version:04d}_{first.name}{more} is not "
            "applied; run `incentives dev up` or start a worker, which bring it current"
        )
    for migration in wanted:
        if recorded[migration.version] != migration.checksum:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} differs from the one the database applied"
            )


async def connect_database(settings: Settings, *, max_size: int | None = None) -> Pool:
    """A pool for a process that writes (a worker, `dev up`, `promotion start`), at the current
    schema: what is not applied yet is applied first, as the owner."""
    url = endpoints(settings).database_url
    pool = await _open(url, max_size or settings.db_pool_max)
    try:
        await migrate(pool)
    except BaseException:
        await pool.close()
        raise
    return pool


async def connect_worker_database(settings: Settings, *, max_size: int | None = None) -> Pool:
    """The worker's pool: the schema brought current as the owner, then the worker's own login
    (`WORKER_ROLE`, granted by the migrations only what the activities write)."""
    owner = await connect_database(settings, max_size=1)
    await owner.close()
    return await _open(endpoints(settings).worker_database_url, max_size or settings.db_pool_max)


async def _open(url: str, max_size: int) -> Pool:
    try:
        return await create_pool(url, max_size=max_size)
    except Unavailable as error:
        raise Unavailable(f"{error}; {HINT}") from error
