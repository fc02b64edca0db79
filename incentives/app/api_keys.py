"""The HTTP API's keys: made, listed, revoked and checked, in Postgres (`migrations/0009_api_keys.sql`).

A key is `ik_` and 43 characters of URL-safe base64: 256 random bits, shown once when it is made
and stored only as its SHA-256 (a fast hash is enough for a key nobody can guess; a slow one would
cost every request). Each request is checked against the table, so a revocation holds from the
next request on. A key carries one or more scopes; an operation names the scopes that may call it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from typing import Literal, get_args

import asyncpg

from incentives.adapters.db import Pool
from incentives.domain.errors import InvalidInput, Rejected
from incentives.domain.inputs import check_id, shown
from incentives.domain.models import Instant, Model

Scope = Literal["checkout", "grant", "promotions", "read"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
# What each scope may do, as the README and `api-key create --help` say it.
SCOPE_HELP = {
    "checkout": "redeem, reverse, read a wallet",
    "grant": "grant, revoke, read a wallet",
    "promotions": "start and control promotions, read them",
    "read": "every GET",
}
KEY_PREFIX = "ik_"
_KEY_BYTES = 32
# What `new_key` makes; anything else is no key of ours, refused without asking Postgres.
_KEY = re.compile(r"ik_[A-Za-z0-9_-]{43}")


class ApiKey(Model):
    """A key as `api-key list` shows it: never the key itself, which only its holder has."""

    name: str
    scopes: list[Scope]
    created_at: Instant
    revoked_at: Instant | None


class NewApiKey(Model):
    """`api-key create --json`: the key, shown this once."""

    key: str
    name: str
    scopes: list[Scope]


class KeyNameTaken(Rejected):
    """A key in use already has this name: revoke it first, or choose another."""


class UnknownApiKey(Rejected):
    """No key in use has this name."""


def check_key_name(name: str, field: str = "--name") -> str:
    return check_id(name, field)


def check_scopes(scopes: Iterable[str], field: str = "--scope") -> list[Scope]:
    """The scopes given, each once, in the order of `SCOPES`; at least one."""
    given = list(scopes)
    for scope in given:
        if scope not in SCOPES:
            raise InvalidInput(field, f"{shown(scope)} is not a scope: use {', '.join(SCOPES)}")
    if not given:
        raise InvalidInput(field, f"give at least one scope: {', '.join(SCOPES)}")
    return [scope for scope in SCOPES if scope in given]


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def well_formed(presented: str) -> bool:
    """Whether `presented` could be a key `new_key` made: anything else is refused without a query."""
    return _KEY.fullmatch(presented) is not None


async def create_key(pool: Pool, name: str, scopes: Iterable[str]) -> NewApiKey:
    """A new key named `name` with `scopes`; its hash is stored, the key returned this once."""
    name, allowed = check_key_name(name), check_scopes(scopes)
    key = new_key()
    try:
        await pool.execute(
            "INSERT INTO api_keys (name, key_hash, scopes) VALUES ($1, $2, $3)", name, key_hash(key), allowed
        )
    except asyncpg.UniqueViolationError:
        raise KeyNameTaken(f"a key named {name} is in use: revoke it first, or choose another name") from None
    return NewApiKey(key=key, name=name, scopes=allowed)


async def list_keys(pool: Pool) -> list[ApiKey]:
    """Every key ever made, in use or revoked, oldest first."""
    rows = await pool.fetch("SELECT name, scopes, created_at, revoked_at FROM api_keys ORDER BY key_id")
    return [ApiKey.model_validate(dict(row)) for row in rows]


async def revoke_key(pool: Pool, name: str) -> ApiKey:
    """Revokes the key in use named `name`: the API refuses it from its next request."""
    name = check_key_name(name, "NAME")
    row = await pool.fetchrow(
        """UPDATE api_keys SET revoked_at = greatest(now(), created_at) WHERE name = $1 AND revoked_at IS NULL
           RETURNING name, scopes, created_at, revoked_at""",
        name,
    )
    if row is None:
        raise UnknownApiKey(f"no key in use is named {name} (`incentives api-key list` shows them)")
    return ApiKey.model_validate(dict(row))


class Caller(Model):
    """Who called: the key's name (for logs, never the key) and what it may do."""

    name: str
    scopes: frozenset[Scope]


# The key in use with this hash; `incentives.app.replays` asks it in the same statement as its own question.
KEY_IN_USE = "SELECT name, scopes FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"


async def caller(pool: Pool, presented: str) -> Caller | None:
    """The caller holding `presented`, or None when it is no key in use (malformed, unknown, revoked)."""
    if not well_formed(presented):
        return None
    row = await pool.fetchrow(KEY_IN_USE, key_hash(presented))
    return None if row is None else Caller(name=row["name"], scopes=frozenset(row["scopes"]))
