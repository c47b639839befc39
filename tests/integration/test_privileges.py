"""deploy/sql/roles.sql grants exactly enough: the daemon works, applications can use the gate."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg

from ruvectord.clock import ManualClock
from ruvectord.embedded import bin_dir
from ruvectord.healing.strategies.throttle_ingestion import ensure_guard
from ruvectord.postgres.migrations import migrate
from ruvectord.postgres.pool import Database
from ruvectord.postgres.sampler import Sampler
from ruvectord.postgres.store import Store
from ruvectord.scenarios.collection import CollectionSpec, create_collection
from tests.conftest import PgServer, options
from tests.helpers import make_config

ROLES_SQL = Path(__file__).parents[2] / "deploy" / "sql" / "roles.sql"
PSQL = bin_dir() / "psql"  # the embedded server's client works against any server version


def _as(dsn: str, user: str) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc.split("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc}"))


async def _psql(dsn: str, *variables: str) -> None:
    args = [str(PSQL), dsn, "-X", "-q", "-f", str(ROLES_SQL)]
    for v in variables:
        args += ["-v", v]
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(args, capture_output=True, text=True, timeout=60)
    )
    assert done.returncode == 0, done.stderr


async def test_roles_sql_is_enough_for_the_daemon_and_for_applications(
    pg_server: PgServer, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    dbname, daemon, app = f"rvt_priv_{tag}", f"rvd_{tag}", f"rva_{tag}"
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{dbname}"')
        await admin.execute(f'CREATE ROLE "{app}" LOGIN')
        dsn = pg_server.dsn(dbname)
        owner = await asyncpg.connect(dsn)
        try:
            spec = CollectionSpec(partitions=4, rows_per_partition=5, index=False)
            await create_collection(owner, spec)
            await owner.execute(f'GRANT INSERT ON public.items TO "{app}"')
        finally:
            await owner.close()

        await _psql(dsn, f"daemon={daemon}", "tables=public.items")
        db = await Database.connect(options(_as(dsn, daemon)))
        try:
            await migrate(db)
            config = make_config(_as(dsn, daemon), tmp_path, spec)
            cid = (await Store(db).sync_collections(config))["items"]
            snap = await Sampler(db, config.collections[0]).sample(ManualClock().now(), cid)
            assert len(snap.partitions) == 4
            assert await ensure_guard(db, "public.items", cid, lock_timeout_ms=1000) == (
                "installed now"
            )
        finally:
            await db.close()

        await _psql(dsn, f"daemon={daemon}", f"app={app}")  # again, now that the schema exists
        client = await asyncpg.connect(_as(dsn, app))
        try:
            gate = await client.fetchval("SELECT ruvector_integrity_gate('items', 'search')")
            assert '"response": "allow"' in gate
            kind = await client.fetchval(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'public.items'::regclass AND attname = 'embedding'"
            )
            values = ",".join(["0.5"] * spec.dims)
            literal = f"[{values}]" if kind.startswith("vector") else f"{{{values}}}"
            # through the guard trigger, with nothing but INSERT on the table
            await client.execute(
                f"INSERT INTO public.items (shard, embedding) VALUES (1, $1::text::{kind})",
                literal,
            )
        finally:
            await client.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        for role in (daemon, app):
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
