"""Benchmark what ruvectord adds to a writer's path, on a real embedded PostgreSQL 18.

Usage: PYTHONPATH=. .venv/bin/python bench/gate.py [--calls N] [--rounds N] [--partitions 8,64,256]

1. ruvector_integrity_gate(): server-side cost per call (a PL/pgSQL loop, so no network),
   side by side with the cheapest possible function call, and the design's bar (100 ms).
2. The throttle guard trigger: single-row inserts with the guard installed (no throttle set)
   against the same inserts without it, and against the guard before per-tenant throttles
   (schema v8's, kept here verbatim); then with a throttle in force on another tenant (the
   rows pass, but the guard reads each row's tenant).
3. The sampler: one sample of a collection with 8, 64 and 256 partitions, against a plain
   `SELECT count(*) FROM pg_stat_user_tables` (the reference: one catalog round trip).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
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
    """Per row; shards 0..6 (shard 7 is the tenant a throttle may target)."""
    sample = await conn.fetchval("SELECT embedding::text FROM public.items LIMIT 1")
    started = time.perf_counter()
    async with conn.transaction():
        for i in range(n):
            await conn.execute(
                "INSERT INTO public.items (shard, embedding) VALUES ($1, $2::vector)",
                i % 7,
                sample,
            )
    return (time.perf_counter() - started) / n * 1e6


# The guard of schema v4..v8, before per-tenant throttles: the "before" of the comparison.
GUARD_V8 = """
CREATE FUNCTION public.bench_guard_v8() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    asked text := lower(nullif(current_setting('ruvector.operation', true), ''));
    t record;
    roll bigint;
BEGIN
    IF asked IS NULL OR asked = 'point_insert' THEN
        asked := 'insert';
    END IF;
    SELECT th.operation, th.throttle_pct, th.retry_after_seconds, th.action_id INTO t
      FROM ruvector.throttles th
     WHERE th.collection_id = TG_ARGV[0]::integer
       AND th.operation IN ('insert', asked)
       AND th.throttle_pct > 0
       AND th.expires_at > statement_timestamp()
     ORDER BY th.throttle_pct DESC
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN NEW;
    END IF;
    roll := hashtextextended(statement_timestamp()::text || '/' || pg_backend_pid(),
                             TG_ARGV[0]::bigint);
    IF t.throttle_pct >= 100 OR ((roll % 100) + 100) % 100 < t.throttle_pct THEN
        RAISE EXCEPTION 'throttled' USING ERRCODE = 'RV429';
    END IF;
    RETURN NEW;
END
$$
"""


VARIANTS = ("none", "v8", "v9", "v9 tenant")


async def set_variant(conn: asyncpg.Connection, table: str, cid: int, variant: str) -> None:
    """Put exactly one guard variant on `table` (as the superuser: DROP TRIGGER needs the
    table's owner, which ruvector_owner, who installs the guard, is not)."""
    await conn.execute(f"DROP TRIGGER IF EXISTS bench_guard ON {table}")
    await conn.execute(f"DROP TRIGGER IF EXISTS ruvector_throttle_guard ON {table}")
    await conn.execute("DELETE FROM ruvector.throttles WHERE collection_id = $1", cid)
    if variant == "v8":
        await conn.execute(
            f"CREATE TRIGGER bench_guard BEFORE INSERT ON {table} FOR EACH ROW "
            f"EXECUTE FUNCTION public.bench_guard_v8('{cid}')"
        )
    elif variant.startswith("v9"):
        await conn.execute("SELECT ruvector.install_throttle_guard($1)", cid)
    if variant == "v9 tenant":  # rows of tenant 7 turned away; the bench writes 0..6
        await conn.execute(
            "INSERT INTO ruvector.throttles (collection_id, operation, throttle_pct, tenant, "
            "expires_at) VALUES ($1, 'insert', 100, '7', now() + interval '1 hour')",
            cid,
        )


async def guard_runs(
    conn: asyncpg.Connection,
    table: str,
    cid: int,
    rounds: int,
    run: Callable[[], Awaitable[float]],
) -> dict[str, float]:
    """Median per row of each variant over `rounds` rounds, the order rotated every round so
    that the table's growth favours none of them."""
    runs: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for r in range(rounds):
        for i in range(len(VARIANTS)):
            variant = VARIANTS[(i + r) % len(VARIANTS)]
            await set_variant(conn, table, cid, variant)
            runs[variant].append(await run())
    await set_variant(conn, table, cid, "none")
    return {k: statistics.median(v) for k, v in runs.items()}


async def loop_inserts_us(conn: asyncpg.Connection, table: str, n: int) -> float:
    """Per row, inside one DO block: no round trips, so the guard's own cost stands out."""
    started = time.perf_counter()
    await conn.execute(
        f"DO $$ BEGIN FOR i IN 1..{n} LOOP "
        f"INSERT INTO {table} (shard, embedding) VALUES (i % 7, '{{0.5,0.5}}'); "
        "END LOOP; END $$"
    )
    return (time.perf_counter() - started) / n * 1e6


def report(per_row: dict[str, float], *, absolute: bool = False) -> None:
    without = per_row["none"]
    print(f"   {'without the guard':<44} {without:9.1f} µs")
    for key, label in (
        ("v8", "guard of v8 (before tenants), no throttle"),
        ("v9", "guard of v9 (tenants), no throttle"),
        ("v9 tenant", "guard of v9, another tenant throttled"),
    ):
        value = per_row[key]
        extra = (
            f"+{value - without:5.1f} µs" if absolute else f"{100 * (value / without - 1):+5.1f} %"
        )
        print(f"   {label:<44} {value:9.1f} µs   overhead {extra}")


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


async def main(calls: int, rounds: int, partitions: tuple[int, ...]) -> None:
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
            "INSERT INTO ruvector.collections (name, table_schema, table_name, vector_column, "
            "tenant_column) VALUES ('items', 'public', 'items', 'embedding', 'shard') RETURNING id"
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

        tenant_gate = await server_loop_us(
            conn, "ruvector_integrity_gate('items', 'bulk_insert', tenant => '3')", calls
        )
        print(f"   {'the same, tenant => ...':<28} {tenant_gate:9.1f} µs   (no tenant scopes)")
        await conn.execute(
            "INSERT INTO ruvector.tenant_state (collection_id, tenant, state, lambda_cut, "
            "last_sample_at) SELECT $1, t, 'stress', 0.5, now() "
            "FROM unnest(ARRAY['0', '1', '2', '3', '(other)']) t",
            cid,
        )
        tenant_gate = await server_loop_us(
            conn, "ruvector_integrity_gate('items', 'bulk_insert', tenant => '3')", calls
        )
        print(f"   {'the same, tenant => ...':<28} {tenant_gate:9.1f} µs   (5 tenant scopes)")

        await conn.execute(GUARD_V8)
        await inserts_us(conn, 2000)  # warm up: caches, the HNSW graph's first levels
        per_row = await guard_runs(
            conn, "public.items", cid, rounds, lambda: inserts_us(conn, 2000)
        )
        print(
            "2. single-row insert into a partitioned pgvector table (HNSW), per row, "
            f"median of {rounds} rotating runs of 2000"
        )
        report(per_row)
        # the guard's own cost: the same inserts from a server-side loop, no vector index
        bare = CollectionSpec(table="bare", rows_per_partition=10, index=False, dims=2)
        await create_collection(conn, bare)
        await conn.execute("ALTER TABLE public.bare ALTER COLUMN embedding TYPE real[]")
        bare_id = await conn.fetchval(
            "INSERT INTO ruvector.collections (name, table_schema, table_name, vector_column, "
            "tenant_column) VALUES ('bare', 'public', 'bare', 'embedding', 'shard') RETURNING id"
        )
        per_row = await guard_runs(
            conn,
            "public.bare",
            bare_id,
            rounds,
            lambda: loop_inserts_us(conn, "public.bare", 20000),
        )
        print(
            "   the guard's own cost: 20000 inserts from a server-side loop into 8 partitions "
            f"without a vector index, median of {rounds} rotating runs"
        )
        report(per_row, absolute=True)

        print("3. one integrity sample (all catalog/statistics queries), by partition count")
        reference = await catalog_ms(db)
        print(f"   {'reference: pg_stat_user_tables count':<38} {reference:7.2f} ms")
        for count in partitions:
            spec = CollectionSpec(partitions=count, rows_per_partition=10, index=False)
            await create_collection(conn, spec)
            ms = await sample_ms(db, spec)
            print(
                f"   {f'{count} partitions':<38} {ms:7.2f} ms   "
                f"sample/reference {ms / reference:5.1f}x"
            )
        await conn.close()
        await db.close()
    finally:
        await anyio.to_thread.run_sync(server.destroy)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating insert runs")
    parser.add_argument(
        "--partitions", default="8,64,256", help="sampler cases, comma-separated ('' for none)"
    )
    args = parser.parse_args()
    cases = tuple(int(p) for p in args.partitions.split(",") if p)
    anyio.run(main, args.calls, args.rounds, cases)
