"""The placement functions on a real server: exact moves, exact moves back, and refusals.

ruvector.placement_move is the only way the daemon changes a row of a collection; these tests
hold it to its contract: only the declared placement column of a configured collection, only
between two of its leaf partitions, only rows that still hold the value the caller saw, every
row landing where it was sent, nothing but keys and values returned.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import asyncpg
import pytest

from ruvectord.postgres.pool import Database
from ruvectord.postgres.store import Store
from ruvectord.scenarios.collection import COLD_SHARD, CollectionSpec
from tests.helpers import collection, make_config

SPEC = CollectionSpec(partitions=4, rows_per_partition=30, placement=True, index=False)


async def _setup(db: Database, dsn: str, state_dir: Path, **placement: object) -> int:
    config = make_config(
        dsn,
        state_dir,
        SPEC,
        collections=[
            {
                "name": "items",
                "table": "public.items",
                "vector_column": "embedding",
                "placement": SPEC.placement_config(**placement),
            }
        ],
    )
    return (await Store(db).sync_collections(config))["items"]


async def _where(conn: asyncpg.Connection) -> dict[int, tuple[str, int]]:
    rows = await conn.fetch("SELECT id, tableoid::regclass::text AS rel, shard FROM public.items")
    return {r["id"]: (r["rel"], r["shard"]) for r in rows}


async def _move(
    db: Database,
    cid: int,
    src: str,
    dst: str,
    keys: list[int],
    expect: list[str],
    new: list[str],
) -> list[int]:
    moved = await db.fetchval(
        "SELECT ruvector.placement_move($1, $2::regclass, $3::regclass, $4::bigint[], "
        "$5::text[], $6::text[])",
        cid,
        src,
        dst,
        keys,
        expect,
        new,
    )
    return sorted(moved)


async def test_a_batch_moves_exactly_what_was_named_and_back(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        cid = await _setup(db, dsn, state_dir)
        assert await db.fetch("SELECT * FROM ruvector.placement_problems($1)", cid) == []
        before = await _where(conn)
        found = await db.fetch(
            "SELECT key, value FROM ruvector.placement_candidates($1, 'public.items_p1', 10)", cid
        )
        keys = [r["key"] for r in found]
        assert len(keys) == 10 and {r["value"] for r in found} == {"1"}
        assert keys == sorted(keys, reverse=True)  # newest first
        # one key no longer holds the value the caller saw: it is left alone
        stale = keys[0]
        expect = ["1"] * 10
        expect[0] = "2"
        moved = await _move(db, cid, "public.items_p1", "public.items_p3", keys, expect, ["3"] * 10)
        assert moved == sorted(keys[1:])
        after = await _where(conn)
        assert len(after) == len(before)
        for k in keys[1:]:
            assert after[k] == ("items_p3", 3)
        assert after[stale] == before[stale]
        assert await db.fetchval("SELECT sum(moved) FROM ruvector.placement_batches") == 9
        # back, twice: the second call finds nothing left to move
        for expected in (sorted(keys[1:]), []):
            back = await _move(
                db, cid, "public.items_p3", "public.items_p1", keys[1:], ["3"] * 9, ["1"] * 9
            )
            assert back == expected
        assert await _where(conn) == before


async def test_rows_must_land_where_they_were_sent(db: Database, dsn: str, state_dir: Path) -> None:
    async with collection(dsn, SPEC) as conn:
        cid = await _setup(db, dsn, state_dir)
        before = await _where(conn)
        keys = [k for k, (rel, _) in before.items() if rel == "items_p0"][:3]
        with pytest.raises(asyncpg.CheckViolationError, match="would not land"):
            await _move(db, cid, "public.items_p0", "public.items_p2", keys, ["0"] * 3, ["1"] * 3)
        assert await _where(conn) == before


async def test_a_key_already_in_the_target_does_not_pass_for_a_row_that_went_elsewhere(
    db: Database, dsn: str, state_dir: Path
) -> None:
    """Keys are unique per partition only (a partitioned table's primary key must include the
    partition key): a row of items_p2 that has a moved row's key must not make a row routed to
    items_p1 count as landed in items_p2."""
    async with collection(dsn, SPEC) as conn:
        cid = await _setup(db, dsn, state_dir)
        key = await conn.fetchval("SELECT min(id) FROM ONLY public.items_p0")
        await conn.execute(
            "INSERT INTO public.items (id, shard, embedding) OVERRIDING SYSTEM VALUE "
            "SELECT id, 2, embedding FROM ONLY public.items_p0 WHERE id = $1",
            key,
        )
        rows = "SELECT id, tableoid::regclass::text, shard FROM public.items ORDER BY 1, 2"
        before = await conn.fetch(rows)
        with pytest.raises(asyncpg.CheckViolationError, match="would not land"):
            await _move(db, cid, "public.items_p0", "public.items_p2", [key], ["0"], ["1"])
        assert await conn.fetch(rows) == before


@pytest.mark.parametrize(
    ("args", "error"),
    [
        # not a partition of the collection
        (("pg_catalog.pg_class", "public.items_p1"), "must both be partitions"),
        (("public.items", "public.items_p1"), "must both be partitions"),  # the parent
        (("public.items_p1", "public.items_p1"), "the same partition"),
    ],
)
async def test_only_partitions_of_the_collection(
    db: Database, dsn: str, state_dir: Path, args: tuple[str, str], error: str
) -> None:
    async with collection(dsn, SPEC):
        cid = await _setup(db, dsn, state_dir)
        with pytest.raises(asyncpg.PostgresError, match=error):
            await _move(db, cid, args[0], args[1], [1], ["1"], ["2"])


async def test_a_declaration_that_is_not_the_partition_key_is_refused(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC):
        cid = await _setup(db, dsn, state_dir)
        # what a compromised daemon could write into its own state table
        await db.execute(
            "UPDATE ruvector.placements SET placement_column = 'tenant' WHERE collection_id = $1",
            cid,
        )
        problems = await db.fetch("SELECT p FROM ruvector.placement_problems($1) AS p", cid)
        assert [r["p"] for r in problems] == [
            "column tenant is not the partition key of public.items (collection items)"
        ]
        with pytest.raises(asyncpg.PostgresError, match="is not the partition key"):
            await _move(db, cid, "public.items_p0", "public.items_p1", [1], ["0"], ["1"])
        await db.execute("DELETE FROM ruvector.placements WHERE collection_id = $1", cid)
        with pytest.raises(asyncpg.PostgresError, match="placement not declared for items"):
            await _move(db, cid, "public.items_p0", "public.items_p1", [1], ["0"], ["1"])


async def test_eviction_candidates_are_the_oldest(db: Database, dsn: str, state_dir: Path) -> None:
    async with collection(dsn, SPEC) as conn:
        cid = await _setup(db, dsn, state_dir)
        await conn.execute(
            "UPDATE public.items SET created_at = now() - interval '40 days' "
            "WHERE shard = 2 AND id % 3 = 0"
        )
        old = await db.fetch(
            "SELECT key FROM ruvector.placement_candidates($1, 'public.items_p2', 100, "
            "now() - interval '30 days')",
            cid,
        )
        expected = await conn.fetch(
            "SELECT id FROM public.items WHERE shard = 2 AND id % 3 = 0 ORDER BY created_at, id"
        )
        assert [r["key"] for r in old] == [r["id"] for r in expected]
        keys = [r["key"] for r in old]
        moved = await _move(
            db,
            cid,
            "public.items_p2",
            "public.items_cold",
            keys,
            ["2"] * len(keys),
            [str(COLD_SHARD)] * len(keys),
        )
        assert moved == sorted(keys)
        # the cold rows are still in the collection: a search over it finds them
        assert await conn.fetchval(
            "SELECT count(*) FROM public.items WHERE id = ANY($1::bigint[])", keys
        ) == len(keys)


async def test_route_follows_a_drain_only_while_its_lease_holds(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        cid = await _setup(db, dsn, state_dir)
        assert await conn.fetchval("SELECT ruvector_route('items', 3)") == 3
        await db.execute(
            "INSERT INTO ruvector.drains (collection_id, from_value, to_values, expires_at) "
            "VALUES ($1, '3', '{0,1}', now() + interval '1 hour')",
            cid,
        )
        seen = {await conn.fetchval("SELECT ruvector_route('items', 3)") for _ in range(40)}
        assert seen == {0, 1}
        assert await conn.fetchval("SELECT ruvector_route('items', '2')") == "2"
        assert await conn.fetchval("SELECT ruvector_route('nope', 3)") == 3  # fails open
        await db.execute("UPDATE ruvector.drains SET expires_at = now() - interval '1 second'")
        assert await conn.fetchval("SELECT ruvector_route('items', 3)") == 3


async def test_a_move_never_makes_a_writer_the_victim_of_a_deadlock(
    db: Database, dsn: str, state_dir: Path
) -> None:
    """A writer holds the target partition and then writes to the source while a move waits:
    the move must give way (v8 held the source while queued for the target, so the writer's
    deadlock_timeout ran out first and the application's INSERT failed with 40P01)."""
    async with collection(dsn, SPEC) as conn:
        cid = await _setup(db, dsn, state_dir)
        found = await db.fetch(
            "SELECT key FROM ruvector.placement_candidates($1, 'public.items_p1', 5)", cid
        )
        keys = [r["key"] for r in found]
        copy = (
            "INSERT INTO public.items (shard, embedding) "
            "SELECT $1, embedding FROM public.items LIMIT 1"
        )
        moved: list[int] = []

        async def move() -> None:
            got = await db.fetchval(
                "SELECT ruvector.placement_move($1, 'public.items_p1', 'public.items_p3', "
                "$2::bigint[], $3::text[], $4::text[], NULL, interval '10 seconds')",
                cid,
                keys,
                ["1"] * len(keys),
                ["3"] * len(keys),
            )
            moved.extend(got)

        writer = await asyncpg.connect(dsn)
        try:
            await writer.execute("SET deadlock_timeout = '100ms'")  # it would lose at once
            async with anyio.create_task_group() as tg, writer.transaction():
                await writer.execute(copy, 3)  # holds items_p3
                tg.start_soon(move)
                await anyio.sleep(0.5)  # the move waits for the writer by now
                await writer.execute(copy, 1)  # and the writer wants the move's source
                # committed: now the move can finish
            assert sorted(moved) == sorted(keys)
        finally:
            await writer.close()
        where = await _where(conn)
        assert all(where[k] == ("items_p3", 3) for k in keys)


async def test_a_move_without_a_lock_wait_tries_once_and_says_so(
    db: Database, dsn: str, state_dir: Path
) -> None:
    """A NULL lock wait is one try, not a loop that queues behind writers forever."""
    async with collection(dsn, SPEC):
        cid = await _setup(db, dsn, state_dir)
        keys = [
            r["key"]
            for r in await db.fetch(
                "SELECT key FROM ruvector.placement_candidates($1, 'public.items_p1', 3)", cid
            )
        ]
        writer = await asyncpg.connect(dsn)
        try:
            async with writer.transaction():
                await writer.execute(
                    "INSERT INTO public.items (shard, embedding) "
                    "SELECT 3, embedding FROM public.items LIMIT 1"
                )
                with anyio.fail_after(10), pytest.raises(asyncpg.LockNotAvailableError):
                    await db.fetchval(
                        "SELECT ruvector.placement_move($1, 'public.items_p1', "
                        "'public.items_p3', $2::bigint[], $3::text[], $4::text[], NULL, NULL)",
                        cid,
                        keys,
                        ["1"] * len(keys),
                        ["3"] * len(keys),
                    )
        finally:
            await writer.close()
