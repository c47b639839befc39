"""Faults and contexts shared by the maintenance-strategy tests (real sessions, real locks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import asyncpg

from ruvectord.config import Config
from ruvectord.healing.problems import Problem
from ruvectord.healing.strategy import RemediationContext
from ruvectord.integrity.hysteresis import State
from ruvectord.postgres.pool import Database
from ruvectord.scenarios.collection import CollectionSpec
from tests.helpers import connect
from tests.roles import as_role


def context(
    db: Database, config: Config, cid: int, problem: Problem, spec: CollectionSpec, **kw: Any
) -> RemediationContext:
    return RemediationContext(
        collection=spec.table,
        collection_id=cid,
        table=spec.qualified,
        problem=problem,
        state=State.STRESS,
        initial_lambda=0.4,
        sql=db,
        settings=config.healing,
        lease_seconds=60,
        **kw,
    )


async def until(conn: asyncpg.Connection, sql: str, *args: Any, limit: float = 20) -> Any:
    with anyio.fail_after(limit):
        while not (value := await conn.fetchval(sql, *args)):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return value


async def reloption(conn: asyncpg.Connection, rel: str) -> str | None:
    value: str | None = await conn.fetchval(
        "SELECT option_value FROM pg_class c, pg_options_to_table(c.reloptions) "
        "WHERE c.oid = $1::regclass AND option_name = 'autovacuum_enabled'",
        rel,
    )
    return value


@dataclass
class Blocked:
    """A manual VACUUM FULL queued behind a reader, with writers queued behind it."""

    vacuum_pid: int
    writer_pids: list[int]
    sessions: list[asyncpg.Connection] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


@asynccontextmanager
async def vacuum_full_blocking_writers(
    dsn: str, partition: str, *, writers: int = 2, table: str = "public.items"
) -> AsyncIterator[Blocked]:
    """The fault: someone runs VACUUM FULL on a partition while a long read is open; the
    VACUUM waits for its ACCESS EXCLUSIVE lock and every writer queues behind it."""
    person = as_role(dsn, DBA)  # owned_by_app() made this role
    reader, vacuum = await connect(dsn), await connect(person)
    ws = [await connect(person) for _ in range(writers)]
    blocked = Blocked(0, [], [reader, vacuum, *ws])
    sample = await reader.fetchval(f"SELECT embedding::text FROM {partition} LIMIT 1")
    vtype = await reader.fetchval(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = $1::regclass AND attname = 'embedding'",
        partition,
    )
    shard = await reader.fetchval(f"SELECT shard FROM {partition} LIMIT 1")
    await reader.execute("BEGIN")
    await reader.execute(f"SELECT count(*) FROM {partition}")

    async def run(conn: asyncpg.Connection, sql: str, *args: Any) -> None:
        try:
            await conn.execute(sql, *args)
        except asyncpg.PostgresError as exc:
            blocked.errors.append(exc)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, vacuum, f"VACUUM FULL {partition}")
            blocked.vacuum_pid = vacuum.get_server_pid()
            await until(
                reader,
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                blocked.vacuum_pid,
            )
            for w in ws:
                tg.start_soon(
                    run,
                    w,
                    # through the parent: before PostgreSQL 17 a partition has no identity
                    f"INSERT INTO {table} (shard, embedding) VALUES ($1, $2::text::{vtype})",
                    shard,
                    sample,
                )
                blocked.writer_pids.append(w.get_server_pid())
            await until(
                reader,
                "SELECT count(*) = $2 FROM pg_stat_activity WHERE pid = ANY($1::int[]) "
                "AND wait_event_type = 'Lock'",
                blocked.writer_pids,
                len(ws),
            )
            try:
                yield blocked
            finally:
                await reader.execute("ROLLBACK")  # the VACUUM and the writers may finish
    finally:
        for conn in blocked.sessions:
            conn.terminate()


APP_OWNER = "ruvector_test_app_owner"
DBA = "ruvector_test_dba"


async def owned_by_app(conn: asyncpg.Connection, spec: CollectionSpec) -> None:
    """What `roles.sql -v maintenance=on` needs in place: the collection's tables belong to
    an ordinary role (not a superuser), and ruvector_owner is granted that role."""
    await conn.execute(
        f"""
        DO $$ BEGIN
            CREATE ROLE {APP_OWNER} NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END $$
        """
    )
    for r in await conn.fetch(
        "SELECT relid::regclass::text AS rel FROM pg_partition_tree($1)", spec.qualified
    ):
        await conn.execute(f"ALTER TABLE {r['rel']} OWNER TO {APP_OWNER}")
    await conn.execute(f"GRANT {APP_OWNER} TO ruvector_owner")
    # a person (not a superuser: nobody may cancel a superuser's session but a superuser)
    await conn.execute(
        f"""
        DO $$ BEGIN
            CREATE ROLE {DBA} LOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END $$
        """
    )
    await conn.execute(f"GRANT {APP_OWNER} TO {DBA}")
    # the functions see other roles' sessions (pg_monitor) and may cancel them
    await conn.execute("GRANT pg_signal_backend, pg_monitor TO ruvector_owner")
