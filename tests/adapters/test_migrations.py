"""Migrations: a fresh database, a no-op re-run, two processes at once, and an edited migration."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

import client
from incentives.adapters.db import create_pool
from incentives.adapters.migrations import (
    Migration,
    MigrationError,
    SchemaBehind,
    load_migrations,
    migrate,
    require_current_schema,
)
from incentives.devstack.servers import EmbeddedPostgres


async def fresh_database(postgres: EmbeddedPostgres) -> str:
    name = f"migrate_{uuid.uuid4().hex[:10]}"
    await postgres.create_database(name)
    return postgres.url(name)


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row["tablename"] for row in rows}
    finally:
        await conn.close()


class TestMigrate:
    async def test_a_fresh_database_gets_every_table_and_a_rerun_is_a_no_op(self, postgres: EmbeddedPostgres) -> None:
        url = await fresh_database(postgres)
        pool = await create_pool(url, max_size=2)
        try:
            applied = await migrate(pool)
            assert [m.version for m in applied] == [m.version for m in load_migrations()]
            assert await migrate(pool) == []
            recorded = await pool.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
            assert [(r["version"], r["checksum"]) for r in recorded] == [(m.version, m.checksum) for m in applied]
        finally:
            await pool.close()
        assert {"lots", "ledger_entries", "redemptions", "reversals", "outbox", "schema_migrations"} <= await tables(
            url
        )

    async def test_two_processes_migrating_at_once_apply_each_migration_once(
        self, postgres: EmbeddedPostgres, project_root: Path
    ) -> None:
        url = await fresh_database(postgres)
        script = (
            "import asyncio, sys\n"
            "from incentives.adapters.db import create_pool\n"
            "from incentives.adapters.migrations import migrate\n"
            "async def main():\n"
            "    pool = await create_pool(sys.argv[1], max_size=1)\n"
            "    print(len(await migrate(pool)))\n"
            "    await pool.close()\n"
            "asyncio.run(main())\n"
        )
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", script, url, cwd=project_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for _ in range(2)
        ]
        outputs = [await process.communicate() for process in processes]
        assert [p.returncode for p in processes] == [0, 0], outputs
        applied_counts = sorted(int(out.decode()) for out, _ in outputs)
        assert applied_counts == [0, len(load_migrations())]
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(load_migrations())
        finally:
            await conn.close()

    async def test_an_applied_migration_that_changed_is_a_clear_error(self, postgres: EmbeddedPostgres) -> None:
        url = await fresh_database(postgres)
        pool = await create_pool(url, max_size=1)
        try:
            await migrate(pool, [Migration(1, "first", "CREATE TABLE t (id int)")])
            with pytest.raises(MigrationError, match="0001_first changed after it was applied"):
                await migrate(pool, [Migration(1, "first", "CREATE TABLE t (id bigint)")])
        finally:
            await pool.close()

    async def test_a_failing_migration_leaves_nothing_behind(self, postgres: EmbeddedPostgres) -> None:
        url = await fresh_database(postgres)
        pool = await create_pool(url, max_size=1)
        try:
            with pytest.raises(asyncpg.PostgresSyntaxError):
                await migrate(pool, [Migration(1, "broken", "CREATE TABLE half (id int); CREATE TABLEX oops")])
            assert await pool.fetchval("SELECT count(*) FROM schema_migrations") == 0
            assert await pool.fetchval("SELECT to_regclass('half')") is None
        finally:
            await pool.close()


class TestReaders:
    async def test_a_reading_command_never_migrates_and_says_what_to_run(
        self, postgres: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        url = await fresh_database(postgres)
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
        for command in (["wallet", "alice"], ["promotion", "status", "p1"], ["reconcile"]):
            code = await asyncio.to_thread(client.run, command)
            err = capsys.readouterr().err
            assert code == 3, (command, err)
            more = len(load_migrations()) - 1
            assert f"schema is behind this code: migration 0001_ledger and {more} more is not applied" in err, err
            assert "run `incentives dev up` or start a worker" in err
        assert await tables(url) == set()  # nothing created, not even the migrations' own table

    async def test_a_reader_of_a_current_schema_connects(self, postgres: EmbeddedPostgres) -> None:
        url = await fresh_database(postgres)
        pool = await create_pool(url, max_size=1)
        try:
            await migrate(pool)
            await require_current_schema(pool)
            behind = [*load_migrations(), Migration(9999, "later", "SELECT 1")]
            with pytest.raises(SchemaBehind, match="migration 9999_later is not applied"):
                await require_current_schema(pool, behind)
        finally:
            await pool.close()
