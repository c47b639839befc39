"""`ruvectord doctor` on a real server: a database set up as deploy/sql/roles.sql sets one up
passes every check; then one thing at a time is broken, and exactly that check fails (or,
where one mistake breaks two promises, exactly those), with what to do, and exit code 1."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
import yaml

from ruvectord.audit import load_or_create_key
from ruvectord.postgres.migrations import available
from tests.conftest import PgServer
from tests.helpers import free_port
from tests.roles import Parties, parties

ROOT = Path(__file__).parents[2]
CHECKS = [
    "config",
    "database reachable",
    "schema current",
    "pgvector",
    "collection items",
    "daemon role grants",
    "daemon role owns nothing",
    "daemon role cannot create",
    "daemon role cannot change collections",
    "throttle guard grants",
    "metrics port",
    "signing key",
]


@dataclass
class Run:
    code: int
    checks: dict[str, tuple[str, str]]  # check -> (result, detail)
    stdout: str
    stderr: str

    def failed(self) -> set[str]:
        return {name for name, (result, _) in self.checks.items() if result == "FAIL"}

    def detail(self, check: str) -> str:
        return self.checks[check][1]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("RUVECTORD_", "PG"))}


async def doctor(*args: str) -> Run:
    def go() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ruvectord.cli", "doctor", "--json", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env=_env(),
        )

    done = await anyio.to_thread.run_sync(go)
    assert "Traceback" not in done.stderr, done.stderr
    data = json.loads(done.stdout)
    checks = {c["check"]: (c["result"], c["detail"]) for c in data["checks"]}
    assert data["ok"] == (done.returncode == 0), done.stdout
    return Run(done.returncode, checks, done.stdout, done.stderr)


async def write_config(path: Path, dsn: str, state: Path, port: int, **changes: Any) -> Path:
    data: dict[str, Any] = {
        "database": {"dsn": dsn, "connect_retries": 0, "connect_timeout_seconds": 5},
        "daemon": {"state_directory": str(state)},
        "metrics": {"listen_address": f"127.0.0.1:{port}"},
        "logging": {"format": "json"},
        "collections": [{"name": "items", "table": "public.items", "vector_column": "embedding"}],
    }
    for section, values in changes.items():
        if isinstance(values, list):
            data[section] = values
        else:
            data[section] = {**data.get(section, {}), **values}
    await anyio.Path(path).write_text(yaml.safe_dump(data))
    return path


@dataclass
class Setup:
    p: Parties
    config: Path
    state: Path
    port: int
    tmp: Path

    async def variant(self, name: str, **changes: Any) -> Path:
        return await write_config(
            self.tmp / name, self.p.as_(self.p.daemon), self.state, self.port, **changes
        )


@asynccontextmanager
async def set_up(pg_server: PgServer, tmp: Path) -> AsyncIterator[Setup]:
    state = tmp / "state"
    await anyio.Path(state).mkdir()
    await anyio.to_thread.run_sync(load_or_create_key, state / "signing.key")
    port = free_port()
    async with parties(pg_server) as p:
        cfg = await write_config(tmp / "ruvectord.yaml", p.as_(p.daemon), state, port)
        yield Setup(p, cfg, state, port, tmp)


async def test_a_database_set_up_by_roles_sql_passes_every_check(
    pg_server: PgServer, tmp_path: Path
) -> None:
    async with set_up(pg_server, tmp_path) as s:
        run = await doctor("-c", str(s.config))
        assert run.code == 0, run.stdout
        assert list(run.checks) == CHECKS
        if pg_server.has_pgvector:
            assert {r for r, _ in run.checks.values()} == {"ok"}, run.stdout
            assert run.detail("pgvector").startswith("pgvector ")
            assert run.detail("collection items") == (
                "public.items, 4 partitions, embedding vector(16)"
            )
        else:  # no pgvector on this server: the collection uses real[]; warned, not failed
            assert run.checks["pgvector"][0] == "warn"
            assert run.checks["collection items"][0] == "warn"
        assert f"as {s.p.daemon}" in run.detail("database reachable")
        newest = len(await anyio.to_thread.run_sync(available))
        assert run.detail("schema current") == (
            f"ruvector schema version {newest}, as this ruvectord expects"
        )
        assert run.detail("throttle guard grants") == "ruvector_owner holds TRIGGER on 5 table(s)"
        assert run.detail("metrics port") == f"127.0.0.1:{s.port} is free"

        # and for a human: one line per check, result first, aligned, then a summary
        def human() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "ruvectord.cli", "doctor", "-c", str(s.config)],
                capture_output=True,
                text=True,
                timeout=120,
                env=_env(),
            )

        text = (await anyio.to_thread.run_sync(human)).stdout.splitlines()
        assert len(text) == len(CHECKS) + 1
        assert re.match(r"ok    database reachable {3,}PostgreSQL ", text[1]), text
        assert text[-1].startswith(f"all {len(CHECKS)} checks passed")


# (what breaks it, what mends it, the checks that must fail, a phrase of what to do)
BREAKS: list[tuple[str, str, set[str], str]] = [
    (
        "REVOKE pg_monitor FROM {daemon}",
        "GRANT pg_monitor TO {daemon}",
        {"daemon role grants"},
        "is not a member of pg_monitor: grant: GRANT pg_monitor TO {daemon}",
    ),
    (
        # without ruvector_daemon it cannot even read the schema: both say what to grant
        "REVOKE ruvector_daemon FROM {daemon}",
        "GRANT ruvector_daemon TO {daemon}",
        {"daemon role grants", "schema current"},
        "is not a member of ruvector_daemon: grant: GRANT ruvector_daemon TO {daemon}",
    ),
    (
        # the owner may create in the database and attach triggers: all three promises break
        "GRANT ruvector_owner TO {daemon}",
        "REVOKE ruvector_owner FROM {daemon}",
        {
            "daemon role owns nothing",
            "daemon role cannot create",
            "daemon role cannot change collections",
        },
        "revoke: REVOKE ruvector_owner FROM {daemon}",
    ),
    (
        "ALTER ROLE {daemon} SUPERUSER",
        "ALTER ROLE {daemon} NOSUPERUSER",
        {"daemon role owns nothing"},
        "{daemon} is a superuser: run the daemon as a role of its own",
    ),
    (
        "ALTER ROLE {daemon} CREATEROLE",
        "ALTER ROLE {daemon} NOCREATEROLE",
        {"daemon role owns nothing"},
        "revoke: ALTER ROLE {daemon} NOCREATEROLE",
    ),
    (
        "GRANT CREATE ON DATABASE {db} TO {daemon}",
        "REVOKE CREATE ON DATABASE {db} FROM {daemon}",
        {"daemon role cannot create"},
        "revoke: REVOKE CREATE ON DATABASE {db} FROM {daemon}",
    ),
    (
        "GRANT CREATE ON SCHEMA public TO {daemon}",
        "REVOKE CREATE ON SCHEMA public FROM {daemon}",
        {"daemon role cannot create"},
        "revoke: REVOKE CREATE ON SCHEMA public FROM {daemon}",
    ),
    (
        "GRANT TRIGGER ON public.items_p2 TO {daemon}",
        "REVOKE TRIGGER ON public.items_p2 FROM {daemon}",
        {"daemon role cannot change collections"},
        "holds TRIGGER on public.items_p2: revoke: REVOKE TRIGGER, UPDATE ON public.items_p2",
    ),
    (
        "GRANT UPDATE ON public.items TO {daemon}",
        "REVOKE UPDATE ON public.items FROM {daemon}",
        {"daemon role cannot change collections"},
        "holds UPDATE on public.items: revoke: REVOKE TRIGGER, UPDATE ON public.items",
    ),
    (
        "REVOKE TRIGGER ON public.items_p1 FROM ruvector_owner",
        "GRANT TRIGGER ON public.items_p1 TO ruvector_owner",
        {"throttle guard grants"},
        "ruvector_owner lacks TRIGGER on public.items_p1, so the throttle guard cannot be "
        "installed: psql -d {db} -v tables=public.items -f deploy/sql/roles.sql",
    ),
    (
        "DELETE FROM ruvector.schema_migrations WHERE version = {newest}",
        "INSERT INTO ruvector.schema_migrations (version, name, checksum) "
        "SELECT version, name, checksum FROM saved_migration",
        {"schema current"},
        "ruvector schema version {older}, this ruvectord needs {newest}: run `ruvectord "
        "migrate --admin-dsn",
    ),
    (
        "INSERT INTO ruvector.schema_migrations (version, name, checksum) "
        "VALUES (999, 'future', 'x')",
        "DELETE FROM ruvector.schema_migrations WHERE version = 999",
        {"schema current"},
        "ruvector schema version 999 is newer than this ruvectord knows ({newest}): upgrade",
    ),
]


async def test_each_broken_promise_fails_its_own_check(pg_server: PgServer, tmp_path: Path) -> None:
    async with set_up(pg_server, tmp_path) as s:
        newest = len(await anyio.to_thread.run_sync(available))
        admin = await asyncpg.connect(s.p.dsn)
        try:
            dbname = await admin.fetchval("SELECT current_database()")
            await admin.execute(
                "CREATE TABLE saved_migration AS SELECT * FROM ruvector.schema_migrations "
                "WHERE version = $1",
                newest,
            )
            names = {"daemon": s.p.daemon, "db": dbname, "newest": newest, "older": newest - 1}
            for broken, mended, expected, phrase in BREAKS:
                await admin.execute(broken.format(**names))
                try:
                    run = await doctor("-c", str(s.config))
                finally:
                    await admin.execute(mended.format(**names))
                assert run.code == 1, (broken, run.stdout)
                assert run.failed() == expected, (broken, run.stdout)
                what = phrase.format(**names)
                assert any(what in run.detail(c) for c in expected), (broken, what, run.stdout)
            # mended, all of it
            assert (await doctor("-c", str(s.config))).failed() == set()
        finally:
            await admin.close()


async def test_collections_that_are_not_as_configured(pg_server: PgServer, tmp_path: Path) -> None:
    async with set_up(pg_server, tmp_path) as s:
        admin = await asyncpg.connect(s.p.dsn)
        try:
            await admin.execute(
                "CREATE TABLE public.no_parts (embedding real[], shard int) "
                "PARTITION BY LIST (shard)"
            )
        finally:
            await admin.close()
        cases = [
            ("public.nope", "embedding", "table public.nope does not exist"),
            ("public.items", "nope", "column 'nope' does not exist in public.items"),
            (
                "public.no_parts",
                "embedding",
                "public.no_parts is partitioned but has no partitions",
            ),
            # identifier rules as psql's: unquoted folds to lower case, quoted keeps its case
            ('public."Items"', "embedding", 'table public."Items" does not exist'),
        ]
        for table, column, phrase in cases:
            cfg = await s.variant(
                "c.yaml",
                collections=[{"name": "items", "table": table, "vector_column": column}],
            )
            run = await doctor("-c", str(cfg))
            assert run.code == 1 and run.failed() == {"collection items"}, run.stdout
            assert run.detail("collection items").startswith(phrase), run.stdout
        cfg = await s.variant(
            "c.yaml",
            collections=[{"name": "items", "table": "PUBLIC.Items", "vector_column": "EMBEDDING"}],
        )
        assert (await doctor("-c", str(cfg))).failed() == set()
        if pg_server.has_pgvector:
            # a column that is not a pgvector type works, but no vector index will be seen
            cfg = await s.variant(
                "c.yaml",
                collections=[{"name": "items", "table": "public.items", "vector_column": "tenant"}],
            )
            run = await doctor("-c", str(cfg))
            assert run.code == 0 and run.checks["collection items"][0] == "warn", run.stdout
            assert "tenant text: not a pgvector type" in run.detail("collection items")


async def test_local_failures_port_key_password_and_an_unreachable_database(
    pg_server: PgServer, tmp_path: Path
) -> None:
    async with set_up(pg_server, tmp_path) as s:
        # the metrics port, taken by something that is not ruvectord
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", s.port))
            taken.listen()
            run = await doctor("-c", str(s.config))
        assert run.failed() == {"metrics port"}, run.stdout
        assert run.detail("metrics port") == (
            f"127.0.0.1:{s.port}: in use by another process: stop it or choose another "
            "metrics.listen_address"
        )
        key = s.state / "signing.key"
        pem = await anyio.Path(key).read_bytes()
        # readable by others
        await anyio.Path(key).chmod(0o644)
        run = await doctor("-c", str(s.config))
        assert run.failed() == {"signing key"} and "chmod 600" in run.detail("signing key")
        # not a key
        await anyio.Path(key).chmod(0o600)
        await anyio.Path(key).write_bytes(b"not a key\n")
        run = await doctor("-c", str(s.config))
        assert run.failed() == {"signing key"} and "not a PEM private key" in run.detail(
            "signing key"
        )
        # missing: run creates it on first start; doctor only warns, and creates nothing
        await anyio.Path(key).unlink()
        run = await doctor("-c", str(s.config))
        assert run.code == 0 and run.checks["signing key"][0] == "warn", run.stdout
        assert "`ruvectord run` creates it on first start" in run.detail("signing key")
        assert not await anyio.Path(key).exists()
        await anyio.Path(key).write_bytes(pem)
        await anyio.Path(key).chmod(0o600)

        # an unreadable password file, then nothing listening: the local checks still run
        cfg = await s.variant(
            "pw.yaml", database={"password_file": str(tmp_path / "missing-password")}
        )
        run = await doctor("-c", str(cfg))
        assert run.failed() == {"database reachable"}
        assert "database.password_file: cannot read" in run.detail("database reachable")
        dead = f"postgresql://{s.p.daemon}:hunter2-secret@127.0.0.1:{free_port()}/nowhere"
        run = await doctor("-c", str(s.config), "--dsn", dead)
        assert run.code == 1 and run.failed() == {"database reachable"}, run.stdout
        assert run.detail("database reachable").startswith(
            f"cannot reach PostgreSQL at 127.0.0.1:{dead.rsplit(':', 1)[1].split('/')[0]}/nowhere"
        )
        assert list(run.checks) == ["config", "database reachable", "metrics port", "signing key"]
        assert "hunter2-secret" not in run.stdout + run.stderr


@pytest.mark.usefixtures("no_default_config")
async def test_a_database_that_was_never_migrated(pg_server: PgServer, empty_dsn: str) -> None:
    # as a superuser (who would migrate at start unless told not to): the schema check says
    # what to run, and the superuser is itself a failed promise
    run = await doctor("--dsn", empty_dsn)
    assert run.checks["schema current"][0] == "warn"
    assert "no ruvector schema" in run.detail("schema current")
    env_off = "RUVECTORD_DATABASE__MIGRATE_ON_START"

    def go() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ruvectord.cli", "doctor", "--json", "--dsn", empty_dsn],
            capture_output=True,
            text=True,
            timeout=120,
            env={**_env(), env_off: "false"},
        )

    done = await anyio.to_thread.run_sync(go)
    checks = {c["check"]: c for c in json.loads(done.stdout)["checks"]}
    assert done.returncode == 1
    assert checks["schema current"]["result"] == "FAIL"
    assert "no ruvector schema" in checks["schema current"]["detail"]
    assert "run `ruvectord migrate --admin-dsn" in checks["schema current"]["detail"]
    assert checks["config"]["detail"].startswith("no config file: the defaults and --dsn")
    assert checks["daemon role owns nothing"]["result"] == "FAIL"  # a superuser
