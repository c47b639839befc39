"""Versioned schema migrations: `sql/NNNN_name.sql`, applied once each, in order.

Two daemons starting together must not both run DDL, so the whole run holds a session advisory
lock; the second one waits, then finds nothing left to do. Each file runs in its own
transaction together with its row in `ruvector.schema_migrations`, so a failed migration leaves
no trace. An applied file whose text changed is refused: migrations are append-only.

Every object belongs to `ruvector_owner`, a NOLOGIN role: an administrator's connection (a
superuser, or a member of that role) first makes sure the roles and the schema exist, then
runs each file under `SET ROLE ruvector_owner`. The daemon's own role cannot do either, which
is the point: it must never own what other roles' sessions execute. A schema from before
this model (owned by the daemon's role) is handed over to the owner on the way.
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

OWNER = "ruvector_owner"
# group roles the migrations grant to (deploy/sql/roles.sql makes login roles members)
GROUPS = ("ruvector_daemon", "ruvector_reader", "ruvector_operator")
HOW_TO_MIGRATE = (
    "run `ruvectord migrate --admin-dsn postgresql://ADMIN@HOST/DB` as a superuser or a "
    f"member of {OWNER} (see deploy/sql/roles.sql)"
)


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
            await _bootstrap(conn)
            await conn.execute(f"SET ROLE {OWNER}")
            return await _apply(conn, migrations)
        finally:
            await conn.execute("RESET ROLE")
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()


async def schema_version(db: Database) -> int:
    """The applied schema version; 0 for a database that was never migrated."""
    if not await db.fetchval("SELECT to_regclass('ruvector.schema_migrations') IS NOT NULL"):
        return 0
    return int(
        await db.fetchval("SELECT coalesce(max(version), 0) FROM ruvector.schema_migrations")
    )


async def ensure_current(db: Database, *, may_migrate: bool) -> MigrationReport:
    """Start-up check: the schema is what this build expects, migrating first if allowed.

    A least-privilege daemon role cannot migrate; when the schema is current that is fine,
    and when it is not, the error says who must run what.
    """
    newest = len(await anyio.to_thread.run_sync(available))
    version = await schema_version(db)
    if version == newest:
        return MigrationReport((), version)
    if version > newest:
        raise MigrationError(
            f"the database schema is at version {version}, newer than this ruvectord knows "
            f"({newest}); upgrade ruvectord"
        )
    if not may_migrate:
        raise MigrationError(
            f"the database schema is at version {version}, this ruvectord needs {newest} "
            f"(database.migrate_on_start is false): {HOW_TO_MIGRATE}"
        )
    return await migrate(db)


async def _bootstrap(conn: asyncpg.Connection) -> None:
    """As the administrator: the roles, the schema and its owner, before any file runs."""
    who = await conn.fetchval("SELECT current_user")
    for role in (OWNER, *GROUPS):
        if await conn.fetchval("SELECT to_regrole($1) IS NULL", role):
            try:
                await conn.execute(f"CREATE ROLE {role} NOLOGIN")
            except asyncpg.DuplicateObjectError:
                pass  # another database's migration created it just now
            except asyncpg.InsufficientPrivilegeError:
                raise MigrationError(
                    f"role {role} does not exist and {who} may not create roles: {HOW_TO_MIGRATE}"
                ) from None
    for member in ("ruvector_daemon", "ruvector_operator"):
        # readers' rights come with both (the CLI's status and history as the daemon's role)
        if not await conn.fetchval("SELECT pg_has_role($1, 'ruvector_reader', 'MEMBER')", member):
            try:
                await conn.execute(f"GRANT ruvector_reader TO {member}")
            except asyncpg.InsufficientPrivilegeError:
                raise MigrationError(
                    f"{who} may not grant ruvector_reader to {member}: {HOW_TO_MIGRATE}"
                ) from None
    if not await conn.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", OWNER):
        raise MigrationError(
            f"{who} may not act as {OWNER}, which runs the migrations: {HOW_TO_MIGRATE}"
        )
    owner = await conn.fetchval(
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'ruvector'"
    )
    try:
        if owner is None:
            await conn.execute(f"CREATE SCHEMA ruvector AUTHORIZATION {OWNER}")
        elif owner != OWNER:
            await conn.execute(_TAKE_OVER)
            log.warning(
                "schema_ownership_transferred",
                previous_owner=owner,
                owner=OWNER,
                msg=f"schema ruvector and its objects now belong to {OWNER} (was {owner}); "
                "run deploy/sql/roles.sql again to drop the old grants",
            )
        if not await conn.fetchval("SELECT has_schema_privilege($1, 'public', 'CREATE')", OWNER):
            # the public.ruvector_* functions live where callers find them without a search_path
            await conn.execute(f"GRANT CREATE ON SCHEMA public TO {OWNER}")
        if not await conn.fetchval(
            "SELECT has_database_privilege($1, current_database(), 'CREATE')", OWNER
        ):
            # migration 0001 says CREATE SCHEMA IF NOT EXISTS, which checks this privilege
            await conn.execute(f'GRANT CREATE ON DATABASE "{await _dbname(conn)}" TO {OWNER}')
    except asyncpg.InsufficientPrivilegeError as exc:
        raise MigrationError(
            f"{who} cannot prepare schema ruvector ({exc}): {HOW_TO_MIGRATE}"
        ) from None


async def _dbname(conn: asyncpg.Connection) -> str:
    name: str = await conn.fetchval("SELECT current_database()")
    return name.replace('"', '""')


# Hands a schema made under the old model (owned by the daemon's role) to the owner role.
# Sequences that belong to a column (identity, serial) follow their table.
_TAKE_OVER = f"""
DO $$
DECLARE
    r record;
BEGIN
    ALTER SCHEMA ruvector OWNER TO {OWNER};
    FOR r IN
        SELECT c.oid::regclass AS name
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'ruvector' AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
           AND c.relowner <> '{OWNER}'::regrole
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                             AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO {OWNER}', r.name);
    END LOOP;
    FOR r IN
        SELECT p.oid::regprocedure AS sig
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE (n.nspname = 'ruvector' OR (n.nspname = 'public' AND p.proname LIKE 'ruvector\\_%'))
           AND p.proowner <> '{OWNER}'::regrole
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO {OWNER}', r.sig);
    END LOOP;
END
$$
"""


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
