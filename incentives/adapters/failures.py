"""Which exceptions are the infrastructure failing (a server down or restarting, a connection lost
in the middle of a call) rather than a bug: a caller reports those as "unavailable, outcome
unknown", and anything else as an internal error.

The client and the ledger turn the failures they expect into `Unavailable` and `OutcomeUnknown`;
this catches the ones that still come through raw, from the drivers of either server.
"""

from __future__ import annotations

import socket

import asyncpg
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

_POSTGRES = (
    asyncpg.PostgresConnectionError,  # lost, refused, or closed under us
    asyncpg.InterfaceError,  # the connection was closed while in use
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up, admin shutdown
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    # The protocol's state broken by a connection cut mid-message ("cannot switch to state 12;
    # another operation is in progress"), seen when Postgres restarts under a call.
    asyncpg.exceptions.InternalClientError,
)
# FileNotFoundError: the Unix socket of a Postgres that is down (the embedded one listens on one).
_NETWORK = (ConnectionError, TimeoutError, socket.gaierror, FileNotFoundError)
_DETAIL_LENGTH = 200


def infrastructure_failure(error: BaseException) -> str | None:
    """What failed, in one line, when `error` is the infrastructure's; None when it is not."""
    if isinstance(error, _POSTGRES):
        return f"Postgres failed during the call ({type(error).__name__}: {_first_line(error)})"
    if isinstance(error, RPCError):
        return f"Temporal answered {error.status.name}: {_first_line(error)}"
    if isinstance(error, WorkflowUpdateRPCTimeoutOrCancelledError):
        return "Temporal did not answer the update in time"
    if isinstance(error, _NETWORK):
        return f"a connection failed ({type(error).__name__}: {_first_line(error)})"
    return None


def _first_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0]
    return text if len(text) <= _DETAIL_LENGTH else text[:_DETAIL_LENGTH] + "…"
