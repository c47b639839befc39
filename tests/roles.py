"""A database set up the way deploy/sql/roles.sql sets one up, with a role for each party.

Shared by the privilege and security tests: an administrator migrates, the DBA runs
roles.sql, and each test then connects as the daemon, an operator, a reader or an
application role that may only INSERT into the collection.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg

from ruvectord.embedded import bin_dir
from ruvectord.postgres.migrations import migrate
from ruvectord.postgres.pool import Database
from ruvectord.scenarios.collection import CollectionSpec, create_collection
from tests.conftest import PgServer, options

ROLES_SQL = Path(__file__).parents[1] / "deploy" / "sql" / "roles.sql"
PSQL = bin_dir() / "psql"  # the embedded server's client works against any server version


def as_role(dsn: str, user: str) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc.split("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc}"))


async def psql_file(dsn: str, path: Path, *variables: str) -> None:
    args = [str(PSQL), dsn, "-X", "-q", "-f", str(path)]
    for v in variables:
        args += ["-v", v]
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(args, capture_output=True, text=True, timeout=60)
    )
    assert done.returncode == 0, done.stderr


@dataclass
class Parties:
    dsn: str  # as the administrator (superuser)
    daemon: str  # role names
    operator: str
    reader: str
    app: str
    spec: CollectionSpec

    def as_(self, role: str) -> str:
        return as_role(self.dsn, role)


@asynccontextmanager
async def parties(
    pg_server: PgServer, spec: CollectionSpec | None = None, *extra: str
) -> AsyncIterator[Parties]:
    """`extra`: more roles.sql variables, e.g. "placement=public.items:shard:id"."""
    spec = spec or CollectionSpec(partitions=4, rows_per_partition=5, index=False)
    tag = uuid.uuid4().hex[:8]
    dbname = f"rvt_sec_{tag}"
    roles = {k: f"rv{k[0]}_{tag}" for k in ("daemon", "operator", "reader", "app")}
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{dbname}"')
        for key in ("operator", "reader", "app"):
            await admin.execute(f'CREATE ROLE "{roles[key]}" LOGIN')
        dsn = pg_server.dsn(dbname)
        db = await Database.connect(options(dsn))
        try:
            await migrate(db)  # as the administrator
        finally:
            await db.close()
        owner = await asyncpg.connect(dsn)
        try:
            await create_collection(owner, spec)
            # INSERT on the table and each partition (an application may write either)
            for part in await owner.fetch(
                "SELECT relid::regclass::text AS rel FROM pg_partition_tree($1)", spec.qualified
            ):
                await owner.execute(f'GRANT INSERT ON {part["rel"]} TO "{roles["app"]}"')
            # the application's own schema, where it can create anything it likes
            await owner.execute(f'CREATE SCHEMA "app_{tag}" AUTHORIZATION "{roles["app"]}"')
        finally:
            await owner.close()
        await psql_file(
            dsn,
            ROLES_SQL,
            f"daemon={roles['daemon']}",
            f"tables={spec.qualified}",
            f"operators={roles['operator']}",
            f"readers={roles['reader']}",
            *extra,
        )
        yield Parties(dsn, roles["daemon"], roles["operator"], roles["reader"], roles["app"], spec)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        for role in roles.values():
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def insert_one(conn: asyncpg.Connection, spec: CollectionSpec, *, table: str = "") -> None:
    """One row, as an application with nothing but INSERT would write it."""
    kind = await conn.fetchval(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = $1::regclass AND attname = 'embedding'",
        spec.qualified,
    )
    values = ",".join(["0.5"] * spec.dims)
    literal = f"[{values}]" if kind.startswith("vector") else f"{{{values}}}"
    await conn.execute(
        f"INSERT INTO {table or spec.qualified} (shard, embedding) VALUES (1, $1::text::{kind})",
        literal,
    )
