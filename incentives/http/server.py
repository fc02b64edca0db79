"""Serving the API: uvicorn (httptools, on uvloop) on a socket bound before anything else starts
(`incentives.app.listening`), so that a port in use is said at once. SIGTERM or SIGINT stops accepting connections, lets every
request in flight finish (its deadline bounds it: at most `MAX_TIMEOUT`, plus `DRAIN_MARGIN`),
closes the connections to Temporal and Postgres, and exits 0. Why this framework and server:
`docs/decisions/0009-the-http-api.md`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Generator
from datetime import timedelta

import uvicorn

from incentives.adapters.logs import get_logger
from incentives.adapters.settings import Settings
from incentives.adapters.tracing import traced_asgi
from incentives.http.app import build_api
from incentives.http.reading import MAX_TIMEOUT

# Time past the longest deadline for a request in flight to be answered and written out.
DRAIN_MARGIN = timedelta(seconds=10)
# How long an idle keep-alive connection stays open: longer than what a client or a load balancer
# in front keeps one idle (httpx 5 s, most balancers 60 s), so that the server is never the side
# closing a connection at the moment the other side sends a request on it (which fails that request).
KEEP_ALIVE = timedelta(seconds=75)


class _Server(uvicorn.Server):
    """uvicorn's server, stopping on SIGTERM or SIGINT as uvicorn does, but then exiting 0 rather
    than raising the signal again once drained: the drain is the orderly end."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _stop(self, sig: int) -> None:
        get_logger("incentives.api").info("draining", signal=signal.Signals(sig).name)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C stops waiting for requests in flight
        self.should_exit = True


async def serve(settings: Settings, listening: socket.socket) -> None:
    host, port = listening.getsockname()[:2]
    config = uvicorn.Config(
        traced_asgi(build_api(settings)),  # a span a request, if tracing is on
        http="httptools",
        ws="none",  # no websocket route: an upgrade request is an ordinary request (404)
        lifespan="on",
        access_log=False,  # one line per request comes from the API, with its ids
        log_config=None,  # the process's logging (structlog) already writes uvicorn's lines
        server_header=False,
        timeout_keep_alive=int(KEEP_ALIVE.total_seconds()),
        timeout_graceful_shutdown=int((MAX_TIMEOUT + DRAIN_MARGIN).total_seconds()),
    )
    get_logger("incentives.api").info("api listening", host=host, port=port, task_queue=settings.task_queue)
    await _Server(config).serve(sockets=[listening])
