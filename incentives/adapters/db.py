"""Connections to Postgres: one pool per process, JSON codecs, and a clear error when unreachable."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from incentives.domain.errors import Unavailable

# asyncpg's classes are generic only in its stubs.
if TYPE_CHECKING:
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
    Connection: TypeAlias = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
else:
    Pool = asyncpg.Pool
    Connection = asyncpg.pool.PoolConnectionProxy


async def _init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    for json_type in ("json", "jsonb"):
        await conn.set_type_codec(json_type, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _undo_open_transaction(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """What a released connection needs before its next user, instead of asyncpg's default reset
    (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`, one more round trip per ledger
    call): this code keeps no session state (no SET, LISTEN or cursor; its advisory locks are
    transaction-scoped, but for the migrations' lock, released in a `finally`)."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(database_url: str, *, min_size: int = 1, max_size: int = 10, **kwargs: Any) -> Pool:
    """A pool whose connections speak JSON; `Unavailable` if Postgres cannot be reached."""
    try:
        pool = await asyncpg.create_pool(
            database_url,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_undo_open_transaction,
            **kwargs,
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise Unavailable(f"cannot connect to Postgres at {redact(database_url)}: {error}") from error
    assert pool is not None
    return pool


def redact(database_url: str) -> str:
    """The URL without its password, in the user info or the query (`?password=`), for messages
    and logs."""
    scheme, sep, rest = database_url.partition("://")
    if not sep:
        return database_url
    if "@" in rest:
        credentials, _, after = rest.rpartition("@")
        rest = f"{credentials.split(':', 1)[0]}@{after}"
    location, _, query = rest.partition("?")
    kept = [param for param in query.split("&") if param and not param.lower().startswith("password=")]
    return f"{scheme}://{location}" + (f"?{'&'.join(kept)}" if kept else "")
