"""`incentives dev up | down | status` in a scratch home: start, reuse, stale pid files, stop; and
`status` as a health check (exit 3 when a server does not answer)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.client import Client

from incentives.devstack.servers import TEMPORAL_BIN, EmbeddedNats, EmbeddedTemporal, free_port
from incentives.domain.reconcile import RECONCILE_SCHEDULE_ID


def dev(home: Path, *action: str, ports: tuple[int, int, int]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DATABASE_URL", "NATS_"))}
    env |= {
        "INCENTIVES_HOME": str(home),
        "INCENTIVES_TEMPORAL_PORT": str(ports[0]),
        "INCENTIVES_TEMPORAL_UI_PORT": str(ports[1]),
        "INCENTIVES_NATS_PORT": str(ports[2]),
        "TEMPORAL_CONFIG_FILE": str(home / "no-temporal-config.toml"),
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "incentives"), "dev", *action],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "stack"


def test_up_reuses_status_reports_down_stops_and_stale_pid_files_are_handled(home: Path) -> None:
    ports = (free_port(), free_port(), free_port())
    try:
        up = dev(home, "up", ports=ports)
        assert up.returncode == 0, up.stderr
        assert f"127.0.0.1:{ports[0]}" in up.stdout
        assert f"http://127.0.0.1:{ports[1]}" in up.stdout
        assert f"host={home / 'pg'}" in up.stdout
        assert f"NATS          nats://127.0.0.1:{ports[2]} (running (pid" in up.stdout
        assert _reconcile_schedule(ports[0]) == ("Reconcile", "incentives", ["3600s"], "SCHEDULE_OVERLAP_POLICY_SKIP")
        temporal_pid = (home / "temporal.pid").read_text().strip()
        postgres_pid = (home / "pg" / "postmaster.pid").read_text().split()[0]

        again = dev(home, "up", ports=ports)
        assert again.returncode == 0, again.stderr
        assert (home / "temporal.pid").read_text().strip() == temporal_pid
        assert (home / "pg" / "postmaster.pid").read_text().split()[0] == postgres_pid
        healthy = dev(home, "status", ports=ports)
        assert f"running (pid {temporal_pid}" in healthy.stdout
        assert (healthy.returncode, healthy.stdout.splitlines()[-3:]) == (
            0,
            ["Temporal: up", "Postgres: up", "NATS: up"],
        )

        down = dev(home, "down", ports=ports)
        assert (down.returncode, down.stdout.strip()) == (0, "stopped Temporal, NATS, Postgres")
        status = dev(home, "status", ports=ports)
        assert status.stdout.count("not running") == 3
        assert status.returncode == 3
        assert status.stdout.splitlines()[-3:] == [
            f"Temporal: DOWN (127.0.0.1:{ports[0]}: connection refused)",
            f"Postgres: DOWN (postgresql://postgres@/incentives?host={home / 'pg'}: no server listening on its Unix socket)",
            f"NATS: DOWN (nats://127.0.0.1:{ports[2]}: connection refused)",
        ]
        assert status.stderr == "incentives: unavailable: Temporal and Postgres and NATS did not answer (see above)\n"

        # Pid files left by a crash name processes that are gone: neither blocks the next start.
        (home / "temporal.pid").write_text("999999\n")
        (home / "pg" / "postmaster.pid").write_text(f"999999\n{home / 'pg'}\n")
        assert dev(home, "status", ports=ports).stdout.count("not running") == 3
        restarted = dev(home, "up", ports=ports)
        assert restarted.returncode == 0, restarted.stderr
        assert (home / "temporal.pid").read_text().strip() != "999999"
    finally:
        dev(home, "down", ports=ports)
    assert dev(home, "down", ports=ports).stdout.strip() == "nothing was running"


def _reconcile_schedule(temporal_port: int) -> tuple[str, str, list[str], str]:
    """The schedule `dev up` created, as the Temporal CLI describes it: workflow type, task queue,
    intervals, overlap policy."""
    described = subprocess.run(
        [
            *(str(TEMPORAL_BIN), "schedule", "describe", "--schedule-id", RECONCILE_SCHEDULE_ID),
            *("--address", f"127.0.0.1:{temporal_port}", "--output", "json"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert described.returncode == 0, described.stderr
    schedule = json.loads(described.stdout)["schedule"]
    start = schedule["action"]["startWorkflow"]
    return (
        start["workflowType"]["name"],
        start["taskQueue"]["name"],
        [interval["interval"] for interval in schedule["spec"]["interval"]],
        schedule["policies"]["overlapPolicy"],
    )


def _status(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "incentives"), "dev", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _external(home: Path, **variables: str) -> dict[str, str]:
    """The environment of a shell pointing at external servers (nothing embedded)."""
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DATABASE_URL", "INCENTIVES_", "NATS_"))
    }
    return {**inherited, "INCENTIVES_HOME": str(home), **variables}


def test_status_of_external_servers_checks_that_they_answer(home: Path) -> None:
    """With TEMPORAL_ADDRESS, DATABASE_URL and NATS_URL, nothing is embedded: only a connection tells."""
    temporal, postgres = f"127.0.0.1:{free_port()}", f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    nats = f"nats://127.0.0.1:{free_port()}"
    status = _status(_external(home, TEMPORAL_ADDRESS=temporal, DATABASE_URL=postgres, NATS_URL=nats))
    assert status.returncode == 3, status.stderr
    assert f"NATS          {nats} (external: NATS_URL)" in status.stdout
    assert status.stdout.splitlines()[-3:] == [
        f"Temporal: DOWN ({temporal}: connection refused)",
        f"Postgres: DOWN ({postgres}: connection refused)",
        f"NATS: DOWN ({nats}: connection refused)",
    ]
    assert "tonic" not in status.stdout
    assert "Errno" not in status.stdout


@pytest.mark.parametrize(
    "query",
    ["", "?password=S3cret-q&sslmode=disable", "?PASSWORD=S3cret-q"],
    ids=["in-userinfo", "in-query", "in-query-upper-case"],
)
def test_status_shows_no_database_password(home: Path, query: str) -> None:
    """README: passwords never appear. The database is unreachable, so status exits 3; it says
    where it looked, without the password."""
    port = free_port()
    url = f"postgresql://owner:S3cret-u@127.0.0.1:{port}/incentives{query}"
    status = _status(
        _external(home, TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}", DATABASE_URL=url, INCENTIVES_LOG_LEVEL="DEBUG")
    )
    assert status.returncode == 3, status.stderr
    assert f"DATABASE_URL  postgresql://owner@127.0.0.1:{port}/incentives" in status.stdout
    assert f"Postgres: DOWN (postgresql://owner@127.0.0.1:{port}/incentives" in status.stdout
    logs = [path.read_text() for path in home.rglob("*") if path.is_file()]
    assert [text for text in (status.stdout, status.stderr, *logs) if "S3cret" in text] == []


async def test_the_embedded_temporal_answers_a_client_as_soon_as_it_has_started(tmp_path: Path) -> None:
    """Its port opens before its frontend answers: `start` returns only once the frontend's health
    check says SERVING, so the first client (dev up's schedule, the chaos run's driver) connects."""
    temporal = EmbeddedTemporal(tmp_path, port=free_port(), ui_port=free_port())
    temporal.start()
    try:
        client = await Client.connect(temporal.address)
        assert await client.service_client.check_health()
    finally:
        temporal.stop()


def test_a_killed_server_has_let_go_of_its_port_and_starts_again_on_it(tmp_path: Path) -> None:
    """A multi-threaded server's first thread turns zombie while the others still hold its socket:
    `kill` returns only once the port is free, so the restart a fault test makes finds it free."""
    nats = EmbeddedNats(tmp_path, free_port())
    nats.start()
    try:
        for _ in range(5):
            assert nats.kill()
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", nats.port)) != 0
            nats.start()
    finally:
        nats.stop()
