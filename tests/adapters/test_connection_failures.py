"""Why a connection failed, in words: the Temporal core's Rust debug text and asyncpg's `OSError`s
become "connection refused", "host not found", "timed out", "TLS handshake failed"..., and the
messages of `connect_temporal` and `create_pool` say that, never the driver's text."""

from __future__ import annotations

import socket
import ssl

import pytest

from incentives.adapters.db import create_pool
from incentives.adapters.failures import connection_failure
from incentives.adapters.settings import load_settings
from incentives.adapters.temporal import connect_temporal
from incentives.devstack.servers import free_port
from incentives.domain.errors import Unavailable

# The Temporal core's errors from `Client.connect`, as recorded (temporalio 1.35).
_CORE = "Failed client connect: Server connection error: tonic::transport::Error(Transport, ConnectError("
REFUSED = (
    _CORE
    + 'ConnectError("tcp connect error", 127.0.0.1:1, Os { code: 111, kind: ConnectionRefused, message: "Connection refused" })))'
)
NO_HOST = (
    _CORE
    + 'ConnectError("dns error", Custom { kind: Uncategorized, error: "failed to lookup address information: Name or service not known" })))'
)
TLS_TO_PLAIN = _CORE + "Custom { kind: InvalidData, error: InvalidMessage(InvalidContentType) }))"
TLS_CLOSED = _CORE + 'Custom { kind: UnexpectedEof, error: "tls handshake eof" }))'
TIMED_OUT = (
    _CORE
    + 'ConnectError("tcp connect error", 10.0.0.1:7233, Os { code: 110, kind: TimedOut, message: "Connection timed out" })))'
)
NOT_TEMPORAL = (
    "Failed client connect: `get_system_info` call error after connection: Status { code: Unimplemented, "
    'message: "grpc-status header missing, mapped from HTTP status code 404", metadata: MetadataMap { headers: {} }, source: None }'
)
UNKNOWN = _CORE + "Custom { kind: Other, error: Weird(Thing { x: 1 }) }))"


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (RuntimeError(REFUSED), "connection refused"),
        (RuntimeError(NO_HOST), "host not found"),
        (RuntimeError(TLS_TO_PLAIN), "TLS handshake failed"),
        (RuntimeError(TLS_CLOSED), "TLS handshake failed"),
        (RuntimeError(TIMED_OUT), "timed out"),
        (
            RuntimeError(NOT_TEMPORAL),
            "it answered Unimplemented: grpc-status header missing, mapped from HTTP status code 404",
        ),
        (RuntimeError(UNKNOWN), "the connection failed"),
        (ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)"), "connection refused"),
        (
            OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 1), [Errno 111] ..."),
            "connection refused",
        ),
        (socket.gaierror(-2, "Name or service not known"), "host not found"),
        (FileNotFoundError(2, "No such file or directory"), "no server listening on its Unix socket"),
        (TimeoutError(), "timed out"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"), "TLS handshake failed"),
        (ConnectionResetError(104, "Connection reset by peer"), "connection reset"),
    ],
)
def test_a_failed_connection_is_said_in_words(error: BaseException, words: str) -> None:
    assert connection_failure(error) == words


async def test_temporal_unreachable_is_said_in_words() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(Unavailable) as raised:
        await connect_temporal(load_settings(temporal_address=address))
    message = str(raised.value)
    assert message.startswith(f"cannot reach Temporal at {address}: connection refused; run `incentives dev up`")
    assert "tonic" not in message
    assert "Os {" not in message


async def test_postgres_unreachable_is_said_in_words() -> None:
    url = f"postgresql://owner:S3cret@127.0.0.1:{free_port()}/incentives"
    with pytest.raises(Unavailable) as raised:
        await create_pool(url)
    assert str(raised.value) == f"cannot connect to Postgres at {url.replace(':S3cret', '')}: connection refused"
