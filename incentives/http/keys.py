"""The caller's API key, checked before anything else is decided: no key, a malformed header, or a
key unknown or revoked is 401; a key whose scopes do not include the operation is 403."""

from __future__ import annotations

from incentives.app import api_keys
from incentives.app.api_keys import Caller
from incentives.http.operations import Call, Operation
from incentives.http.problems import HttpProblem
from incentives.http.sending import nothing_sent

BEARER = {"WWW-Authenticate": 'Bearer realm="incentives"'}


def presented_key(call: Call) -> str:
    """The key in `Authorization: Bearer KEY`, as sent (401 when there is none)."""
    header = call.request.headers.get("authorization")
    if header is None:
        raise HttpProblem("Unauthenticated", "no API key: send Authorization: Bearer KEY", BEARER)
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HttpProblem("Unauthenticated", "the Authorization header is not `Bearer KEY`", BEARER)
    return key.strip()


def allowed(caller: Caller | None, operation: Operation) -> Caller:
    """The caller, if its key is in use and one of its scopes may call `operation`."""
    if caller is None:
        raise HttpProblem("Unauthenticated", "this API key is unknown or revoked", BEARER)
    scopes = operation.scopes or frozenset()
    if not caller.scopes & scopes:
        raise HttpProblem(
            "Forbidden",
            f"key {caller.name} (scopes: {', '.join(sorted(caller.scopes))}) may not "
            f"{operation.method} {operation.path}: it needs one of {', '.join(sorted(scopes))}",
        )
    return caller


async def authorize(call: Call) -> None:
    """Checks the caller's key against Postgres (the table holds revocations at once) and its scopes."""
    key = presented_key(call)
    async with nothing_sent():
        found = await api_keys.caller(call.backends.pool(), key)
    call.caller = allowed(found, call.operation)
