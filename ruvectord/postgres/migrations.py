"""Versioned schema migrations: `sql/NNNN_name.sql`, applied once each, in order.

Two daemons starting together must not both run DDL, so the whole run holds a session advisory
lock; the second one waits, then finds nothing left to do. Each file runs in its own
transaction together with its row in `ruvector.schema_migrations`, so a failed migration leaves
no trace. An applied file whose text changed is refused: migrations are append-only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import anyio
import asyncpg

from ruvectord.errors import RuvectordError
from ruvectord.logs import get_logger
from ruvectord.postgres.pool import Database

log = get_logger("ruvectord.migrations")

# "ruvector" in ASCII; the actor lock uses the next key.
MIGRATION_LOCK_KEY = 0x7275766563746F72
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuvectordError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationReport:
    applied: tuple[str, ...]
    version: int


def available() -> list[Migration]:
    found = []
    for entry in resources.files("ruvectord.postgres").joinpath("sql").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration files are not numbered 1..n without gaps: {versions}")
    return found


async def migrate(db: Database, *, lock_wait_seconds: float = 120.0) -> MigrationReport:
    migrations = await anyio.to_thread.run_sync(available)  # file reads stay off the loop
    conn = await db.connect_single(
        settings={"statement_timeout": "0", "lock_timeout": str(int(lock_wait_seconds * 1000))}
    )
    try:
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        except asyncpg.LockNotAvailableError:
            raise MigrationError(
                f"another process has held the migration lock for over {lock_wait_seconds:.0f} s"
            ) from None
        try:
            return await _apply(conn, migrations)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()


async def _apply(conn: asyncpg.Connection, migrations: list[Migration]) -> MigrationReport:
    await conn.execute(
        """
        CREATE SCHEMA IF NOT EXISTS ruvector;
        CREATE TABLE IF NOT EXISTS ruvector.schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            checksum   text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )
    rows = await conn.fetch("SELECT version, name, checksum FROM ruvector.schema_migrations")
    done = {r["version"]: r for r in rows}
    newest_known = migrations[-1].version if migrations else 0
    if done and max(done) > newest_known:
        raise MigrationError(
            f"the database schema is at version {max(done)}, newer than this ruvectord knows "
            f"({newest_known}); upgrade ruvectord"
        )
    applied: list[str] = []
    for mig in migrations:
        row = done.get(mig.version)
        if row is not None:
            if row["checksum"] != mig.checksum:
                raise MigrationError(
                    f"migration {mig.version:04d}_{mig.name} was changed after it was applied "
                    "(checksum mismatch); migrations are append-only"
                )
            continue
        async with conn.transaction():
            await conn.execute(mig.sql)
            await conn.execute(
                "INSERT INTO ruvector.schema_migrations (version, name, checksum) "
                "VALUES ($1, $2, $3)",
                mig.version,
                mig.name,
                mig.checksum,
            )
        applied.append(f"{mig.version:04d}_{mig.name}")
        log.info("migration_applied", version=mig.version, name=mig.name)
    return MigrationReport(tuple(applied), newest_known)
