"""A partitioned vector collection and the writes that make it healthy or hot.

Shared by `ruvectord demo` and the integration and chaos tests, so what the demo shows is
what the tests assert. Rows are routed by an explicit `shard` column (LIST partitions), which
lets a scenario aim its writes at one partition. Without pgvector (the CI's PostgreSQL 15)
the vector column is a real[] and there is no vector index; everything else is the same.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import asyncpg

from ruvectord.identifiers import quote

THROTTLED_SQLSTATE = "RV429"


@dataclass(frozen=True)
class CollectionSpec:
    table: str = "items"
    schema: str = "public"
    partitions: int = 8
    dims: int = 16
    rows_per_partition: int = 200
    index: bool = True  # an HNSW index per partition, where pgvector exists

    @property
    def qualified(self) -> str:
        """As SQL (and the config file) would write it: quoted where needed."""
        return f"{quote(self.schema)}.{quote(self.table)}"

    def partition_name(self, shard: int) -> str:
        return f"{self.table}_p{shard}"


async def has_pgvector(conn: asyncpg.Connection) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')"
        )
    )


async def create_collection(conn: asyncpg.Connection, spec: CollectionSpec) -> bool:
    """Create (or recreate) the collection; returns whether it uses pgvector."""
    vector = await has_pgvector(conn)
    if vector:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    col_type = f"vector({spec.dims})" if vector else "real[]"
    q = _ident(spec.schema) + "." + _ident(spec.table)
    await conn.execute(f"DROP TABLE IF EXISTS {q} CASCADE")
    await conn.execute(
        f"""
        CREATE TABLE {q} (
            id bigint GENERATED ALWAYS AS IDENTITY,
            shard integer NOT NULL,
            tenant text NOT NULL DEFAULT 'default',
            embedding {col_type} NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        ) PARTITION BY LIST (shard)
        """
    )
    for shard in range(spec.partitions):
        part = _ident(spec.schema) + "." + _ident(spec.partition_name(shard))
        await conn.execute(f"CREATE TABLE {part} PARTITION OF {q} FOR VALUES IN ({shard})")
    await insert_rows(conn, spec, {s: spec.rows_per_partition for s in range(spec.partitions)})
    if vector and spec.index:
        await conn.execute(f"CREATE INDEX ON {q} USING hnsw (embedding vector_l2_ops)")
    await conn.execute(f"ANALYZE {q}")
    await grant_guard(conn, spec)
    return vector


async def grant_guard(conn: asyncpg.Connection, spec: CollectionSpec) -> None:
    """What deploy/sql/roles.sql does for a collection table: the role that owns ruvectord's
    functions may attach the throttle guard (the daemon's own role may not)."""
    if not await conn.fetchval("SELECT to_regrole('ruvector_owner') IS NOT NULL"):
        return
    q = _ident(spec.schema) + "." + _ident(spec.table)
    parts = await conn.fetch("SELECT relid::regclass::text AS rel FROM pg_partition_tree($1)", q)
    for p in parts:
        await conn.execute(f"GRANT TRIGGER ON TABLE {p['rel']} TO ruvector_owner")


async def insert_rows(
    conn: asyncpg.Connection, spec: CollectionSpec, per_shard: dict[int, int]
) -> int:
    """Insert the given number of random rows into each shard, in one statement."""
    shards: list[int] = []
    for shard, count in per_shard.items():
        shards.extend([shard] * count)
    if not shards:
        return 0
    q = _ident(spec.schema) + "." + _ident(spec.table)
    vector = await conn.fetchval(
        "SELECT format_type(atttypid, atttypmod) LIKE 'vector%' FROM pg_attribute "
        "WHERE attrelid = $1::regclass AND attname = 'embedding'",
        q,
    )
    cast = "::vector" if vector else ""
    await conn.execute(
        f"""
        INSERT INTO {q} (shard, embedding)
        SELECT s, (SELECT array_agg(random()::real) FROM generate_series(1, $2)
                    WHERE s IS NOT NULL){cast}
          FROM unnest($1::int[]) AS s
        """,
        shards,
        spec.dims,
    )
    return len(shards)


async def flush_stats(conn: asyncpg.Connection) -> None:
    """Make this session's table statistics visible to other sessions now (PostgreSQL 15+)."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT 1")  # the flush happens when the session next goes idle


def uniform(spec: CollectionSpec, rows: int, rng: random.Random) -> dict[int, int]:
    out = dict.fromkeys(range(spec.partitions), 0)
    for _ in range(rows):
        out[rng.randrange(spec.partitions)] += 1
    return out


def hot(spec: CollectionSpec, shard: int, rows: int, background: int = 0) -> dict[int, int]:
    out = dict.fromkeys(range(spec.partitions), background)
    out[shard] = rows
    return out


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
