"""The two phases of a call, which decide what a failing server means to the caller.

- `nothing_sent`: the work before anything reaches the engine (the key, a replay check, a read,
  whether the servers answer). A server failing here is 503 with `Retry-After`: nothing was sent,
  the same request again is safe. It is bounded by `BEFORE_SENDING`.
- `sent`: the engine's call. A server failing while it runs leaves the outcome unknown: 504, and
  the same request again is safe (the ids make it so).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TypeVar

from incentives.adapters.failures import infrastructure_failure
from incentives.domain.errors import OutcomeUnknown, Unavailable

T = TypeVar("T")

BEFORE_SENDING = timedelta(seconds=5)


class NothingSent(Unavailable):
    """A server failed before anything was sent."""


@asynccontextmanager
async def nothing_sent() -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(BEFORE_SENDING.total_seconds()):
            yield
    except TimeoutError:
        raise NothingSent(f"Postgres did not answer within {BEFORE_SENDING.total_seconds():g} s") from None
    except Exception as error:
        failure = infrastructure_failure(error)
        if failure is None:
            raise
        raise NothingSent(failure) from error


async def sent(call: Awaitable[T]) -> T:
    """The engine's answer: its result, a refusal, or `OutcomeUnknown` (its deadline, or a server
    failing while it ran)."""
    try:
        return await call
    except Unavailable as error:
        raise OutcomeUnknown(f"{error}: the operation may or may not have been applied") from error
    except Exception as error:
        failure = infrastructure_failure(error)
        if failure is None:
            raise
        raise OutcomeUnknown(f"{failure}: the operation may or may not have been applied") from error
