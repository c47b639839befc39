"""What evicting rows to a cold tier costs the searches that must still find them.

An embedded PostgreSQL 18 with pgvector; a collection of 8 LIST partitions with an HNSW index
each, and a cold partition without one. A third of the rows (the oldest) are evicted there
through the same function evict_cold_data uses (ruvector.placement_move, batches of 200),
timed (rows moved per second). Before and after, same run: nearest-neighbour searches over
the whole collection (LIMIT 10) for queries near rows that get evicted ("cold") and near rows
that stay ("hot"), recall@10 against an exact scan, median and p95 latency; and the HNSW
index bytes (eviction alone does not shrink them; a REINDEX of the hot partitions does).

    .venv/bin/python bench/cold_tier.py [--rows-per-partition 1500] [--dims 32] [--queries 100]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import asyncpg

from ruvectord.config import Config
from ruvectord.embedded import EmbeddedPostgres
from ruvectord.postgres.migrations import migrate
from ruvectord.postgres.pool import ConnectOptions, Database
from ruvectord.postgres.store import Store
from ruvectord.scenarios.collection import COLD_SHARD, CollectionSpec, create_collection


async def _search(
    conn: asyncpg.Connection, queries: list[str], k: int
) -> tuple[float, float, float]:
    recalls, times = [], []
    for q in queries:
        truth = {
            r["id"]
            for r in await conn.fetch(
                f"SELECT id FROM items ORDER BY (embedding <-> $1::vector) + 0 LIMIT {k}", q
            )
        }
        t0 = time.perf_counter()
        got = await conn.fetch(
            f"SELECT id FROM items ORDER BY embedding <-> $1::vector LIMIT {k}", q
        )
        times.append((time.perf_counter() - t0) * 1000)
        recalls.append(len(truth & {r["id"] for r in got}) / k)
    times.sort()
    return statistics.mean(recalls), statistics.median(times), times[int(0.95 * (len(times) - 1))]


async def _index_bytes(conn: asyncpg.Connection) -> int:
    n: int = await conn.fetchval(
        "SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
        "WHERE am.amname = 'hnsw'"
    )
    return n


def _near(vec: str, rng: random.Random) -> str:
    values = [float(x) + rng.uniform(-0.01, 0.01) for x in vec.strip("[]").split(",")]
    return "[" + ",".join(f"{v:.5f}" for v in values) + "]"


async def main(rows: int, dims: int, n_queries: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="ruvectord-bench-cold-"))
    server = EmbeddedPostgres(root / "pgdata")
    dsn = await anyio.to_thread.run_sync(server.start)
    try:
        db = await Database.connect(ConnectOptions.from_config(Config().database, dsn))
        await migrate(db)
        spec = CollectionSpec(partitions=8, rows_per_partition=rows, dims=dims, placement=True)
        conn = await asyncpg.connect(dsn)
        await create_collection(conn, spec)
        await conn.execute(
            "UPDATE items SET created_at = now() - interval '40 days' WHERE id % 3 = 0"
        )
        await conn.execute("REINDEX TABLE items")
        await conn.execute("VACUUM ANALYZE items")
        config = Config.model_validate(
            {
                "database": {"dsn": dsn},
                "collections": [
                    {
                        "name": "items",
                        "table": "public.items",
                        "vector_column": "embedding",
                        "placement": spec.placement_config(),
                    }
                ],
            }
        )
        cid = (await Store(db).sync_collections(config))["items"]
        rng = random.Random(3)
        cold_rows = await conn.fetch("SELECT embedding::text AS e FROM items WHERE id % 3 = 0")
        hot_rows = await conn.fetch("SELECT embedding::text AS e FROM items WHERE id % 3 <> 0")
        cold_q = [_near(r["e"], rng) for r in rng.sample(list(cold_rows), n_queries)]
        hot_q = [_near(r["e"], rng) for r in rng.sample(list(hot_rows), n_queries)]
        await conn.execute("SET hnsw.ef_search = 40")

        before = {
            name: await _search(conn, q, 10) for name, q in (("cold", cold_q), ("hot", hot_q))
        }
        bytes_before = await _index_bytes(conn)

        moved, t0 = 0, time.perf_counter()
        for shard in range(spec.partitions):
            part = spec.partition_qualified(shard)
            while True:
                found = await db.fetch(
                    "SELECT key, value FROM ruvector.placement_candidates($1, $2::regclass, 200, "
                    "now() - interval '30 days')",
                    cid,
                    part,
                )
                if not found:
                    break
                keys = [r["key"] for r in found]
                done = await db.fetchval(
                    "SELECT ruvector.placement_move($1, $2::regclass, $3::regclass, $4::bigint[], "
                    "$5::text[], $6::text[])",
                    cid,
                    part,
                    spec.cold_qualified,
                    keys,
                    [r["value"] for r in found],
                    [str(COLD_SHARD)] * len(keys),
                )
                moved += len(done)
        seconds = time.perf_counter() - t0
        await conn.execute("VACUUM ANALYZE items")
        after = {name: await _search(conn, q, 10) for name, q in (("cold", cold_q), ("hot", hot_q))}
        bytes_after = await _index_bytes(conn)
        for shard in range(spec.partitions):
            await conn.execute(f"REINDEX TABLE {spec.partition_qualified(shard)}")
        bytes_reindexed = await _index_bytes(conn)
        await conn.close()
        await db.close()

        total = spec.partitions * rows
        print(f"collection: 8 partitions x {rows} rows, {dims} dims, HNSW (m 16, ef_search 40);")
        print(
            f"evicted {moved} of {total} rows to the cold partition (no index) in {seconds:.2f} s:"
            f" {moved / seconds:.0f} rows/s in batches of 200"
        )
        print(f"{'queries near':<14}{'':>4}{'recall@10':>11}{'median ms':>11}{'p95 ms':>9}")
        for name in ("hot", "cold"):
            for when, res in (("before", before[name]), ("after", after[name])):
                r, med, p95 = res
                print(f"{name + ' rows':<14}{when:>7}{r:>9.3f}{med:>11.2f}{p95:>9.2f}")
        print(
            f"HNSW bytes: before {bytes_before:,}; after eviction + VACUUM {bytes_after:,}; "
            f"after REINDEX of the hot partitions {bytes_reindexed:,}"
        )
    finally:
        await anyio.to_thread.run_sync(server.destroy)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows-per-partition", type=int, default=1500)
    ap.add_argument("--dims", type=int, default=32)
    ap.add_argument("--queries", type=int, default=100)
    a = ap.parse_args()
    anyio.run(main, a.rows_per_partition, a.dims, a.queries)
