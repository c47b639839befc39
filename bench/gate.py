"""Benchmark what ruvectord adds to a writer's path, on a real embedded PostgreSQL 18.

Usage: .venv/bin/python bench/gate.py [--calls N]

1. ruvector_integrity_gate(): server-side cost per call (a PL/pgSQL loop, so no network),
   side by side with the cheapest possible function call, and the design's bar (100 ms).
2. The throttle guard trigger: single-row inserts with the guard installed (no throttle set)
   against the same inserts without it.
3. The sampler: one sample of a collection with 8, 64 and 256 partitions, against a plain
   `SELECT count(*) FROM pg_stat_user_tables` (the reference: one catalog round trip).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import asyncpg

from ruvectord.config import CollectionConfig, DatabaseConfig
from ruvectord.embedded import EmbeddedPostgres
from ruvectord.logs import setup_logging
from ruvectord.postgres.migrations import migrate
from ruvectord.postgres.pool import ConnectOptions, Database
from ruvectord.postgres.sampler import Sampler
from ruvectord.scenarios.collection import CollectionSpec, create_collection


async def server_loop_us(conn: asyncpg.Connection, expr: str, calls: int) -> float:
    """Median of 5 runs of `calls` evaluations inside one DO block, in µs per call."""
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        await conn.execute(f"DO $$ BEGIN FOR i IN 1..{calls} LOOP PERFORM {expr}; END LOOP; END $$")
        runs.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(runs)


async def inserts_us(conn: asyncpg.Connection, n: int) -> float:
    sample = await conn.fetchval("SELECT embedding::text FROM public.items LIMIT 1")
    runs = []
    for _ in range(1):
        started = time.perf_counter()
        async with conn.transaction():
            for i in range(n):
                await conn.execute(
                    "INSERT INTO public.items (shard, embedding) VALUES ($1, $2::vector)",
                    i % 8,
                    sample,
                )
        runs.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(runs)


async def sample_ms(db: Database, spec: CollectionSpec, repeats: int = 15) -> float:
    sampler = Sampler(
        db, CollectionConfig(name="items", table="public.items", vector_column="embedding")
    )
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        await sampler.sample(datetime.now(UTC), None, host_memory=False)
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs)


async def catalog_ms(db: Database, repeats: int = 15) -> float:
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        await db.fetchval("SELECT count(*) FROM pg_stat_user_tables")
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs)


async def main(calls: int) -> None:
    setup_logging("warning")
    root = Path(tempfile.mkdtemp(prefix="ruvectord-bench-"))
    server = EmbeddedPostgres(root / "pgdata")
    dsn = await anyio.to_thread.run_sync(server.start)
    try:
        db = await Database.connect(ConnectOptions.from_config(DatabaseConfig(dsn=dsn)))
        await migrate(db)
        conn = await asyncpg.connect(dsn)
        spec = CollectionSpec(partitions=8, rows_per_partition=100)
        await create_collection(conn, spec)
        cid = await conn.fetchval(
            "INSERT INTO ruvector.collections (name, table_schema, table_name, vector_column) "
            "VALUES ('items', 'public', 'items', 'embedding') RETURNING id"
        )
        await conn.execute(
            "INSERT INTO ruvector.integrity_state (collection_id, state, lambda_cut, "
            "last_sample_at) VALUES ($1, 'stress', 0.5, now())",
            cid,
        )
        await conn.execute(
            "CREATE FUNCTION bench_noop(text, text) RETURNS jsonb LANGUAGE sql STABLE "
            "AS $$ SELECT '{}'::jsonb $$"
        )
        gate = await server_loop_us(conn, "ruvector_integrity_gate('items', 'bulk_insert')", calls)
        noop = await server_loop_us(conn, "bench_noop('items', 'bulk_insert')", calls)
        print("1. gate, server-side cost per call (state stress, medium risk)")
        print(f"   {'ruvector_integrity_gate':<28} {gate:9.1f} µs")
        noop_label, bar_label = "reference: a no-op SQL call", "the design bar (100 ms)"
        print(f"   {noop_label:<28} {noop:9.1f} µs   gate/no-op {gate / noop:6.1f}x")
        print(f"   {bar_label:<28} {100_000:9.0f} µs   bar/gate  {100_000 / gate:8.0f}x")

        await inserts_us(conn, 2000)  # warm up: caches, the HNSW graph's first levels
        plain, guarded = [], []
        for _ in range(3):  # alternate, so drift in the table's size hits both alike
            plain.append(await inserts_us(conn, 2000))
            await conn.execute(
                "SELECT ruvector.install_throttle_guard('public.items'::regclass, $1)", cid
            )
            guarded.append(await inserts_us(conn, 2000))
            await conn.execute("SELECT ruvector.remove_throttle_guard('public.items'::regclass)")
        without, with_guard = statistics.median(plain), statistics.median(guarded)
        print(
            "2. single-row insert into a partitioned pgvector table (HNSW), per row, "
            "median of 3 alternating runs of 2000"
        )
        print(f"   {'without the guard':<28} {without:9.1f} µs")
        print(
            f"   {'with the guard, no throttle':<28} {with_guard:9.1f} µs   "
            f"overhead {100 * (with_guard / without - 1):+5.1f} %"
        )

        print("3. one integrity sample (all catalog/statistics queries), by partition count")
        reference = await catalog_ms(db)
        print(f"   {'reference: pg_stat_user_tables count':<38} {reference:7.2f} ms")
        for partitions in (8, 64, 256):
            spec = CollectionSpec(partitions=partitions, rows_per_partition=10, index=False)
            await create_collection(conn, spec)
            ms = await sample_ms(db, spec)
            print(
                f"   {f'{partitions} partitions':<38} {ms:7.2f} ms   "
                f"sample/reference {ms / reference:5.1f}x"
            )
        await conn.close()
        await db.close()
    finally:
        await anyio.to_thread.run_sync(server.destroy)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    anyio.run(main, parser.parse_args().calls)
