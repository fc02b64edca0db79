"""The API's listening socket: bound by whoever starts the server (`incentives api`), before the
server process exists, so that an unusable host or a port in use is said at once, naming the flag;
then handed to the server process, which inherits it (`fd`)."""

from __future__ import annotations

import os
import socket

from incentives.domain.errors import InvalidInput
from incentives.domain.inputs import shown

BACKLOG = 2048


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port`; `InvalidInput` naming `--host` or `--port` if it cannot be had."""
    if not host:
        raise InvalidInput("--host", "is empty: give the address to listen on, such as 127.0.0.1")
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError, ValueError):  # socket.gaierror is an OSError
        raise InvalidInput("--host", f"{shown(host)} is not an address or a host name this machine resolves") from None
    try:
        return socket.create_server(address[:2], family=family, backlog=BACKLOG)
    except OSError as error:
        raise InvalidInput("--port", f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def inheritable(listening: socket.socket) -> int:
    """The socket's descriptor, left open across `exec` for the server process to take over."""
    os.set_inheritable(listening.fileno(), True)
    return listening.fileno()


def inherited(fd: int) -> socket.socket:
    """The listening socket the starting process bound (`inheritable`)."""
    try:
        listening = socket.socket(fileno=fd)
    except OSError as error:
        raise InvalidInput("--fd", f"{fd} is not an open socket: {error.strerror or error}") from None
    if listening.type != socket.SOCK_STREAM or listening.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0:
        raise InvalidInput("--fd", f"{fd} is not a listening TCP socket")
    return listening
