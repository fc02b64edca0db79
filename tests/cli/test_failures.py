"""No traceback reaches the user in any failure: infrastructure failing mid-call is exit 3 on one line,
a bug is exit 4 on one line with the traceback in the log, and the process never aborts at exit."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from incentives.adapters.settings import WORKER_ROLE
from incentives.app import views
from incentives.app.client import IncentivesClient
from incentives.devstack.servers import EmbeddedPostgres
from tests.cli.conftest import CLOSED_DATABASE, Cli, grant
from tests.conftest import TEST_DATABASE
from tests.helpers.builders import NewId

INCENTIVES = Path(sys.executable).parent / "incentives"


def _raise(error: BaseException) -> object:
    async def fail(*args: object, **kwargs: object) -> NoReturn:
        raise error

    return fail


class TestInfrastructureMidCall:
    @pytest.mark.parametrize(
        "error",
        [
            asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
            asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
            asyncpg.exceptions.InterfaceError("connection is closed"),
            ConnectionResetError(104, "Connection reset by peer"),
        ],
    )
    async def test_postgres_failing_during_a_read_exits_3_on_one_line(
        self, cli: Cli, new_id: NewId, monkeypatch: pytest.MonkeyPatch, error: Exception
    ) -> None:
        monkeypatch.setattr(views, "wallet_view", _raise(error))
        result = await cli("wallet", new_id("c"))
        assert result.code == 3, result
        assert result.err.startswith("incentives: outcome unknown: ")
        assert (result.err.count("\n"), "Traceback" in result.err) == (1, False)

    async def test_temporal_failing_during_an_update_exits_3_on_one_line(
        self, cli: Cli, new_id: NewId, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        failure = RPCError("connection reset while the update was in flight", RPCStatusCode.UNAVAILABLE, b"")
        monkeypatch.setattr(IncentivesClient, "grant", _raise(failure))
        result = await cli(*grant(new_id("c"), new_id("l"), "--credit", "1"))
        assert result.code == 3, result
        assert "Temporal answered UNAVAILABLE: connection reset while the update was in flight" in result.err
        assert "retrying the same command is safe" in result.err
        assert result.err.count("\n") == 1


class TestInternalError:
    async def test_a_bug_exits_4_on_one_line_and_the_log_has_the_traceback(
        self, cli: Cli, new_id: NewId, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        monkeypatch.setattr(views, "wallet_view", _raise(ZeroDivisionError("division by zero")))
        with caplog.at_level(logging.ERROR, logger="incentives.cli"):
            result = await cli("wallet", new_id("c"))
        assert result.code == 4, result
        assert result.err.startswith("incentives: internal error (ZeroDivisionError: division by zero); ")
        assert (result.err.count("\n"), "Traceback" in result.err) == (1, False)
        [record] = [r for r in caplog.records if r.name == "incentives.cli"]
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], ZeroDivisionError)


def _incentives(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(INCENTIVES), *argv], capture_output=True, text=True, env=env, timeout=60, check=False)


class TestProcessExit:
    def test_the_command_skips_the_interpreter_finalization(self, tmp_path: Path) -> None:
        """Where the Temporal core's threads, still handing results back, would abort the process."""
        script = "import atexit, sys, client; atexit.register(print, 'finalized'); sys.argv[1:] = ['--version']; client.main()"
        env = os.environ | {"INCENTIVES_HOME": str(tmp_path)}
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
        assert (result.returncode, result.stdout) == (0, "incentives 0.1.0\n")

    def test_no_process_aborts_when_postgres_fails_after_temporal_answered(
        self, dev_server: WorkflowEnvironment, tmp_path: Path
    ) -> None:
        """Once 3 in 60 such processes died of SIGABRT (`PyGILState_Release` while finalizing)."""
        env = os.environ | {
            "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
            "DATABASE_URL": CLOSED_DATABASE,
            "INCENTIVES_HOME": str(tmp_path),
        }
        argv = grant("c", "l", "--credit", "1")
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda _: _incentives(*argv, env=env), range(8)))
        assert [r.returncode for r in results] == [3] * 8, [r.stderr for r in results if r.returncode != 3]
        assert all(r.stderr.count("\n") == 1 for r in results)

    def test_an_unwritable_log_costs_the_user_nothing(self, tmp_path: Path) -> None:
        blocked = tmp_path / "file"
        blocked.write_text("")
        env = os.environ | {"INCENTIVES_HOME": str(blocked), "DATABASE_URL": CLOSED_DATABASE}
        result = _incentives("wallet", "c", env=env)
        assert result.returncode == 3
        assert result.stderr.count("\n") == 1


DB_SECRET, WORKER_SECRET, API_KEY = "db-pw-5f1e9c", "worker-pw-77ad02", "temporal-key-c0ffee"


def _secrets_in(result: subprocess.CompletedProcess[str], home: Path) -> list[str]:
    """Every secret found in the command's output or anywhere under its home (its log)."""
    texts = [result.stdout, result.stderr, *(p.read_text(errors="replace") for p in home.rglob("*") if p.is_file())]
    return [secret for secret in (DB_SECRET, WORKER_SECRET, API_KEY) if any(secret in text for text in texts)]


class TestSecrets:
    @pytest.mark.parametrize(
        "database_url",
        [
            f"postgresql://owner:{DB_SECRET}@127.0.0.1:1/incentives",
            f"postgresql://owner@127.0.0.1:1/incentives?password={DB_SECRET}&sslmode=disable",
        ],
        ids=["in-userinfo", "in-query"],
    )
    @pytest.mark.parametrize("argv", [("wallet", "c"), ("worker",), ("reconcile",)], ids=lambda a: a[0])
    def test_a_database_password_is_in_no_message_and_no_log(
        self, dev_server: WorkflowEnvironment, tmp_path: Path, database_url: str, argv: tuple[str, ...]
    ) -> None:
        env = os.environ | {
            "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
            "DATABASE_URL": database_url,
            "INCENTIVES_WORKER_DATABASE_URL": f"postgresql://worker:{WORKER_SECRET}@127.0.0.1:1/incentives",
            "INCENTIVES_HOME": str(tmp_path),
            "INCENTIVES_LOG_LEVEL": "DEBUG",
        }
        result = _incentives(*argv, env=env)
        assert result.returncode == 3, result.stderr
        assert "127.0.0.1:1" in result.stderr  # the message still says where
        assert _secrets_in(result, tmp_path) == []

    def test_a_temporal_api_key_is_in_no_message_and_no_log(self, tmp_path: Path) -> None:
        env = os.environ | {
            "TEMPORAL_ADDRESS": "127.0.0.1:1",
            "TEMPORAL_API_KEY": API_KEY,
            "DATABASE_URL": f"postgresql://owner:{DB_SECRET}@127.0.0.1:1/incentives",
            "INCENTIVES_HOME": str(tmp_path),
            "INCENTIVES_LOG_LEVEL": "DEBUG",
        }
        for argv in (grant("c", "l", "--credit", "1"), ("worker",), ("promotion", "list")):
            result = _incentives(*argv, env=env)
            assert result.returncode == 3, result.stderr
            assert _secrets_in(result, tmp_path) == []

    def test_the_worker_logs_no_password_up_to_its_start_line(
        self, dev_server: WorkflowEnvironment, postgres: EmbeddedPostgres, database_url: str, tmp_path: Path
    ) -> None:
        """The embedded Postgres trusts its socket, so both logins work with a password in the URL."""
        owner = f"{database_url}&password={DB_SECRET}"
        worker = postgres.url(TEST_DATABASE, user=WORKER_ROLE).replace(
            f"//{WORKER_ROLE}@", f"//{WORKER_ROLE}:{WORKER_SECRET}@"
        )
        env = os.environ | {
            "TEMPORAL_ADDRESS": dev_server.client.service_client.config.target_host,
            "DATABASE_URL": owner,
            "INCENTIVES_WORKER_DATABASE_URL": worker,
            "INCENTIVES_TASK_QUEUE": f"secrets-{uuid.uuid4().hex[:8]}",
            "INCENTIVES_HOME": str(tmp_path),
            "INCENTIVES_LOG_LEVEL": "DEBUG",
        }
        log = tmp_path / "worker.log"
        with log.open("w") as out:
            process = subprocess.Popen([str(INCENTIVES), "worker"], stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 60
            while "worker started" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "worker started" in log.read_text(), log.read_text()
        finally:
            process.terminate()
            process.wait(timeout=30)
        assert _secrets_in(subprocess.CompletedProcess(process.args, process.returncode, "", ""), tmp_path) == []


class TestMalformedDatabaseUrl:
    @pytest.mark.parametrize("variable", ["DATABASE_URL", "INCENTIVES_WORKER_DATABASE_URL"])
    @pytest.mark.parametrize(
        ("url", "why"),
        [
            (f"postgresql://u:{DB_SECRET}@[::1:1/db", "has a malformed host or port"),
            (f"mysql://u:{DB_SECRET}@h/db", "is not a postgresql:// or postgres:// URL"),
        ],
        ids=["broken-ipv6", "mysql"],
    )
    @pytest.mark.parametrize("argv", [("wallet", "c"), ("worker",), ("dev", "status")], ids=lambda a: a[0])
    async def test_is_exit_2_naming_the_variable_and_never_the_password(
        self,
        offline_cli: Cli,
        monkeypatch: pytest.MonkeyPatch,
        variable: str,
        url: str,
        why: str,
        argv: tuple[str, ...],
    ) -> None:
        monkeypatch.setenv(variable, url)
        result = await offline_cli(*argv)
        assert result.refused_with(f"incentives: error: {variable}: {why}"), result
        assert DB_SECRET not in result.err
