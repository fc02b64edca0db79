"""`incentives api-key create | list | revoke`: a key shown once and stored only as its hash, its
scopes checked as the command takes them, revocation holding from the API's next request; and
`incentives api` refusing a bad host or port, or a port in use, before it serves anything."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket

import asyncpg
import httpx
import pytest

import client
from incentives.adapters.db import Pool
from tests.helpers.builders import NewId
from tests.http.api_process import INCENTIVES
from tests.http.conftest import bearer, problem


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(client.run, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def on_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)


@pytest.mark.usefixtures("on_database")
async def test_a_key_is_shown_once_stored_as_its_hash_and_refused_once_revoked(
    capsys: pytest.CaptureFixture[str], pool: Pool, http: httpx.AsyncClient, new_id: NewId
) -> None:
    name = new_id("support")
    code, out, err = await _cli(
        capsys, "api-key", "create", "--name", name, "--scope", "read", "--scope", "grant", "--json"
    )
    assert (code, err) == (0, ""), err
    made = json.loads(out)
    assert (made["name"], made["scopes"], len(made["key"])) == (name, ["grant", "read"], 46)
    row = await pool.fetchrow("SELECT * FROM api_keys WHERE name = $1", name)
    assert row is not None
    assert bytes(row["key_hash"]) == hashlib.sha256(made["key"].encode()).digest()
    assert made["key"] not in json.dumps({k: str(v) for k, v in dict(row).items()})
    assert (await http.get("/v1/promotions", headers=bearer(made["key"]))).status_code == 200
    code, out, _ = await _cli(capsys, "api-key", "list", "--json")
    listed = next(key for key in json.loads(out) if key["name"] == name)
    assert (code, listed["scopes"], listed["revoked_at"], "key" in listed) == (0, ["grant", "read"], None, False)
    code, out, _ = await _cli(capsys, "api-key", "revoke", name)
    assert (code, f"revoked API key {name}" in out) == (0, True)
    problem(await http.get("/v1/promotions", headers=bearer(made["key"])), 401, "Unauthenticated")


@pytest.mark.usefixtures("on_database")
async def test_key_commands_refuse_bad_input_and_say_why(capsys: pytest.CaptureFixture[str], new_id: NewId) -> None:
    name = new_id("dup")
    assert (await _cli(capsys, "api-key", "create", "--name", name, "--scope", "checkout"))[0] == 0
    cases = [
        (["api-key", "create", "--name", name, "--scope", "checkout"], 1, "KeyNameTaken"),
        (["api-key", "create", "--name", new_id("k"), "--scope", "admin"], 2, "--scope: 'admin' is not a scope"),
        (["api-key", "create", "--name", "a b", "--scope", "read"], 2, "--name: 'a b' is not an id"),
        (["api-key", "create", "--name", new_id("k")], 2, "--scope"),
        (["api-key", "revoke", new_id("never")], 1, "UnknownApiKey"),
    ]
    for argv, expected, message in cases:
        code, out, err = await _cli(capsys, *argv)
        assert (code, out, err.count("\n")) == (expected, "", 1), (argv, code, out, err)
        assert message in err, (argv, err)


async def test_the_worker_role_cannot_read_the_keys(worker_pool: Pool) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await worker_pool.fetch("SELECT key_hash FROM api_keys")


async def _api(*argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(INCENTIVES),
        "api",
        *argv,
        env={**os.environ},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert out == b""
    return await process.wait(), err.decode()


async def test_the_api_command_refuses_a_bad_host_or_port_before_it_serves() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        answers = await asyncio.gather(
            _api("--port", port),
            _api("--port", "http"),
            _api("--port", "70000"),
            _api("--host", "", "--port", port),
            _api("--host", "no such host.invalid", "--port", port),
        )
    expected = [
        f"--port: cannot listen on 127.0.0.1:{port}: Address already in use",
        "--port: 'http' is not a whole number",
        "--port: '70000' is not a whole number from 1 to 65535",
        "--host: is empty",
        "--host: 'no such host.invalid' is not an address",
    ]
    for (code, err), message in zip(answers, expected, strict=True):
        assert (code, err.count("\n")) == (2, 1), err
        assert message in err, err
