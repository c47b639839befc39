"""Real faults for a real PostgreSQL, each with the problem class it must be read as.

Shared by bench/detection.py (which measures detection over all of them, on plain and
partitioned tables) and tests/integration/test_detection.py (which asserts a few). Every
fault is the real thing, not a doctored statistic: writers pile onto one partition; a
REINDEX, an ALTER or a LOCK holds its locks while writers queue behind it; a mass DELETE
leaves dead index entries behind and a scan prunes the heap pages (so n_dead_tup
under-reports); rows clustered around one point swell one IVFFlat list; a standby stops
replaying while the primary writes. Each is an async context manager: entered, the fault is
on; left, it is undone (where it can be).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import asyncpg

from ruvectord.scenarios.collection import CollectionSpec, flush_stats
from ruvectord.scenarios.workload import Workload

HOT_SHARD = 3


@asynccontextmanager
async def hot_partition(
    dsn: str, spec: CollectionSpec, *, vector: bool, shard: int = HOT_SHARD, writers: int = 8
) -> AsyncIterator[Workload]:
    """A burst of writes on one partition: `writers` sessions, 10 rows a statement."""
    work = Workload(dsn, spec, vector=vector, seed=11)
    async with anyio.create_task_group() as tg:
        for _ in range(writers):
            tg.start_soon(lambda: work.writer([shard], rows_per_statement=10))
        yield work
        tg.cancel_scope.cancel()


@asynccontextmanager
async def blocking_maintenance(
    dsn: str,
    spec: CollectionSpec,
    statement: str,
    *,
    vector: bool,
    shards: list[int],
    writers: int = 4,
) -> AsyncIterator[asyncpg.Connection]:
    """A maintenance statement that holds its locks (its transaction stays open) while
    `writers` sessions try to insert into `shards` and queue behind it.

    `statement` is run as given, e.g. "REINDEX TABLE {p}", "LOCK TABLE {p} IN SHARE MODE"
    or "ALTER TABLE {p} ALTER COLUMN tenant SET DEFAULT 'x'"; {p} is replaced by the
    comma-separated tables of `shards`.
    """
    tables = ", ".join(dict.fromkeys(spec.partition_qualified(s) for s in shards))
    holder = await asyncpg.connect(dsn, timeout=10)
    work = Workload(dsn, spec, vector=vector, seed=12)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(statement.format(p=tables))
        async with anyio.create_task_group() as tg:
            for _ in range(writers):
                tg.start_soon(lambda: work.writer(shards))
            # watched from another session: the holder's last statement stays the maintenance
            watcher = await asyncpg.connect(dsn, timeout=10)
            try:
                await _until(
                    watcher, f"SELECT count(*) >= {writers} FROM pg_locks WHERE NOT granted"
                )
            finally:
                await watcher.close()
            yield holder
            await tx.rollback()  # the writers go through
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await holder.close(timeout=5)


async def mass_delete(
    conn: asyncpg.Connection, spec: CollectionSpec, *, shard: int, share: float = 0.45
) -> int:
    """Delete `share` of the rows of the table holding `shard` (the partition, or the whole
    plain table), with autovacuum held off, then scan it.

    The scan prunes the heap pages, as any reader would: n_dead_tup drops while the index
    still holds every deleted row's entry. Returns the rows deleted.
    """
    table = spec.partition_qualified(shard)
    await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    deleted = await conn.fetchval(
        f"WITH d AS (DELETE FROM {table} WHERE random() < $1 RETURNING 1) SELECT count(*) FROM d",
        share,
    )
    await flush_stats(conn)
    await conn.fetch(f"SELECT count(*) FROM {table}")  # page pruning
    await flush_stats(conn)
    return int(deleted)


async def skew_ivf_lists(
    conn: asyncpg.Connection, spec: CollectionSpec, *, shard: int, rows: int, seed: int = 5
) -> None:
    """Insert `rows` vectors clustered around one point of one partition: one IVFFlat list of
    its index swells. Then a checkpoint, as time would: the daemon reads list sizes from the
    index files, which see what the server has written out."""
    rng = random.Random(seed)
    centre = [rng.random() for _ in range(spec.dims)]
    values = [
        "[" + ",".join(f"{c + rng.uniform(-0.01, 0.01):.5f}" for c in centre) + "]"
        for _ in range(rows)
    ]
    await conn.execute(
        f"INSERT INTO {spec.qualified} (shard, embedding) "
        "SELECT $1, e::vector FROM unnest($2::text[]) AS e",
        shard,
        values,
    )
    await conn.execute("CHECKPOINT")


@asynccontextmanager
async def paused_replay(
    primary_dsn: str, standby_dsn: str, *, bytes_per_second: int = 2_000_000
) -> AsyncIterator[None]:
    """The standby stops replaying (pg_wal_replay_pause) while the primary keeps writing."""
    standby = await asyncpg.connect(standby_dsn, timeout=10)
    primary = await asyncpg.connect(primary_dsn, timeout=10)
    try:
        await primary.execute("CREATE TABLE IF NOT EXISTS wal_ballast (pad text)")
        await standby.execute("SELECT pg_wal_replay_pause()")

        async def write() -> None:
            rows = max(1, bytes_per_second // 10 // 250)
            while True:
                await primary.execute(
                    "INSERT INTO wal_ballast SELECT repeat('x', 200) FROM generate_series(1, $1)",
                    rows,
                )
                await anyio.sleep(0.1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            yield
            tg.cancel_scope.cancel()
        await standby.execute("SELECT pg_wal_replay_resume()")
    finally:
        with anyio.CancelScope(shield=True):
            await standby.close(timeout=5)
            await primary.close(timeout=5)


@asynccontextmanager
async def healthy_load(
    dsn: str,
    spec: CollectionSpec,
    *,
    vector: bool,
    sessions: int = 20,
    skewed: bool = False,
    pause: float = 0.05,
) -> AsyncIterator[Workload]:
    """`sessions` concurrent sessions, none of them a fault.

    Uniform: 60 % writers over every shard, the rest searching, half of those over the whole
    collection at once (every partition). Skewed-but-small: every session writes, 60 % of the
    rows to one shard, but each pauses long enough that the hot shard stays a small load.
    """
    work = Workload(dsn, spec, vector=vector, seed=13)
    shards = list(range(spec.partitions))
    async with anyio.create_task_group() as tg:
        if skewed:
            weighted = [HOT_SHARD] * (len(shards) + len(shards) // 2) + shards
            for _ in range(sessions):
                tg.start_soon(lambda: work.writer(weighted, pause=max(pause, 0.25)))
        else:
            n_writers = round(sessions * 0.6)
            for _ in range(n_writers):
                tg.start_soon(lambda: work.writer(shards, pause=pause))
            for i in range(sessions - n_writers):
                tg.start_soon(partial(work.reader, shards, pause=pause, everywhere=i % 2 == 0))
        yield work
        tg.cancel_scope.cancel()


async def _until(conn: asyncpg.Connection, sql: str, limit: float = 20.0) -> None:
    with anyio.fail_after(limit):
        while not await conn.fetchval(sql):  # noqa: ASYNC110 - nothing to wait on but the catalog
            await anyio.sleep(0.05)
