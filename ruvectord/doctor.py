"""`ruvectord doctor`: an online preflight of everything `run` relies on, one line per check.

Run it on the daemon's host, as the daemon's user (`sudo -u ruvectord ruvectord doctor`):
it connects with the daemon's DSN (or --dsn), so the privileges it checks are those of the
role the daemon logs in as, and it reads the signing key and binds the metrics port the way
the daemon would -- without creating or keeping anything.

Each check is `ok`, `warn` (works, but look) or `FAIL` (run would fail, or the security
model is broken), with what to do. The checks:

  config               the file (or the defaults with --dsn) and how many collections
  database reachable   connects; PostgreSQL >= 15; a standby (warn: never acts there)
  schema current       ruvector.schema_migrations against the migrations this build has
  pgvector             installed, and its version (warn when missing: no vector indexes)
  collection NAME      the table, the vector column and the partitions, found by the
                       sampler's identifier rules (warn if the column is not a vector type)
  daemon role grants   a member of ruvector_daemon and pg_monitor (deploy/sql/roles.sql)
  daemon role owns nothing  no superuser, no CREATEROLE, not ruvector_owner, owns no
                       ruvector object and no collection table
  daemon role cannot create  no CREATE on the database or schema public
  daemon role cannot change collections  no TRIGGER or UPDATE on a collection table or
                       partition (the guard goes through ruvector_owner)
  throttle guard grants  ruvector_owner holds TRIGGER on each table and partition
  metrics port         metrics.listen_address can be bound (or a ruvectord answers there)
  signing key          readable, mode 0600, an Ed25519 PEM key (missing: warn, run makes it)
"""

from __future__ import annotations

import errno
import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from ruvectord.config import CollectionConfig, Config, MetricsConfig
from ruvectord.errors import RuvectordError, UserError
from ruvectord.identifiers import quote
from ruvectord.postgres.pool import ConnectOptions, Database

ROLES_SQL = "deploy/sql/roles.sql"
MIN_SERVER_VERSION = 150000
VECTOR_TYPES = frozenset({"vector", "halfvec", "sparsevec"})


class Level(Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    level: Level
    what: str
    detail: str


def ok(what: str, detail: str) -> Check:
    return Check(Level.OK, what, detail)


def warn(what: str, detail: str) -> Check:
    return Check(Level.WARN, what, detail)


def fail(what: str, detail: str) -> Check:
    return Check(Level.FAIL, what, detail)


# --------------------------------------------------------------------------- collections


@dataclass(frozen=True)
class CollectionFound:
    """A configured collection as the catalog has it (what the sampler will find)."""

    name: str
    table: str
    problem: str | None = None
    partitioned: bool = False
    relations: tuple[str, ...] = ()  # the table and every partition below it, as SQL names
    leaves: int = 0
    vector_type: str | None = None

    @property
    def is_vector(self) -> bool:
        base = (self.vector_type or "").split("(", 1)[0].rsplit(".", 1)[-1]
        return base in VECTOR_TYPES


_ROOT = """
    SELECT cl.oid, cl.relkind::text AS relkind,
           (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             WHERE a.attrelid = cl.oid AND a.attname = $3 AND NOT a.attisdropped
               AND a.attnum > 0) AS vector_type,
           (SELECT a.attnum FROM pg_attribute a
             WHERE a.attrelid = cl.oid AND a.attname = $4 AND NOT a.attisdropped
               AND a.attnum > 0) AS tenant_attnum
      FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace
     WHERE n.nspname = $1 AND cl.relname = $2
"""
# partitions from pg_inherits, as the sampler finds them (no lock on the collection)
_TREE = """
    WITH RECURSIVE tree(relid) AS (
        SELECT $1::oid
        UNION ALL
        SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid
    )
    SELECT cl.oid, format('%I.%I', n.nspname, cl.relname) AS name, cl.relkind::text AS relkind
      FROM tree JOIN pg_class cl ON cl.oid = tree.relid
      JOIN pg_namespace n ON n.oid = cl.relnamespace
     ORDER BY cl.oid = $1 DESC, 2
"""


async def inspect_collection(db: Database, c: CollectionConfig) -> CollectionFound:
    """Find the collection's table by PostgreSQL's identifier rules (config.py's
    schema_name/table_name/vector_attname, the sampler's), with the same verdicts."""
    root = await db.fetchrow(_ROOT, c.schema_name, c.table_name, c.vector_attname, c.tenant_attname)
    if root is None:
        return CollectionFound(c.name, c.table, f"table {c.table} does not exist")
    if root["relkind"] not in ("r", "p"):
        return CollectionFound(
            c.name, c.table, f"{c.table} is not a table (relkind {root['relkind']})"
        )
    if root["vector_type"] is None:
        return CollectionFound(
            c.name, c.table, f"column {c.vector_column!r} does not exist in {c.table}"
        )
    if c.tenant_column and root["tenant_attnum"] is None:
        return CollectionFound(
            c.name, c.table, f"column {c.tenant_column!r} does not exist in {c.table}"
        )
    rows = await db.fetch(_TREE, root["oid"])
    relations = tuple(r["name"] for r in rows if r["relkind"] in ("r", "p"))
    leaves = sum(1 for r in rows if r["relkind"] == "r")
    problem = None
    if leaves == 0:
        problem = f"{c.table} is partitioned but has no partitions"
    return CollectionFound(
        c.name,
        c.table,
        problem,
        root["relkind"] == "p",
        relations,
        leaves,
        root["vector_type"],
    )


def _collection_check(found: CollectionFound, c: CollectionConfig) -> Check:
    what = f"collection {c.name}"
    if found.problem:
        return fail(what, f"{found.problem} (collections: {c.name} in the config)")
    shape = f"{found.leaves} partitions" if found.partitioned else "a plain table"
    detail = f"{c.table}, {shape}, {c.vector_column} {found.vector_type}"
    if not found.is_vector:
        return warn(
            what,
            f"{detail}: not a pgvector type, so no vector index (HNSW, IVFFlat) is seen",
        )
    return ok(what, detail)


async def _collections_in_database(db: Database) -> list[CollectionConfig]:
    """With no config file: the collections the daemon registered (still configured)."""
    if not await db.fetchval("SELECT to_regclass('ruvector.collections') IS NOT NULL"):
        return []
    try:
        rows = await db.fetch(
            "SELECT name, table_schema, table_name, vector_column, tenant_column "
            "FROM ruvector.collections WHERE configured ORDER BY name"
        )
    except asyncpg.InsufficientPrivilegeError:
        return []
    return [
        CollectionConfig(
            name=r["name"],
            table=f"{quote(r['table_schema'])}.{quote(r['table_name'])}",
            vector_column=quote(r["vector_column"]),
            tenant_column=None if r["tenant_column"] is None else quote(r["tenant_column"]),
        )
        for r in rows
    ]


# --------------------------------------------------------------------------- the report


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.checks if c.level is Level.FAIL)

    @property
    def warnings(self) -> int:
        return sum(1 for c in self.checks if c.level is Level.WARN)

    def add(self, *checks: Check) -> None:
        self.checks.extend(checks)


async def run_checks(
    config: Config, *, config_source: Path | None, dsn: str | None = None
) -> Report:
    report = Report()
    n = len(config.collections)
    where = str(config_source) if config_source else "no config file: the defaults and --dsn"
    report.add(ok("config", f"{where}; {n} collection{'s' if n != 1 else ''}"))
    db = await _connect(config, dsn, report)
    if db is not None:
        try:
            await _database_checks(db, config, report)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await db.close()
    report.add(await anyio.to_thread.run_sync(check_metrics_port, config.metrics))
    report.add(await anyio.to_thread.run_sync(check_signing_key, config.signing_key_path))
    return report


async def _connect(config: Config, dsn: str | None, report: Report) -> Database | None:
    what = "database reachable"
    try:
        options = ConnectOptions.from_config(config.database, dsn)
    except UserError as exc:
        report.add(fail(what, str(exc)))
        return None
    # a preflight answers quickly: one retry at most, a small pool
    options = ConnectOptions(
        dsn=options.dsn,
        password=options.password,
        statement_timeout=options.statement_timeout,
        connect_timeout=min(options.connect_timeout, 10.0),
        retries=min(options.retries, 1),
        min_size=1,
        max_size=2,
    )
    try:
        db = await Database.connect(options)
        row = await db.fetchrow(
            "SELECT current_setting('server_version') AS version, "
            "current_setting('server_version_num')::int AS num, current_user AS role, "
            "pg_is_in_recovery() AS standby"
        )
    except (RuvectordError, asyncpg.PostgresError, OSError) as exc:
        report.add(fail(what, f"{exc}"))
        return None
    assert row is not None
    detail = f"PostgreSQL {row['version']} at {db.target} as {row['role']}"
    if row["num"] < MIN_SERVER_VERSION:
        report.add(fail(what, f"{detail}: ruvectord needs PostgreSQL 15 or newer"))
    elif row["standby"]:
        report.add(warn(what, f"{detail}: a standby, where the daemon monitors but never acts"))
    else:
        report.add(ok(what, detail))
    return db


async def _database_checks(db: Database, config: Config, report: Report) -> None:
    report.add(await _guarded("schema current", check_schema(db, config)))
    collections = list(config.collections) or await _collections_in_database(db)
    found = []
    for c in collections:
        try:
            found.append(await inspect_collection(db, c))
        except (asyncpg.PostgresError, RuvectordError) as exc:
            found.append(CollectionFound(c.name, c.table, f"could not look it up: {exc}"))
    report.add(await _guarded("pgvector", check_pgvector(db, found)))
    for f, c in zip(found, collections, strict=True):
        report.add(_collection_check(f, c))
    usable = [f for f in found if not f.problem]  # a broken collection fails its own line
    relations = sorted({r for f in usable for r in f.relations})
    tables = ",".join(f.table for f in usable)
    try:
        report.add(*await check_daemon_role(db, relations))
    except (asyncpg.PostgresError, RuvectordError) as exc:
        report.add(fail("daemon role grants", f"could not check: {exc}"))
    report.add(
        await _guarded("throttle guard grants", check_guard_grants(db, config, relations, tables))
    )


async def _guarded(what: str, check: Coroutine[Any, Any, Check]) -> Check:
    """A check whose query fails is a failed check, and the others still run."""
    try:
        return await check
    except (asyncpg.PostgresError, RuvectordError) as exc:
        return fail(what, f"could not check: {exc}".replace("\n", " "))


async def check_schema(db: Database, config: Config) -> Check:
    from ruvectord.postgres.migrations import HOW_TO_MIGRATE, OWNER, available, schema_version

    what = "schema current"
    newest = len(await anyio.to_thread.run_sync(available))
    usable = await db.fetchval(
        "SELECT NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'ruvector') "
        "OR has_schema_privilege('ruvector', 'USAGE')"
    )
    try:
        if not usable:
            raise asyncpg.InsufficientPrivilegeError("permission denied for schema ruvector")
        version = await schema_version(db)
    except asyncpg.InsufficientPrivilegeError as exc:
        return fail(
            what,
            f"cannot read the ruvector schema ({exc}): grant ruvector_daemon to this role "
            f"(psql -v daemon=ROLE -f {ROLES_SQL})",
        )
    if version == newest:
        return ok(what, f"ruvector schema version {version}, as this ruvectord expects")
    if version > newest:
        return fail(
            what,
            f"ruvector schema version {version} is newer than this ruvectord knows "
            f"({newest}): upgrade ruvectord",
        )
    can_migrate = await db.fetchval(
        "SELECT r.rolsuper OR (to_regrole($1) IS NOT NULL AND pg_has_role(current_user, $1, "
        "'MEMBER')) FROM pg_roles r WHERE r.rolname = current_user",
        OWNER,
    )
    have = "no ruvector schema" if version == 0 else f"ruvector schema version {version}"
    if can_migrate and config.database.migrate_on_start:
        return warn(
            what, f"{have}, this ruvectord needs {newest}: run will migrate at start as this role"
        )
    return fail(what, f"{have}, this ruvectord needs {newest}: {HOW_TO_MIGRATE}")


async def check_pgvector(db: Database, found: Sequence[CollectionFound]) -> Check:
    what = "pgvector"
    row = await db.fetchrow(
        "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS installed, "
        "(SELECT default_version FROM pg_available_extensions WHERE name = 'vector') "
        "AS available"
    )
    assert row is not None
    installed, available = row["installed"], row["available"]
    if installed is None:
        how = (
            f"CREATE EXTENSION vector (version {available} is available)"
            if available
            else "the server has no pgvector package"
        )
        return warn(what, f"not installed in this database: no vector indexes to watch; {how}")
    detail = f"pgvector {installed}"
    if available and _version(available) > _version(installed):
        detail += f" ({available} is available: ALTER EXTENSION vector UPDATE)"
    if _version(installed) < (0, 5, 0):
        return warn(what, f"{detail}: HNSW indexes need pgvector 0.5.0 or newer")
    not_vector = [f.name for f in found if not f.problem and not f.is_vector]
    if not_vector:
        detail += f"; not a vector column in {', '.join(not_vector)}"
    return ok(what, detail)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


_ROLE = """
    SELECT r.rolname AS role, r.rolsuper AS superuser, r.rolcreaterole AS createrole,
           current_database() AS database,
           CASE WHEN to_regrole('ruvector_daemon') IS NULL THEN false
                ELSE pg_has_role(r.oid, 'ruvector_daemon', 'MEMBER') END AS daemon,
           pg_has_role(r.oid, 'pg_monitor', 'MEMBER') AS monitor,
           CASE WHEN to_regrole('ruvector_owner') IS NULL THEN false
                ELSE pg_has_role(r.oid, 'ruvector_owner', 'MEMBER') END AS owner,
           has_database_privilege(r.oid, current_database(), 'CREATE') AS create_db,
           has_database_privilege('public', current_database(), 'CREATE') AS create_db_public,
           has_schema_privilege(r.oid, 'public', 'CREATE') AS create_public,
           has_schema_privilege('public', 'public', 'CREATE') AS create_public_public,
           ARRAY(SELECT format('schema %I', n.nspname) FROM pg_namespace n
                  WHERE n.nspowner = r.oid AND n.nspname = 'ruvector'
                 UNION ALL
                 SELECT format('%s %s', CASE WHEN c.relkind IN ('r', 'p') THEN 'table'
                                             ELSE 'relation' END, c.oid::regclass)
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relowner = r.oid AND n.nspname = 'ruvector'
                 UNION ALL
                 SELECT format('function %s', p.oid::regprocedure)
                   FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE p.proowner = r.oid
                    AND (n.nspname = 'ruvector'
                         OR (n.nspname = 'public' AND p.proname LIKE 'ruvector\\_%'))
           ) AS owns
      FROM pg_roles r WHERE r.rolname = current_user
"""


async def check_daemon_role(db: Database, relations: Sequence[str]) -> list[Check]:
    """The connecting role against deploy/sql/roles.sql: what it must have, and nothing
    more (doctor checks the role it connects as: the daemon's, from database.dsn)."""
    r = await db.fetchrow(_ROLE)
    assert r is not None
    role, dbname = quote(r["role"]), quote(r["database"])
    checks = []
    needed = (("ruvector_daemon", r["daemon"]), ("pg_monitor", r["monitor"]))
    missing = [g for g, has in needed if not has]
    what = "daemon role grants"
    if missing:
        checks.append(
            fail(
                what,
                f"{role} is not a member of {' and '.join(missing)}: grant: GRANT "
                f"{', '.join(missing)} TO {role} (psql -d {dbname} -v daemon={r['role']} "
                f"-f {ROLES_SQL})",
            )
        )
    else:
        checks.append(ok(what, f"{role} is a member of ruvector_daemon and pg_monitor"))

    what = "daemon role owns nothing"
    too_much = []
    if r["superuser"]:
        too_much.append(
            f"{role} is a superuser: run the daemon as a role of its own "
            f"(psql -d {dbname} -v daemon=ruvectord -f {ROLES_SQL})"
        )
    if r["createrole"] and not r["superuser"]:
        too_much.append(f"revoke: ALTER ROLE {role} NOCREATEROLE")
    if r["owner"] and not r["superuser"]:
        too_much.append(f"revoke: REVOKE ruvector_owner FROM {role}")
    if r["owns"]:
        objs = list(r["owns"])
        shown = ", ".join(objs[:3]) + (f" and {len(objs) - 3} more" if len(objs) > 3 else "")
        too_much.append(
            f"{role} owns {shown}: `ruvectord migrate --admin-dsn ...` hands them to ruvector_owner"
        )
    owned = await _owned_relations(db, relations) if relations else []
    if owned:
        too_much.append(
            f"{role} owns {', '.join(owned)}: give the collection tables to the application's "
            f"role (ALTER TABLE {owned[0]} OWNER TO ...)"
        )
    if too_much:
        checks.append(fail(what, "; ".join(too_much)))
    else:
        checks.append(ok(what, f"{role} is no superuser and owns no ruvector object or table"))
    if r["superuser"]:
        return checks  # a superuser has every right below: the line above says what to do

    what = "daemon role cannot create"
    revoke = []
    if r["create_db"]:
        who = "PUBLIC" if r["create_db_public"] else role
        revoke.append(f"REVOKE CREATE ON DATABASE {dbname} FROM {who}")
    if r["create_public"]:
        who = "PUBLIC" if r["create_public_public"] else role
        revoke.append(f"REVOKE CREATE ON SCHEMA public FROM {who}")
    if revoke:
        checks.append(fail(what, f"{role} may create objects: revoke: {'; '.join(revoke)}"))
    else:
        checks.append(ok(what, f"no CREATE on database {dbname} or schema public"))

    what = "daemon role cannot change collections"
    rows = await db.fetch(
        "SELECT t.name, has_table_privilege(t.name, 'TRIGGER') AS trig, "
        "has_table_privilege(t.name, 'UPDATE') AS upd FROM unnest($1::text[]) AS t(name)",
        list(relations),
    )
    bad = [
        (x["name"], [p for p, has in (("TRIGGER", x["trig"]), ("UPDATE", x["upd"])) if has])
        for x in rows
    ]
    bad = [(name, privs) for name, privs in bad if privs]
    if bad:
        first, privs = bad[0]
        more = f" (and {len(bad) - 1} more table(s))" if len(bad) > 1 else ""
        checks.append(
            fail(
                what,
                f"{role} holds {' and '.join(privs)} on {first}{more}: revoke: REVOKE "
                f"TRIGGER, UPDATE ON {first} FROM {role}{more}",
            )
        )
    elif relations:
        checks.append(ok(what, f"no TRIGGER or UPDATE on {len(relations)} table(s)"))
    else:
        checks.append(ok(what, "no collection table to check"))
    return checks


async def _owned_relations(db: Database, relations: Sequence[str]) -> list[str]:
    rows = await db.fetch(
        "SELECT t.name FROM unnest($1::text[]) AS t(name) JOIN pg_class c "
        "ON c.oid = t.name::regclass WHERE c.relowner = (SELECT oid FROM pg_roles "
        "WHERE rolname = current_user) AND NOT (SELECT rolsuper FROM pg_roles "
        "WHERE rolname = current_user)",
        list(relations),
    )
    return [r["name"] for r in rows]


async def check_guard_grants(
    db: Database, config: Config, relations: Sequence[str], tables: str
) -> Check:
    what = "throttle guard grants"
    if not config.healing.throttle.install_trigger:
        return ok(what, "not needed: healing.throttle.install_trigger is false")
    if not relations:
        return ok(what, "no collection table to check")
    if not await db.fetchval("SELECT to_regrole('ruvector_owner') IS NOT NULL"):
        return fail(what, "role ruvector_owner does not exist: run `ruvectord migrate` first")
    rows = await db.fetch(
        "SELECT t.name FROM unnest($1::text[]) AS t(name) "
        "WHERE NOT has_table_privilege('ruvector_owner', t.name, 'TRIGGER')",
        list(relations),
    )
    if rows:
        names = [r["name"] for r in rows]
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        dbname = quote(await db.fetchval("SELECT current_database()"))
        return fail(
            what,
            f"ruvector_owner lacks TRIGGER on {names[0]}{more}, so the throttle guard cannot "
            f"be installed: psql -d {dbname} -v tables={tables} -f {ROLES_SQL}",
        )
    return ok(what, f"ruvector_owner holds TRIGGER on {len(relations)} table(s)")


# --------------------------------------------------------------------------- local checks


def check_metrics_port(metrics: MetricsConfig) -> Check:
    """Bind the metrics address as the daemon would; a ruvectord answering there is fine."""
    what = "metrics port"
    if not metrics.enabled:
        return ok(what, "metrics are disabled (metrics.enabled: false)")
    address = metrics.listen_address
    if metrics.port == 0:
        return ok(what, f"{address}: a free port is chosen at start")
    host = metrics.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, metrics.port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            daemon = _ruvectord_at(host, metrics.port)
            if daemon is not None:
                return ok(what, f"{address} is in use by ruvectord ({daemon})")
            return fail(
                what,
                f"{address}: in use by another process: stop it or choose another "
                "metrics.listen_address",
            )
        if exc.errno == errno.EACCES:
            return fail(what, f"{address}: permission denied (ports below 1024 need privileges)")
        if exc.errno == errno.EADDRNOTAVAIL:
            return fail(what, f"{address}: no such address on this host")
        return fail(what, f"{address}: {exc.strerror or exc}")
    return ok(what, f"{address} is free")


def _ruvectord_at(host: str, port: int) -> str | None:
    """What a ruvectord's /health says about itself, or None if it is something else."""
    target = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    netloc = f"[{target}]:{port}" if ":" in target else f"{target}:{port}"
    try:
        with urllib.request.urlopen(f"http://{netloc}/health", timeout=2) as resp:
            body: Any = json.loads(resp.read(1_000_000))
    except (OSError, ValueError, urllib.error.URLError):
        return None
    if not isinstance(body, dict) or not {"node", "collections", "version"} <= body.keys():
        return None
    return f"node {body.get('node')}, pid {body.get('pid')}, version {body.get('version')}"


def check_signing_key(path: Path) -> Check:
    """Read the key the way `run` does, never creating it."""
    from ruvectord.audit import Signer, read_key

    what = "signing key"
    try:
        key = read_key(path)
    except UserError as exc:
        return fail(what, str(exc))
    except OSError as exc:
        return fail(what, f"signing key {path}: cannot read: {exc.strerror}")
    if key is None:
        parent = path.parent
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return warn(what, f"no key yet at {path}: `ruvectord run` creates it on first start")
        return warn(
            what,
            f"no key yet at {path}, and {parent} is not writable by this user: the daemon's "
            "user must be able to create it there",
        )
    return ok(what, f"{path}: an Ed25519 key, signer {Signer(key).id}")
