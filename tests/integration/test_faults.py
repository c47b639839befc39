"""Faults the sensor must see on a real server: lock contention, replica lag; and what it
must not do: scan the collection."""

from __future__ import annotations

from pathlib import Path

import anyio
import asyncpg
import pytest

from ruvectord.clock import ManualClock
from ruvectord.healing.problems import MaintenanceContention, classify
from ruvectord.postgres.migrations import migrate
from ruvectord.postgres.pool import Database
from ruvectord.postgres.sampler import Sampler
from ruvectord.scenarios.collection import CollectionSpec, create_collection, flush_stats
from ruvectord.scenarios.replica import StreamingPair
from tests.conftest import options
from tests.helpers import collection, connect, harness, make_config

SPEC = CollectionSpec(partitions=8, rows_per_partition=20)


async def _wait_until(predicate_sql: str, conn: asyncpg.Connection, limit: float = 20) -> None:
    """Poll the server (there is nothing to wait on but its catalog)."""
    with anyio.fail_after(limit):
        while not await conn.fetchval(predicate_sql):  # noqa: ASYNC110
            await anyio.sleep(0.05)


async def test_lock_holding_maintenance_job_degrades_as_its_writers_wait(
    db: Database, dsn: str, state_dir: Path
) -> None:
    admin = await connect(dsn)
    holder = await connect(dsn)
    writers = [await connect(dsn) for _ in range(3)]
    try:
        await create_collection(admin, SPEC)
        budget = 2.0  # backend-seconds of waiting that halve the job's capacity
        config = make_config(
            dsn, state_dir, SPEC, integrity={"budgets": {"lock_wait_budget_seconds": budget}}
        )
        h = await harness(db, config)
        monitor = h.monitor("items")
        assert (await monitor.cycle()).lambda_cut == 1.0

        tx = holder.transaction()
        await tx.start()
        await holder.execute("LOCK TABLE public.items IN SHARE MODE")  # blocks every writer
        cycles = []
        async with anyio.create_task_group() as tg:
            for w in writers:
                tg.start_soon(
                    w.execute,
                    "INSERT INTO public.items (shard, embedding) "
                    "SELECT 1, (SELECT embedding FROM public.items LIMIT 1)",
                )
            await _wait_until(
                "SELECT count(*) = 3 FROM pg_locks WHERE NOT granted AND locktype = 'relation'",
                admin,
            )
            for _ in range(2):
                h.clock.advance(1)
                cycles.append(await monitor.cycle())
                await anyio.sleep(1.5)  # the writers keep waiting
            await tx.rollback()  # let the writers through
        first, later = cycles
        assert 1.0 > first.lambda_cut > later.lambda_cut
        for cycle in cycles:
            (edge,) = cycle.result.witness_edges
            assert edge["kind"] == "dependency"
            job = cycle.result.graph.nodes[
                next(n.index for n in cycle.result.graph.nodes if n.ref() == edge["target"])
            ]
            waited = float(job.attrs["blocked_seconds"])
            assert job.name.startswith("lock (pid ") and job.attrs["blocking"] == 3
            assert job.attrs["partitions_touched"] == SPEC.partitions  # LOCK covers them all
            assert edge["reason"] == f"blocks 3 backend(s), {waited:.1f} s waited"
            assert cycle.lambda_cut == pytest.approx(1 / (1 + waited / budget), abs=1e-5)
        # three writers waiting 1.5 s more: about 4.5 backend-seconds more
        waits = [float(c.result.graph.nodes[-1].attrs["blocked_seconds"]) for c in cycles]
        assert waits[1] - waits[0] == pytest.approx(4.5, abs=1.0)
        problem = classify(later.result, later.snapshot, config.healing.classifier)
        assert isinstance(problem, MaintenanceContention) and problem.job_types == ("lock",)
    finally:
        for c in (admin, holder, *writers):
            await c.close()


async def test_paused_standby_yields_replication_witness_edges(
    streaming_pair: StreamingPair, state_dir: Path
) -> None:
    """Always on an embedded primary of its own: the replica has to be made from it."""
    primary_dsn = streaming_pair.primary.dsn()
    db = await Database.connect(options(primary_dsn))
    primary = await connect(primary_dsn)
    standby = await connect(streaming_pair.standby.dsn())
    try:
        await migrate(db)
        await create_collection(primary, SPEC)
        config = make_config(
            primary_dsn,
            state_dir,
            SPEC,
            integrity={"budgets": {"lag_budget_bytes": 1024 * 1024}},
        )
        h = await harness(db, config)
        monitor = h.monitor("items")
        await _wait_until(
            "SELECT count(*) = 1 FROM pg_stat_replication WHERE state = 'streaming' "
            "AND replay_lsn = pg_current_wal_lsn()",
            primary,
        )
        healthy = await monitor.cycle()
        assert healthy.lambda_cut > 0.99  # a few ms of write lag
        assert any(n.kind.value == "replica" for n in healthy.result.graph.nodes)

        assert await standby.fetchval("SELECT pg_is_in_recovery()")
        await standby.execute("SELECT pg_wal_replay_pause()")
        # ~4 MB of WAL the standby receives but does not replay
        await primary.execute(
            "CREATE TABLE ballast AS SELECT g, repeat('x', 200) AS pad "
            "FROM generate_series(1, 15000) g"
        )
        await _wait_until(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) > 2 * 1024 * 1024 "
            "FROM pg_stat_replication",
            primary,
        )
        h.clock.advance(1)
        lagging = await monitor.cycle()
        (edge,) = lagging.result.witness_edges
        assert edge["kind"] == "replication" and edge["target"]["name"] == "standby1"
        assert edge["capacity"] == 0.01 and lagging.lambda_cut == pytest.approx(0.01)

        await standby.execute("SELECT pg_wal_replay_resume()")
        await _wait_until(
            "SELECT replay_lsn = pg_current_wal_lsn() FROM pg_stat_replication", primary
        )
        h.clock.advance(1)
        assert (await monitor.cycle()).lambda_cut > 0.99
    finally:
        await standby.close()
        await primary.close()
        await db.close()


async def test_sampling_never_scans_the_collection(db: Database, dsn: str, state_dir: Path) -> None:
    async with collection(dsn, SPEC) as conn:
        await flush_stats(conn)
        counters_sql = (
            "SELECT sum(seq_scan)::bigint, sum(coalesce(idx_scan, 0))::bigint, "
            "sum(n_tup_ins + n_tup_upd + n_tup_del)::bigint "
            "FROM pg_stat_user_tables WHERE relname LIKE 'items%'"
        )
        before = await conn.fetchrow(counters_sql)
        config = make_config(dsn, state_dir, SPEC)
        sampler = Sampler(db, config.collections[0])
        clock = ManualClock()
        for _ in range(5):
            snap = await sampler.sample(clock.now(), None)
            assert len(snap.partitions) == SPEC.partitions
        await anyio.sleep(1.1)  # let any stats the sampler's session produced be flushed
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        after = await conn.fetchrow(counters_sql)
        assert before is not None and after is not None
        assert tuple(after) == tuple(before)
