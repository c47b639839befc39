"""The sampler on a real PostgreSQL: the structure it keeps between samples never goes stale,
and a sample's catalog reads follow the collection's size, not the database's.

The adversary is a careless (or busy) DBA: partitions attached, detached, renamed and
sub-partitioned, indexes created, renamed and re-optioned, the table dropped and recreated under
the same name -- each must show in the very next sample, while a sample on an unchanged catalog
reads none of the structure again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ruvectord.clock import ManualClock
from ruvectord.errors import CollectionError
from ruvectord.integrity.snapshot import Snapshot
from ruvectord.postgres.pool import Database
from ruvectord.postgres.sampler import STRUCTURE_SECONDS, Sampler, sample_statement
from ruvectord.scenarios.collection import CollectionSpec, flush_stats, has_pgvector
from tests.helpers import collection, make_config

SPEC = CollectionSpec(partitions=4, rows_per_partition=5, dims=4)


def names(snap: Snapshot) -> set[str]:
    return {p.name for p in snap.partitions}


async def test_the_next_sample_sees_each_catalog_change_and_only_a_change_rereads_it(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        vector = await has_pgvector(conn)
        sampler = Sampler(db, make_config(dsn, state_dir, SPEC).collections[0])
        clock = ManualClock()

        async def sample(rereads: int) -> Snapshot:
            before = sampler.structure_reads
            snap = await sampler.sample(clock.now(), None, host_memory=False)
            assert sampler.structure_reads - before == rereads
            return snap

        first = await sample(1)
        assert names(first) == {f"public.items_p{i}" for i in range(4)}
        # new rows, VACUUM and ANALYZE change statistics and sizes in place: no re-read
        await conn.execute("INSERT INTO items (shard, embedding) SELECT 1, embedding FROM items_p0")
        await conn.execute("VACUUM ANALYZE items")
        await flush_stats(conn)
        for _ in range(3):
            again = await sample(0)
        assert again.partitions[1].inserts > first.partitions[1].inserts

        await conn.execute("CREATE TABLE items_p100 PARTITION OF items FOR VALUES IN (100)")
        assert "public.items_p100" in names(await sample(1))
        await conn.execute("ALTER TABLE items_p100 RENAME TO items_renamed")
        assert "public.items_renamed" in names(await sample(1))

        # a partition that is itself partitioned: its leaves are the collection's
        await conn.execute(
            "CREATE TABLE items_sub PARTITION OF items FOR VALUES IN (200, 201, 202) "
            "PARTITION BY LIST (shard)"
        )
        await conn.execute("CREATE TABLE items_sub_a PARTITION OF items_sub FOR VALUES IN (200)")
        snap = await sample(1)
        assert {"public.items_sub_a"} <= names(snap) and "public.items_sub" not in names(snap)
        await conn.execute("CREATE TABLE items_sub_b PARTITION OF items_sub FOR VALUES IN (201)")
        assert {"public.items_sub_a", "public.items_sub_b"} <= names(await sample(1))

        # an index, renamed, its options changed
        if vector:
            await conn.execute(
                "CREATE INDEX items_renamed_hnsw ON items_renamed USING hnsw "
                "(embedding vector_l2_ops) WITH (m = 8)"
            )
            snap = await sample(1)
            made = {ix.name: ix for ix in snap.indexes}["public.items_renamed_hnsw"]
            assert made.options == {"m": "8"} and made.valid
            await conn.execute("ALTER INDEX items_renamed_hnsw RENAME TO items_hnsw_2")
            await conn.execute("ALTER INDEX items_hnsw_2 SET (ef_construction = 40)")
            snap = await sample(1)
            changed = {ix.name: ix for ix in snap.indexes}["public.items_hnsw_2"]
            assert changed.options == {"m": "8", "ef_construction": "40"}
            assert "public.items_renamed_hnsw" not in {ix.name for ix in snap.indexes}
        else:
            await conn.execute("CREATE INDEX items_renamed_shard ON items_renamed (shard)")
            snap = await sample(1)
            renamed = {p.name: p for p in snap.partitions}["public.items_renamed"]
            assert renamed.index_bytes > 0

        await conn.execute("ALTER TABLE items DETACH PARTITION items_sub")
        snap = await sample(1)
        assert not {"public.items_sub_a", "public.items_sub_b"} & names(snap)

        # dropped and made again under the same name: new relations, read afresh
        old = {p.oid for p in snap.partitions}
        kind = await conn.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'items'::regclass AND attname = 'embedding'"
        )
        await conn.execute("DROP TABLE items, items_sub CASCADE")
        with pytest.raises(CollectionError, match="does not exist"):
            await sampler.sample(clock.now(), None, host_memory=False)
        await conn.execute(
            f"CREATE TABLE items (shard int NOT NULL, embedding {kind}) PARTITION BY LIST (shard)"
        )
        await conn.execute("CREATE TABLE items_q PARTITION OF items FOR VALUES IN (1)")
        snap = await sampler.sample(clock.now(), None, host_memory=False)
        assert names(snap) == {"public.items_q"} and not {p.oid for p in snap.partitions} & old

        # and with nothing changed, the structure is still read every STRUCTURE_SECONDS
        await sample(0)
        clock.advance(STRUCTURE_SECONDS)
        await sample(1)


async def test_a_dropped_column_fails_the_next_sample(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        sampler = Sampler(db, make_config(dsn, state_dir, SPEC).collections[0])
        clock = ManualClock()
        await sampler.sample(clock.now(), None, host_memory=False)
        await conn.execute("ALTER TABLE items DROP COLUMN embedding")
        with pytest.raises(CollectionError, match="column 'embedding' does not exist"):
            await sampler.sample(clock.now(), None, host_memory=False)


def _scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(plan["Node Type"], plan.get("Relation Name", ""))]
    for child in plan.get("Plans", ()):
        found += _scans(child)
    return found


@pytest.mark.parametrize("mode", ["force_generic_plan", "force_custom_plan"])
async def test_a_sample_reads_the_catalog_through_indexes_only(
    db: Database, dsn: str, state_dir: Path, mode: str
) -> None:
    """With 40 other tables of 50 partitions each in the database (and a primary key on each:
    2,000 more indexes), no catalog table is read in full."""
    async with collection(dsn, SPEC) as conn:
        await conn.execute(
            "DO $$ BEGIN FOR i IN 1..40 LOOP "
            "EXECUTE format('CREATE TABLE other_%s (k int PRIMARY KEY) PARTITION BY LIST (k)', i); "
            "FOR j IN 1..50 LOOP "
            "EXECUTE format('CREATE TABLE other_%s_%s PARTITION OF other_%s FOR VALUES IN (%s)', "
            "i, j, i, j); "
            "END LOOP; END LOOP; END $$"
        )
        await conn.execute("ANALYZE pg_class, pg_inherits, pg_index, pg_attribute")
        sampler = Sampler(db, make_config(dsn, state_dir, SPEC).collections[0])
        await sampler.sample(ManualClock().now(), None, host_memory=False)
        structure = sampler._structure
        assert structure is not None
        conn2: asyncpg.Connection = await asyncpg.connect(dsn)
        try:
            await conn2.execute(f"SET plan_cache_mode = {mode}")
            c = sampler.collection
            raw = await conn2.fetchval(
                "EXPLAIN (FORMAT JSON) " + sample_statement(cron=False, centroids=False),
                c.schema_name,
                c.table_name,
                c.vector_attname,
                c.tenant_attname,
                structure.parents,
                (),
            )
        finally:
            await conn2.close()
        scans = _scans(json.loads(raw)[0]["Plan"])
        catalog = {"pg_class", "pg_inherits", "pg_index", "pg_attribute"}
        assert any(kind == "Index Scan" and rel == "pg_class" for kind, rel in scans), scans
        assert not [s for s in scans if s[0] == "Seq Scan" and s[1] in catalog], scans
