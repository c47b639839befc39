"""The detection suite's CI subset: real faults, plain and partitioned, read as their class.

bench/detection.py runs every fault class with real time and prints the confusion matrix;
these run a few of the same faults (ruvectord/scenarios/faults.py) with the injected clock and
assert the class the classifier gives once the collection is in stress. Also the sampler's
own pieces: a collection-wide statement counts once, IVFFlat list sizes come from the index
pages, a bad centroid_stats row is skipped instead of failing every sample.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from structlog.testing import capture_logs

from ruvectord.config import Config
from ruvectord.healing.problems import (
    CentroidSkew,
    IndexFragmentation,
    MaintenanceContention,
    Problem,
    classify,
)
from ruvectord.integrity.hysteresis import State
from ruvectord.integrity.monitor import CollectionMonitor, Cycle
from ruvectord.postgres.pool import Database
from ruvectord.postgres.sampler import Sampler
from ruvectord.scenarios import faults
from ruvectord.scenarios.collection import CollectionSpec, create_collection, flush_stats
from tests.helpers import Harness, connect, harness, make_config

SHAPES = ["plain", "partitioned"]


def spec_for(shape: str, **extra: object) -> CollectionSpec:
    return CollectionSpec(
        partitions=8,
        rows_per_partition=300,
        plain=shape == "plain",
        **extra,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def watched(
    db: Database,
    dsn: str,
    state_dir: Path,
    spec: CollectionSpec,
    *,
    checkpoint: bool = False,
    integrity: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[asyncpg.Connection, Harness, CollectionMonitor]]:
    conn = await connect(dsn)
    try:
        await create_collection(conn, spec)
        if checkpoint:
            await conn.execute("CHECKPOINT")  # IVFFlat list sizes are read from written pages
        config: Config = make_config(dsn, state_dir, spec, integrity=integrity or {})
        h = await harness(db, config)
        c = config.collections[0]
        sampler = Sampler(db, c, ivf_refresh_seconds=0)
        monitor = CollectionMonitor(h.runtime, c, h.ids[c.name], sampler)
        first = await monitor.cycle()
        assert first.state is State.NORMAL and first.lambda_cut == 1.0, first.result.witness_edges
        yield conn, h, monitor
    finally:
        await conn.close()


async def until_degraded(h: Harness, monitor: CollectionMonitor, pause: float = 0.0) -> Cycle:
    """Sample once a (manual) second until the state leaves normal; at most 10 samples."""
    for _ in range(10):
        if pause:
            await anyio.sleep(pause)
        h.clock.advance(1)
        cycle = await monitor.cycle()
        if cycle.state is not State.NORMAL:
            return cycle
    raise AssertionError(f"still normal: lambda {cycle.lambda_cut}, {cycle.result.summary()}")


def problem(h: Harness, cycle: Cycle) -> Problem:
    return classify(cycle.result, cycle.snapshot, h.config.healing.classifier)


@pytest.mark.pgvector
@pytest.mark.parametrize("shape", SHAPES)
async def test_mass_delete_reads_as_fragmentation_on_every_shape(
    db: Database, dsn: str, state_dir: Path, shape: str
) -> None:
    spec = spec_for(shape)
    async with watched(db, dsn, state_dir, spec) as (conn, h, monitor):
        deleted = await faults.mass_delete(conn, spec, shard=faults.HOT_SHARD, share=0.45)
        assert deleted > 0
        cycle = await until_degraded(h, monitor)
        found = problem(h, cycle)
        assert isinstance(found, IndexFragmentation), found
        (name,) = found.index_names
        table = spec.partition_name(faults.HOT_SHARD)
        assert name.startswith(f"public.{table}_")
        assert found.fragmentation_pct >= 30  # about 45 % of the entries are dead
        index = next(n for n in cycle.result.graph.nodes if n.name == name)
        # the size estimate does not depend on n_dead_tup, which pruning lowers
        assert index.attrs["bloat_pct"] >= 25


@pytest.mark.parametrize("shape", SHAPES)
async def test_one_partition_reindex_reads_as_maintenance_on_every_shape(
    db: Database, dsn: str, state_dir: Path, shape: str
) -> None:
    spec = spec_for(shape)
    budgets = {"budgets": {"lock_wait_budget_seconds": 1.0}}
    async with watched(db, dsn, state_dir, spec, integrity=budgets) as (conn, h, monitor):
        vector = await faults_vector(conn)
        async with faults.blocking_maintenance(
            dsn, spec, "REINDEX TABLE {p}", vector=vector, shards=[faults.HOT_SHARD], writers=3
        ):
            cycle = await until_degraded(h, monitor, pause=0.4)
        found = problem(h, cycle)
        assert isinstance(found, MaintenanceContention), found
        assert (found.job_types, found.queue_depth, len(found.job_pids)) == (("reindex",), 3, 1)
        (edge,) = cycle.result.witness_edges
        assert edge["kind"] == "dependency"
        assert edge["source"]["name"] == f"public.{spec.partition_name(faults.HOT_SHARD)}"


@pytest.mark.pgvector
@pytest.mark.parametrize("shape", SHAPES)
async def test_skewed_ivf_lists_read_from_the_index_pages_on_every_shape(
    db: Database, dsn: str, state_dir: Path, shape: str
) -> None:
    spec = spec_for(shape, method="ivfflat", lists=10)
    async with watched(db, dsn, state_dir, spec, checkpoint=True) as (conn, h, monitor):
        assert monitor.last is not None
        lists = [n for n in monitor.last.result.graph.nodes if n.kind.value == "centroid"]
        per_index = 1 if spec.plain else spec.partitions
        assert len(lists) == 10 * per_index  # no centroid_stats: from the pages
        table_rows = spec.rows_per_partition * (spec.partitions if spec.plain else 1)
        assert sum(int(n.attrs["vector_count"]) for n in lists) == table_rows * per_index

        rows = 3 * table_rows
        await faults.skew_ivf_lists(conn, spec, shard=faults.HOT_SHARD, rows=rows)
        cycle = await until_degraded(h, monitor)
        found = problem(h, cycle)
        assert isinstance(found, CentroidSkew), found
        (index,) = found.index_names
        assert index.startswith(f"public.{spec.partition_name(faults.HOT_SHARD)}_")
        assert found.skew_factor > 2.0 and len(found.centroid_ids) <= 3


async def test_a_statement_over_every_partition_counts_once(
    db: Database, dsn: str, state_dir: Path
) -> None:
    spec = spec_for("partitioned")
    sessions = [await connect(dsn) for _ in range(9)]
    try:
        async with watched(db, dsn, state_dir, spec) as (conn, h, monitor):
            async with anyio.create_task_group() as tg:
                for s in sessions[:8]:  # 8 statements over the whole collection
                    tg.start_soon(s.execute, "SELECT pg_sleep(3), count(*) FROM public.items")
                tg.start_soon(
                    sessions[8].execute,  # and one on a single partition
                    f"SELECT pg_sleep(3), count(*) FROM {spec.partition_qualified(1)}",
                )
                await _until(
                    conn,
                    "SELECT count(*) = 9 FROM pg_stat_activity "
                    "WHERE query LIKE 'SELECT pg_sleep(3)%' AND state = 'active'",
                )
                h.clock.advance(1)
                cycle = await monitor.cycle()
                tg.cancel_scope.cancel()
            parts = {p.name: p for p in cycle.snapshot.partitions}
            one, other = parts["public.items_p1"], parts["public.items_p2"]
            assert (one.active_backends, other.active_backends) == (9, 8)
            assert one.queue_depth == pytest.approx(2.0)  # 8 x 1/8 + 1
            assert other.queue_depth == pytest.approx(1.0)
            assert cycle.lambda_cut == pytest.approx(1 - 2.0 / 32)
    finally:
        for s in sessions:
            s.terminate()


async def test_bad_centroid_stats_rows_are_skipped_and_warned_once(
    db: Database, dsn: str, state_dir: Path
) -> None:
    spec = spec_for("partitioned")
    async with watched(db, dsn, state_dir, spec) as (conn, h, _):
        cid = h.ids["items"]
        # rows from before schema v4's CHECK constraint (NOT VALID: old rows stay)
        await conn.execute(
            "ALTER TABLE ruvector.centroid_stats DROP CONSTRAINT centroid_stats_latency_finite"
        )
        await conn.execute(
            "INSERT INTO ruvector.centroid_stats (collection_id, centroid_id, vector_count, "
            "latency_ms) VALUES ($1, 1, 100, 2), ($1, 2, 120, NULL), ($1, 3, 90, 'NaN'), "
            "($1, 4, 80, 'Infinity')",
            cid,
        )
        await conn.execute(
            "ALTER TABLE ruvector.centroid_stats ADD CONSTRAINT centroid_stats_latency_finite "
            "CHECK (latency_ms IS NULL OR (latency_ms >= 0 AND latency_ms < 3600000)) NOT VALID"
        )
        with capture_logs() as logs:
            c = h.config.collections[0]
            monitor = CollectionMonitor(h.runtime, c, cid, Sampler(db, c))
            cycles = []
            for _ in range(3):
                h.clock.advance(1)
                cycles.append(await monitor.cycle())
        snapshot = cycles[-1].snapshot
        assert snapshot.bad_centroid_rows == 2
        assert sorted(c.centroid_id for c in snapshot.centroids) == [1, 2]
        warned = [e for e in logs if e["event"] == "centroid_stats_rows_skipped"]
        assert len(warned) == 1 and warned[0]["rows"] == 2


async def faults_vector(conn: asyncpg.Connection) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT format_type(atttypid, atttypmod) LIKE 'vector%' FROM pg_attribute "
            "WHERE attrelid = 'public.items'::regclass AND attname = 'embedding'"
        )
    )


async def _until(conn: asyncpg.Connection, sql: str, limit: float = 20) -> None:
    with anyio.fail_after(limit):
        while not await conn.fetchval(sql):  # noqa: ASYNC110
            await anyio.sleep(0.05)
    await flush_stats(conn)
