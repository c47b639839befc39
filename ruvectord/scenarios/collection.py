"""A vector collection (partitioned or plain) and the writes that make it healthy or hot.

Shared by `ruvectord demo`, bench/detection.py and the integration and chaos tests, so what
the demo shows is what the tests assert. Rows carry an explicit `shard` column; partitioned,
it routes them (LIST partitions), which lets a scenario aim its writes at one partition;
plain, every shard lives in the one table. Without pgvector (the CI's PostgreSQL 15) the
vector column is a real[] and there is no vector index; everything else is the same.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import asyncpg

from ruvectord.identifiers import quote

THROTTLED_SQLSTATE = "RV429"
COLD_SHARD = -1


@dataclass(frozen=True)
class CollectionSpec:
    table: str = "items"
    schema: str = "public"
    partitions: int = 8
    dims: int = 16
    rows_per_partition: int = 200
    index: bool = True  # a vector index per partition, where pgvector exists
    plain: bool = False  # one plain table holding every shard, instead of LIST partitions
    method: str = "hnsw"  # the vector index: hnsw or ivfflat
    lists: int = 10  # IVFFlat lists per index
    # a cold tier for evict_cold_data (partition {table}_cold, shard COLD_SHARD, without a
    # vector index) and the grants deploy/sql/roles.sql -v placement=... gives for moving rows
    placement: bool = False

    @property
    def qualified(self) -> str:
        """As SQL (and the config file) would write it: quoted where needed."""
        return f"{quote(self.schema)}.{quote(self.table)}"

    @property
    def shape(self) -> str:
        return "plain" if self.plain else f"{self.partitions} partitions"

    def partition_name(self, shard: int) -> str:
        """The table that holds a shard's rows."""
        return self.table if self.plain else f"{self.table}_p{shard}"

    def partition_qualified(self, shard: int) -> str:
        return _ident(self.schema) + "." + _ident(self.partition_name(shard))

    @property
    def cold_qualified(self) -> str:
        return _ident(self.schema) + "." + _ident(f"{self.table}_cold")

    def placement_config(self, **bounds: object) -> dict[str, object]:
        """The collection's `placement` section, as a config file would declare it."""
        return {
            "column": "shard",
            "key_column": "id",
            "cold": {"value": COLD_SHARD, "age_column": "created_at", "min_age_seconds": 86400},
            **bounds,
        }


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
        ) {"" if spec.plain else "PARTITION BY LIST (shard)"}
        """
    )
    if not spec.plain:
        for shard in range(spec.partitions):
            part = spec.partition_qualified(shard)
            await conn.execute(f"CREATE TABLE {part} PARTITION OF {q} FOR VALUES IN ({shard})")
        if spec.placement:
            await conn.execute(
                f"CREATE TABLE {spec.cold_qualified} PARTITION OF {q} FOR VALUES IN ({COLD_SHARD})"
            )
    await insert_rows(conn, spec, {s: spec.rows_per_partition for s in range(spec.partitions)})
    # flushed before ANALYZE: flushed after, this session's inserts would count twice in
    # n_live_tup (ANALYZE sets it, then the pending inserts are added on top)
    await flush_stats(conn)
    if vector and spec.index:
        if spec.method == "ivfflat":
            method = f"ivfflat (embedding vector_l2_ops) WITH (lists = {int(spec.lists)})"
        else:
            method = "hnsw (embedding vector_l2_ops)"
        if spec.placement and not spec.plain:
            # one index per hot partition: the cold tier has none (what eviction saves)
            for shard in range(spec.partitions):
                await conn.execute(
                    f"CREATE INDEX ON {spec.partition_qualified(shard)} USING {method}"
                )
        else:
            await conn.execute(f"CREATE INDEX ON {q} USING {method}")
    if spec.placement:
        await conn.execute(f"CREATE INDEX ON {q} (id)")  # batches name rows by key
    await conn.execute(f"ANALYZE {q}")
    await grant_guard(conn, spec)
    if spec.placement:
        await grant_placement(conn, spec)
    return vector


async def grant_placement(conn: asyncpg.Connection, spec: CollectionSpec) -> None:
    """What `deploy/sql/roles.sql -v placement=TABLE:shard:id:created_at` does: the owner may
    read the key, placement and age columns, change the placement column, and lock each
    partition (MAINTAIN on 17+, UPDATE before)."""
    if not await conn.fetchval("SELECT to_regrole('ruvector_owner') IS NOT NULL"):
        return
    maintain = await conn.fetchval("SELECT current_setting('server_version_num')::int >= 170000")
    q = _ident(spec.schema) + "." + _ident(spec.table)
    parts = await conn.fetch(
        "SELECT relid::regclass::text AS rel, isleaf FROM pg_partition_tree($1)", q
    )
    for p in parts:
        await conn.execute(
            f"GRANT SELECT (id, shard, created_at), UPDATE (shard) ON {p['rel']} TO ruvector_owner"
        )
        if p["isleaf"]:
            lock = "MAINTAIN" if maintain else "UPDATE"
            await conn.execute(f"GRANT {lock} ON {p['rel']} TO ruvector_owner")


async def grant_canary(conn: asyncpg.Connection, spec: CollectionSpec) -> None:
    """What `deploy/sql/roles.sql -v canary=on` does: the owner may read every partition, so
    the recall canary of compact_indexes and rebuild_centroids can sample probe vectors and
    compare exact and index searches."""
    if not await conn.fetchval("SELECT to_regrole('ruvector_owner') IS NOT NULL"):
        return
    q = _ident(spec.schema) + "." + _ident(spec.table)
    parts = await conn.fetch("SELECT relid::regclass::text AS rel FROM pg_partition_tree($1)", q)
    for p in parts:
        await conn.execute(f"GRANT SELECT ON TABLE {p['rel']} TO ruvector_owner")


async def grant_guard(conn: asyncpg.Connection, spec: CollectionSpec) -> None:
    """What deploy/sql/roles.sql does for a collection table: the role that owns ruvectord's
    functions may attach the throttle guard (the daemon's own role may not), and read IVFFlat
    list sizes from the index pages (`-v ivf_pages=on`)."""
    if not await conn.fetchval("SELECT to_regrole('ruvector_owner') IS NOT NULL"):
        return
    q = _ident(spec.schema) + "." + _ident(spec.table)
    parts = await conn.fetch("SELECT relid::regclass::text AS rel FROM pg_partition_tree($1)", q)
    for p in parts:
        await conn.execute(f"GRANT TRIGGER ON TABLE {p['rel']} TO ruvector_owner")
    # and, as `-v ivf_pages=on` does, IVFFlat list sizes read from the index pages
    await conn.execute(
        "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, "
        "boolean) TO ruvector_owner"
    )


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
