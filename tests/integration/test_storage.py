"""Bounded storage on a real server: WAL per sample, graph snapshots, retention, pruned audit."""

from __future__ import annotations

from pathlib import Path

from ruvectord.postgres.pool import Database
from ruvectord.scenarios.collection import CollectionSpec
from tests.helpers import collection, harness, make_config

WIDE = CollectionSpec(partitions=64, rows_per_partition=2, index=False)
WAL_PER_SAMPLE_BOUND = 4096


async def _wal_lsn(db: Database) -> int:
    value = await db.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')")
    return int(value)


async def test_steady_state_wal_per_sample_is_bounded_at_64_partitions(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, WIDE):
        h = await harness(db, make_config(dsn, state_dir, WIDE))
        monitor = h.monitor("items")
        for _ in range(5):  # warm-up: the first graph snapshot, the state row, caches
            h.clock.advance(1)
            await monitor.cycle()
        samples = 40
        before = await _wal_lsn(db)
        for _ in range(samples):
            h.clock.advance(1)
            await monitor.cycle()
        per_sample = (await _wal_lsn(db) - before) / samples
        assert per_sample <= WAL_PER_SAMPLE_BOUND, f"{per_sample:.0f} bytes of WAL a sample"
