"""pause_maintenance and pg_cron on a throwaway PostgreSQL 15 cluster with Debian's
postgresql-15-cron (shared_preload_libraries), set up by deploy/sql/roles.sql -v cron=on.

A job that touches the collection is paused by ruvector_owner although it belongs to someone
else (cron.alter_job refuses that to any non-superuser: UPDATE (active) under a row policy)
and re-activated exactly by rollback; other jobs are never touched. Skips, saying so, where
the binaries or the extension are missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from ruvectord.embedded import SERVICE_USER, EmbeddedPostgres
from ruvectord.healing.problems import MaintenanceContention
from ruvectord.healing.strategies.pause_maintenance import PauseMaintenance
from ruvectord.postgres.migrations import migrate
from ruvectord.postgres.pool import Database
from ruvectord.postgres.store import Store
from ruvectord.scenarios.collection import CollectionSpec, create_collection
from tests.conftest import options
from tests.helpers import make_config
from tests.maintenance import context
from tests.roles import ROLES_SQL, as_role, psql_file

PG15 = Path("/usr/lib/postgresql/15/bin")
CRON_SO = Path("/usr/lib/postgresql/15/lib/pg_cron.so")
SPEC = CollectionSpec(partitions=2, rows_per_partition=10, index=False)


@dataclass
class Pg15(EmbeddedPostgres):
    """The same lifecycle as the embedded server, with Debian's PostgreSQL 15 binaries."""

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()
        self.bin = PG15
        self._run_as = SERVICE_USER if os.geteuid() == 0 else None
        self.started_here = False


@pytest.fixture
def cron_server(server_root: Path) -> Iterator[str]:
    if not (PG15 / "initdb").exists() or not CRON_SO.exists():
        pytest.skip(f"needs {PG15}/initdb and {CRON_SO} (apt-get install postgresql-15-cron)")
    server = Pg15(
        server_root / "pg15",
        version=15,
        settings={
            "shared_preload_libraries": "pg_cron",
            "cron.database_name": "postgres",
            "cron.use_background_workers": "on",  # no TCP: jobs run in background workers
            "max_worker_processes": "16",
        },
    )
    try:
        yield server.start()
    finally:
        server.destroy()
        shutil.rmtree(server_root / "pg15", ignore_errors=True)


async def test_cron_jobs_of_the_collection_are_paused_and_resumed_exactly(
    cron_server: str, state_dir: Path
) -> None:
    admin = await asyncpg.connect(cron_server)
    try:
        db = await Database.connect(options(cron_server))
        try:
            await migrate(db)
        finally:
            await db.close()
        await admin.execute("CREATE EXTENSION pg_cron")
        await create_collection(admin, SPEC)
        await admin.execute("CREATE TABLE public.bystander (id int)")
        await admin.execute("CREATE ROLE app_dba LOGIN")
        await admin.execute("CREATE ROLE rvd LOGIN")
        for r in await admin.fetch(
            "SELECT relid::regclass::text AS rel FROM pg_partition_tree('public.items')"
        ):
            await admin.execute(f"ALTER TABLE {r['rel']} OWNER TO app_dba")
        # someone else's jobs: one on the collection, one on another table, one paused already
        touching = await admin.fetchval(
            "SELECT cron.schedule_in_database('items-vacuum', '0 3 * * *', "
            "'VACUUM (ANALYZE) public.items_p1', 'postgres', 'app_dba', true)"
        )
        other = await admin.fetchval(
            "SELECT cron.schedule_in_database('other', '0 4 * * *', 'VACUUM public.bystander', "
            "'postgres', 'app_dba', true)"
        )
        inactive = await admin.fetchval(
            "SELECT cron.schedule_in_database('items-idle', '0 5 * * *', "
            "'ANALYZE \"items\"', 'postgres', 'app_dba', false)"
        )
        await psql_file(cron_server, ROLES_SQL, "daemon=rvd", "tables=public.items", "cron=on")
        daemon_dsn = as_role(cron_server, "rvd")
        db = await Database.connect(options(daemon_dsn))
        try:
            config = make_config(daemon_dsn, state_dir, SPEC)
            cid = (await Store(db).sync_collections(config))["items"]
            jobs = await db.fetch("SELECT jobid, active FROM ruvector.cron_jobs($1)", cid)
            assert [(r["jobid"], r["active"]) for r in jobs] == [
                (touching, True),
                (inactive, False),
            ]
            strategy = PauseMaintenance()
            ctx = context(db, config, cid, MaintenanceContention(("cron",), (), 1), SPEC)
            ctx.rollback_data = await strategy.plan(ctx)
            assert ctx.rollback_data["targets"] == [f"cron:{touching}"]
            result = await strategy.execute(ctx)
            assert result.success, result
            assert result.metadata["paused"] == [f"pg_cron job {touching} (items-vacuum) paused"]
            state = {
                r["jobid"]: r["active"]
                for r in await admin.fetch("SELECT jobid, active FROM cron.job")
            }
            assert state == {touching: False, other: True, inactive: False}
            # the daemon itself can do nothing to cron
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await db.execute("SELECT cron.alter_job($1, active := true)", other)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await db.fetchval("SELECT ruvector.cron_set_active($1, $2, false)", cid, other)
            # nor can ruvector_owner itself change anything of a job but `active`
            await admin.execute("SET ROLE ruvector_owner")
            for sql in (
                f"UPDATE cron.job SET command = 'SELECT 1' WHERE jobid = {touching}",
                f"UPDATE cron.job SET username = 'postgres' WHERE jobid = {touching}",
                f"SELECT cron.alter_job({touching}, command := 'SELECT 1')",
                f"SELECT cron.unschedule({touching})",
            ):
                with pytest.raises(asyncpg.PostgresError):
                    async with admin.transaction():
                        await admin.execute(sql)
            await admin.execute("RESET ROLE")

            await strategy.rollback(ctx)
            state = {
                r["jobid"]: r["active"]
                for r in await admin.fetch("SELECT jobid, active FROM cron.job")
            }
            assert state == {touching: True, other: True, inactive: False}
            command = await admin.fetchval(
                "SELECT command FROM cron.job WHERE jobid = $1", touching
            )
            assert command == "VACUUM (ANALYZE) public.items_p1"
        finally:
            await db.close()
    finally:
        await admin.close()
