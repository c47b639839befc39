"""Moving rows without handing the daemon's role the rows: the placement functions on a
server set up by deploy/sql/roles.sql, as the daemon's own role.

The daemon's role holds no privilege on the collection; ruvector_owner holds, by the DBA's
opt-in (`-v placement=TABLE:COLUMN:KEY`), SELECT on the key and placement columns, UPDATE of
the placement column and the right to lock each partition for a batch -- nothing on the
vectors. The functions refuse any other table, column or partition.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from ruvectord.scenarios.collection import CollectionSpec
from tests.conftest import PgServer
from tests.roles import Parties, parties

SPEC = CollectionSpec(partitions=4, rows_per_partition=5, index=False)
OPT_IN = "placement=public.items:shard:id"


async def _declare(p: Parties, column: str = "shard", key: str = "id", table: str = "items") -> int:
    """As the daemon: register the collection and its placement (its own state tables)."""
    conn = await asyncpg.connect(p.as_(p.daemon))
    try:
        cid: int = await conn.fetchval(
            "INSERT INTO ruvector.collections (name, table_schema, table_name, vector_column) "
            "VALUES ($1, 'public', $1, 'embedding') RETURNING id",
            table,
        )
        await conn.execute(
            "INSERT INTO ruvector.placements (collection_id, placement_column, key_column) "
            "VALUES ($1, $2, $3)",
            cid,
            column,
            key,
        )
        return cid
    finally:
        await conn.close()


async def _move(conn: asyncpg.Connection, cid: int, src: str, dst: str, keys: list[int]) -> Any:
    return await conn.fetchval(
        "SELECT ruvector.placement_move($1, $2::regclass, $3::regclass, $4::bigint[], "
        "$5::text[], $6::text[])",
        cid,
        src,
        dst,
        keys,
        ["1"] * len(keys),
        ["2"] * len(keys),
    )


async def test_without_the_opt_in_nothing_moves_and_the_problem_is_named(
    pg_server: PgServer,
) -> None:
    async with parties(pg_server, SPEC) as p:
        cid = await _declare(p)
        daemon = await asyncpg.connect(p.as_(p.daemon))
        try:
            problems = [
                r["p"]
                for r in await daemon.fetch(
                    "SELECT p FROM ruvector.placement_problems($1) AS p", cid
                )
            ]
            fix = "psql -v placement=public.items:shard:id -f deploy/sql/roles.sql"
            assert f"ruvector_owner may not UPDATE (shard) on public.items: {fix}" in problems
            assert (
                f"ruvector_owner may not LOCK public.items_p1 (it needs MAINTAIN on it): {fix}"
                in problems
                or (
                    f"ruvector_owner may not LOCK public.items_p1 (it needs UPDATE on it): {fix}"
                    in problems
                )
            ), problems
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await _candidates(daemon, cid)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await _move(daemon, cid, "public.items_p1", "public.items_p2", [1])
            # the daemon's own role never reads or writes a row itself
            for sql in ("SELECT id FROM public.items", "UPDATE public.items SET shard = 2"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await daemon.execute(sql)
        finally:
            await daemon.close()


async def _candidates(conn: asyncpg.Connection, cid: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT key, value FROM ruvector.placement_candidates($1, 'public.items_p1', 100)", cid
    )


async def test_with_the_opt_in_the_daemon_moves_rows_it_cannot_read(pg_server: PgServer) -> None:
    async with parties(pg_server, SPEC, OPT_IN) as p:
        cid = await _declare(p)
        admin = await asyncpg.connect(p.dsn)
        daemon = await asyncpg.connect(p.as_(p.daemon))
        try:
            before = await admin.fetch("SELECT id, shard, embedding::text FROM public.items")
            problems = await daemon.fetch("SELECT * FROM ruvector.placement_problems($1)", cid)
            assert problems == []
            keys = [r["key"] for r in await _candidates(daemon, cid)]
            assert len(keys) == SPEC.rows_per_partition
            moved = await _move(daemon, cid, "public.items_p1", "public.items_p2", keys)
            assert sorted(moved) == sorted(keys)
            after = await admin.fetch("SELECT id, shard, embedding::text FROM public.items")
            assert {(r["id"], r["embedding"]) for r in after} == {
                (r["id"], r["embedding"]) for r in before
            }
            assert {r["id"] for r in after if r["shard"] == 2} >= set(keys)
            # still nothing of its own on the table, and nothing of the owner's on the vectors
            for sql in ("SELECT embedding FROM public.items", "UPDATE public.items SET shard = 2"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await daemon.execute(sql)
            for rel in ("public.items", "public.items_p1"):
                assert not await admin.fetchval(
                    "SELECT has_column_privilege('ruvector_owner', $1, 'embedding', 'SELECT')",
                    rel,
                )
            assert not await admin.fetchval(
                "SELECT has_column_privilege('ruvector_owner', 'public.items', 'embedding', "
                "'UPDATE')"
            )
        finally:
            await daemon.close()
            await admin.close()


async def test_the_functions_touch_no_other_table_or_column(pg_server: PgServer) -> None:
    async with parties(pg_server, SPEC, OPT_IN) as p:
        admin = await asyncpg.connect(p.dsn)
        try:
            # an application table shaped like a collection, that nobody opted in
            await admin.execute(
                "CREATE TABLE public.accounts (id bigint, region integer, balance numeric) "
                "PARTITION BY LIST (region)"
            )
            for r in (1, 2):
                await admin.execute(
                    f"CREATE TABLE public.accounts_r{r} PARTITION OF public.accounts "
                    f"FOR VALUES IN ({r})"
                )
            await admin.execute("INSERT INTO public.accounts VALUES (1, 1, 100), (2, 1, 5)")
        finally:
            await admin.close()
        other = await _declare(p, column="region", table="accounts")
        daemon = await asyncpg.connect(p.as_(p.daemon))
        try:
            # a table the DBA did not opt in: the owner may not touch it
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await daemon.fetch(
                    "SELECT * FROM ruvector.placement_candidates($1, 'public.accounts_r1', 10)",
                    other,
                )
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await _move(daemon, other, "public.accounts_r1", "public.accounts_r2", [1])
            # the opted-in collection, but another column: the daemon may rewrite its own
            # declaration, the functions still change only the partition key
            cid = await _declare(p)
            for column, key, error in (
                ("tenant", "id", "is not the partition key"),
                ("embedding", "id", "is not the partition key"),
                ("shard", "embedding", "must exist and be an integer"),
                ("shard", "tenant", "must exist and be an integer"),
            ):
                await daemon.execute(
                    "UPDATE ruvector.placements SET placement_column = $2, key_column = $3 "
                    "WHERE collection_id = $1",
                    cid,
                    column,
                    key,
                )
                with pytest.raises(asyncpg.PostgresError, match=error):
                    await _move(daemon, cid, "public.items_p1", "public.items_p2", [1])
                with pytest.raises(asyncpg.PostgresError, match=error):
                    await _candidates(daemon, cid)
            # a partition of another table passed for a partition of the collection
            await daemon.execute(
                "UPDATE ruvector.placements SET placement_column = 'shard', key_column = 'id' "
                "WHERE collection_id = $1",
                cid,
            )
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must both be"):
                await _move(daemon, cid, "public.accounts_r1", "public.items_p2", [1])
            # more than a batch
            with pytest.raises(asyncpg.PostgresError, match=r"1\.\.10000 keys"):
                await _move(daemon, cid, "public.items_p1", "public.items_p2", list(range(10001)))
        finally:
            await daemon.close()
        admin = await asyncpg.connect(p.dsn)
        try:
            rows = await admin.fetch("SELECT id, region, balance FROM public.accounts ORDER BY id")
            assert [tuple(r) for r in rows] == [(1, 1, 100), (2, 1, 5)]
        finally:
            await admin.close()
