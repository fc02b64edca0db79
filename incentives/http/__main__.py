"""`python -m incentives.http [--host HOST] [--port PORT | --fd FD]`: the API's process, which
`incentives api` becomes. The CLI and the HTTP edge are sibling layers: the command binds the
socket (so that a bad host or a busy port is its exit 2), then hands the process over to this one,
which takes the socket as `--fd`. Settings come from the environment, as for every command; an
error is one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import NoReturn

import uvloop

from incentives.adapters.logs import configure_logging
from incentives.adapters.settings import load_settings
from incentives.adapters.tracing import configure_tracing, flush_tracing
from incentives.app.listening import bind, inherited
from incentives.domain.errors import InvalidInput
from incentives.domain.inputs import parse_whole
from incentives.http.server import serve

EXIT_BAD_INPUT = 2
# Its traces' `service.name`, unless OTEL_SERVICE_NAME says otherwise.
API_SERVICE = "incentives-api"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m incentives.http", allow_abbrev=False)
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--port", help="the port to listen on (default INCENTIVES_API_PORT, or 8080)")
    parser.add_argument("--fd", type=int, help="a listening socket already bound, inherited")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        if args.fd is not None:
            listening = inherited(args.fd)
        else:
            port = settings.api_port if args.port is None else parse_whole(args.port, "--port", low=1, high=65535)
            listening = bind(args.host, port)
    except InvalidInput as error:
        print(f"incentives: error: {error.field}: {error.reason}", file=sys.stderr)
        return EXIT_BAD_INPUT
    configure_logging(settings.log_level)
    configure_tracing(API_SERVICE)
    try:
        uvloop.run(serve(settings, listening))
    finally:
        flush_tracing()
    return 0


def _exit(code: int) -> NoReturn:
    """Ends without the interpreter's finalization, as the CLI does (`incentives.cli._exit`): the
    Temporal core's threads may still be handing a result back when the server is done."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
