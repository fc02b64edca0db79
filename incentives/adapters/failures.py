"""Which exceptions are the infrastructure failing (a server down or restarting, a connection lost
in the middle of a call) rather than a bug: a caller reports those as "unavailable, outcome
unknown", and anything else as an internal error.

The client and the ledger turn the failures they expect into `Unavailable` and `OutcomeUnknown`;
this catches the ones that still come through raw, from the drivers of either server.

`connection_failure` says in words why a connection to either server failed: the Temporal core's
errors arrive as the Rust debug text of its transport error, asyncpg's as Python's `OSError`s.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl

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
        return f"a connection failed ({connection_failure(error)})"
    return None


def _first_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0]
    return text if len(text) <= _DETAIL_LENGTH else text[:_DETAIL_LENGTH] + "…"


# The causes worth naming, by errno: from a Python socket, or in an OSError's text ("[Errno 111]").
_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "timed out",
    errno.ECONNRESET: "connection reset",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.EACCES: "permission denied",
    errno.ENOENT: "no server listening on its Unix socket",
}
# The same causes in the Temporal core's (Rust) transport errors, or in any error's text; first match wins.
_TEXT_WORDS = [
    (re.compile(r"ConnectionRefused|Connection refused", re.IGNORECASE), "connection refused"),
    (
        re.compile(r"dns error|lookup address|Name or service not known|nodename nor servname", re.IGNORECASE),
        "host not found",
    ),
    (re.compile(r"TimedOut|timed out|deadline has elapsed", re.IGNORECASE), "timed out"),
    (
        re.compile(r"\btls\b|certificate|handshake|InvalidContentType|CorruptMessage", re.IGNORECASE),
        "TLS handshake failed",
    ),
    (re.compile(r"ConnectionReset|Connection reset", re.IGNORECASE), "connection reset"),
    (re.compile(r"NetworkUnreachable|Network is unreachable", re.IGNORECASE), "network unreachable"),
    (re.compile(r"HostUnreachable|No route to host", re.IGNORECASE), "host unreachable"),
]
# A server that answered the connection's first call, as the core prints it: the gRPC status in words.
_GRPC_STATUS = re.compile(r'Status \{ code: (?P<code>[A-Za-z]+), message: "(?P<message>[^"\\]{0,200})')
_ERRNO_IN_TEXT = re.compile(r"\[Errno (?P<errno>-?[0-9]+)\]")
_UNKNOWN_CAUSE = "the connection failed"


def connection_failure(error: BaseException) -> str:
    """Why a connection to Temporal or Postgres failed, in a few words ("connection refused", "host
    not found", "timed out", "TLS handshake failed", a server's own one-line answer...), never the
    driver's debug text."""
    if isinstance(error, asyncpg.PostgresError):  # Postgres answered, in words of its own
        return _first_line(error)
    if isinstance(error, socket.gaierror):
        return "host not found"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS handshake failed: {error.verify_message or 'certificate not trusted'}"
    if isinstance(error, ssl.SSLError):
        return "TLS handshake failed"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError) and error.errno in _ERRNO_WORDS:
        return _ERRNO_WORDS[error.errno]
    return _words_in(str(error)) or _plain_first_line(error) or _UNKNOWN_CAUSE


def _words_in(text: str) -> str | None:
    status = _GRPC_STATUS.search(text)
    if status is not None:
        return f"it answered {status['code']}: {status['message']}".rstrip(": ")
    for pattern, words in _TEXT_WORDS:
        if pattern.search(text):
            return words
    number = _ERRNO_IN_TEXT.search(text)
    return None if number is None else _ERRNO_WORDS.get(int(number["errno"]))


def _plain_first_line(error: BaseException) -> str | None:
    """The error's first line when it reads as words (asyncpg's `ConnectionError`s do); None when it
    is a debug print (braces, brackets, `::` paths) or empty."""
    text = _first_line(error)
    return None if not text or re.search(r"[{}\[\]]|::", text) else text
