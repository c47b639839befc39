"""Migrations on a real server: idempotent, safe under concurrency, append-only."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import asyncpg
import pytest

from ruvectord.errors import DatabaseUnavailable
from ruvectord.postgres.migrations import MigrationError, available, migrate
from ruvectord.postgres.pool import Database
from tests.conftest import PgServer, options
from tests.roles import as_role


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruvectord.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_applying_twice_is_a_no_op(empty_dsn: str) -> None:
    db = await Database.connect(options(empty_dsn))
    try:
        first = await migrate(db)
        assert len(first.applied) == len(await anyio.to_thread.run_sync(available))
        tables = await db.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'ruvector'")
        second = await migrate(db)
        assert second.applied == ()
        assert second.version == first.version
        assert (
            await db.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'ruvector'")
            == tables
        )
    finally:
        await db.close()


async def test_two_processes_migrating_at_once_both_succeed(empty_dsn: str, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    await anyio.Path(cfg).write_text("logging: {format: json}\n")

    results: list[subprocess.CompletedProcess[str]] = []

    async def one() -> None:
        results.append(
            await anyio.to_thread.run_sync(_cli, "migrate", "-c", str(cfg), "--dsn", empty_dsn)
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        tg.start_soon(one)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    outputs = sorted(r.stdout for r in results)
    assert outputs[0].startswith("applied 0001_schema")
    assert outputs[1].startswith("nothing to do")
    db = await Database.connect(options(empty_dsn))
    try:
        versions = [
            r["version"]
            for r in await db.fetch(
                "SELECT version FROM ruvector.schema_migrations ORDER BY version"
            )
        ]
        count = len(await anyio.to_thread.run_sync(available))
        assert versions == list(range(1, count + 1))
    finally:
        await db.close()


async def test_a_changed_migration_is_refused(db: Database) -> None:
    await db.execute("UPDATE ruvector.schema_migrations SET checksum = 'x' WHERE version = 1")
    with pytest.raises(MigrationError, match="0001_schema was changed after it was applied"):
        await migrate(db)


async def test_a_newer_schema_is_refused(db: Database) -> None:
    await db.execute(
        "INSERT INTO ruvector.schema_migrations (version, name, checksum) VALUES (999, 'x', 'x')"
    )
    with pytest.raises(MigrationError, match="schema is at version 999, newer than"):
        await migrate(db)


async def test_unreachable_database_is_a_clear_error_without_password() -> None:
    opts = options("postgresql://ruv:s3cret@127.0.0.1:1/nowhere")
    with pytest.raises(DatabaseUnavailable) as exc:
        await Database.connect(opts)
    message = str(exc.value)
    assert "cannot reach PostgreSQL at 127.0.0.1:1/nowhere after 2 attempts" in message
    assert "s3cret" not in message


def test_cli_reports_a_dead_database(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("database:\n  connect_retries: 0\n")
    result = _cli("migrate", "-c", str(cfg), "--dsn", "postgresql://u:hunter2@127.0.0.1:1/db")
    assert result.returncode == 1
    assert "cannot reach PostgreSQL at 127.0.0.1:1/db" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


async def test_an_old_schema_owned_by_the_daemon_role_is_taken_over(
    pg_server: PgServer, empty_dsn: str
) -> None:
    """Up to schema v3 the daemon's role owned everything, so it could replace the trigger
    function that runs in every writer's session (a way to superuser). Migrating hands it
    all to ruvector_owner, and the daemon's role can no longer."""
    legacy = f"rvl_{uuid.uuid4().hex[:8]}"
    dbname = urlsplit(empty_dsn).path.lstrip("/")
    admin = await asyncpg.connect(empty_dsn)
    try:
        await admin.execute(f'CREATE ROLE "{legacy}" LOGIN')
        await admin.execute(f'GRANT CREATE ON DATABASE "{dbname}" TO "{legacy}"')
        await admin.execute(f'GRANT CREATE ON SCHEMA public TO "{legacy}"')
    finally:
        await admin.close()
    try:
        old = await asyncpg.connect(as_role(empty_dsn, legacy))
        try:  # what the version-3 daemon did with its own rights
            await old.execute(
                "CREATE SCHEMA ruvector; CREATE TABLE ruvector.schema_migrations (version "
                "integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for mig in (await anyio.to_thread.run_sync(available))[:3]:
                await old.execute(mig.sql)
                await old.execute(
                    "INSERT INTO ruvector.schema_migrations VALUES ($1, $2, $3)",
                    mig.version,
                    mig.name,
                    mig.checksum,
                )
            # the hole, as it was
            await old.execute("ALTER FUNCTION ruvector.throttle_guard() SET work_mem = '64kB'")
        finally:
            await old.close()
        db = await Database.connect(options(empty_dsn))
        try:
            report = await migrate(db)  # as the administrator
        finally:
            await db.close()
        assert report.applied[0].startswith("0004_")
        old = await asyncpg.connect(as_role(empty_dsn, legacy))
        try:
            for sql in (
                "ALTER FUNCTION ruvector.throttle_guard() SET work_mem = '128kB'",
                "CREATE OR REPLACE FUNCTION ruvector.throttle_guard() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
                "DROP TABLE ruvector.throttles",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await old.execute(sql)
            owners = await old.fetch(
                "SELECT DISTINCT c.relowner::regrole::text AS o FROM pg_class c JOIN "
                "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'ruvector'"
            )
            assert [r["o"] for r in owners] == ["ruvector_owner"]
        finally:
            await old.close()
    finally:
        admin = await asyncpg.connect(empty_dsn)
        try:
            await admin.execute(f'DROP OWNED BY "{legacy}"')
        finally:
            await admin.close()
        admin = await asyncpg.connect(pg_server.admin_dsn)
        try:
            await admin.execute(f'DROP ROLE IF EXISTS "{legacy}"')
        finally:
            await admin.close()
