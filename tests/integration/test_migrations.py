"""Migrations on a real server: idempotent, safe under concurrency, append-only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from ruvectord.errors import DatabaseUnavailable
from ruvectord.postgres.migrations import MigrationError, available, migrate
from ruvectord.postgres.pool import Database
from tests.conftest import options


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
