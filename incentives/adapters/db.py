"""Connections to Postgres: one pool per process, JSON codecs, and a clear error when unreachable."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from incentives.adapters.failures import connection_failure
from incentives.adapters.urls import redact
from incentives.domain.errors import InvalidInput, Unavailable

__all__ = ["Connection", "Pool", "create_pool", "redact"]

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
    """A pool whose connections speak JSON; `Unavailable` if Postgres cannot be reached (the cause
    in words), `InvalidInput` if asyncpg refuses the URL itself (settings check its shape first;
    this catches a parameter's value, such as `sslmode=bogus`). Neither quotes the password."""
    try:
        pool = await asyncpg.create_pool(
            database_url,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_undo_open_transaction,
            **kwargs,
        )
    except OSError as error:  # before ValueError: a certificate that fails verification is both
        raise _unreachable(database_url, error) from error
    except ValueError:
        # asyncpg's configuration errors are ValueErrors (ClientConfigurationError too), and their
        # text may quote a part of the URL: an unencoded password can end up read as a port.
        raise InvalidInput(
            f"Postgres URL {redact(database_url)}", "asyncpg cannot use it: check its host, port and parameters"
        ) from None
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise _unreachable(database_url, error) from error
    assert pool is not None
    return pool


async def connect_one(database_url: str) -> asyncpg.Connection[asyncpg.Record]:
    """One connection of its own, outside any pool, speaking JSON like the pools' (for a session
    that holds a lock or listens for notifications); `Unavailable` if Postgres cannot be reached."""
    try:
        conn = await asyncpg.connect(database_url)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise _unreachable(database_url, error) from error
    await _init_connection(conn)
    return conn


def _unreachable(database_url: str, error: BaseException) -> Unavailable:
    return Unavailable(f"cannot connect to Postgres at {redact(database_url)}: {connection_failure(error)}")


# `:name`, not preceded by `:` or a word character: a `::type` cast stays. (Statements written this
# way hold no `:` in their string literals.)
_NAMED = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)\b")


def numbered(sql: str, params: dict[str, object]) -> tuple[str, list[object]]:
    """`sql` written with `:name` placeholders, as asyncpg takes it: `$n` placeholders and the values
    in their order. A statement with many parameters pairs each value with its name, not by counting;
    a name without a value, or a value the statement never names, is a programming error."""
    order: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        name = match[1]
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    text = _NAMED.sub(placeholder, sql)
    assert set(order) == set(params), f"placeholders {sorted(order)} and values {sorted(params)} differ"
    return text, [params[name] for name in order]
