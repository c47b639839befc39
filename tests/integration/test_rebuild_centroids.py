"""rebuild_centroids on the embedded PostgreSQL 18 with pgvector: a skewed IVFFlat index is
rebuilt next to the old one, checked against exact search, swapped in one transaction; a
recall below the floor keeps the old index; rollback and recovery restore it exactly, and a
partition never keeps two vector indexes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from ruvectord.config import Config
from ruvectord.daemon import audit_writer
from ruvectord.healing.engine import RemediationEngine
from ruvectord.healing.journal import recover
from ruvectord.healing.maintenance import CannotAct
from ruvectord.healing.problems import CentroidSkew
from ruvectord.healing.strategies import builtin_registry
from ruvectord.healing.strategies.rebuild_centroids import RebuildCentroids
from ruvectord.integrity.hysteresis import State
from ruvectord.postgres.actions import HealingStore
from ruvectord.postgres.pool import Database
from ruvectord.postgres.store import Store
from ruvectord.scenarios.collection import CollectionSpec, create_collection
from tests.helpers import collection, connect, harness, make_config
from tests.integration.test_healing_e2e import running_actor
from tests.maintenance import context, owned_by_app, until

pytestmark = pytest.mark.pgvector
SPEC = CollectionSpec(partitions=2, rows_per_partition=2000, dims=16, index=False)
INDEX = "public.items_p0_ivf"
PROBLEM = CentroidSkew(tuple(range(6)), 9.0)


async def skewed(conn: asyncpg.Connection, cid: int) -> None:
    """An IVFFlat index built on uniform data, then 6000 rows from one corner of the space:
    they all land in the few lists nearest to it. The application reports its list sizes."""
    await conn.execute(
        "CREATE INDEX items_p0_ivf ON public.items_p0 USING ivfflat (embedding vector_l2_ops) "
        "WITH (lists = 40)"
    )
    await conn.execute(
        "INSERT INTO public.items (shard, embedding) SELECT 0, (SELECT array_agg(0.9 + "
        "random()::real / 20) FROM generate_series(1, 16) WHERE g IS NOT NULL)::vector "
        "FROM generate_series(1, 6000) g"
    )
    await conn.execute("ANALYZE public.items_p0")
    counts = [5800, 900, 700, *([60] * 37)]
    await conn.executemany(
        "INSERT INTO ruvector.centroid_stats (collection_id, centroid_id, vector_count) "
        "VALUES ($1, $2, $3)",
        [(cid, i, n) for i, n in enumerate(counts)],
    )


async def vector_indexes(conn: asyncpg.Connection) -> list[tuple[str, str, bool]]:
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_indexdef(c.oid) AS def, i.indisvalid FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
        "WHERE i.indrelid = 'public.items_p0'::regclass AND am.amname IN ('ivfflat', 'hnsw') "
        "ORDER BY 1"
    )
    return [(r["relname"], r["def"], r["indisvalid"]) for r in rows]


def _config(dsn: str, state_dir: Path, **healing: Any) -> Config:
    base = {"strategies": {"recall_canary": {"ivfflat_probes": 10}}}
    return make_config(dsn, state_dir, SPEC, healing={**base, **healing})


async def _setup(db: Database, dsn: str, state_dir: Path, conn: asyncpg.Connection) -> Any:
    await owned_by_app(conn, SPEC)
    config = _config(dsn, state_dir)
    cid = (await Store(db).sync_collections(config))["items"]
    await skewed(conn, cid)
    return config, cid


async def test_rebuild_swaps_in_recomputed_lists_and_rollback_restores_exactly(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        config, cid = await _setup(db, dsn, state_dir, conn)
        before = await vector_indexes(conn)
        oid = await conn.fetchval("SELECT $1::regclass::oid", INDEX)
        strategy = RebuildCentroids()
        ctx = context(db, config, cid, PROBLEM, SPEC)
        ctx.rollback_data = await strategy.plan(ctx)
        [ix] = ctx.rollback_data["indexes"]
        assert (ix["name"], ix["lists_before"], ix["lists_after"]) == (INDEX, 40, 8)
        assert await db.fetchval("SELECT count(*) FROM ruvector.probe_vectors") == 20
        result = await strategy.execute(ctx)
        assert result.success, result
        [done] = result.metadata["rebuilt"]
        print("rebuild_centroids measured:", done)  # noqa: T201 - the numbers for the report
        assert done["recall_after"] >= 0.9
        after = await vector_indexes(conn)
        assert [(n, v) for n, _, v in after] == [("items_p0_ivf", True)]  # one index, same name
        assert "lists='8'" in after[0][1]
        assert await conn.fetchval("SELECT $1::regclass::oid", INDEX) != oid
        assert await db.fetchval("SELECT count(*) FROM ruvector.centroid_stats") == 0

        await strategy.rollback(ctx)  # e.g. lambda did not rise
        assert await vector_indexes(conn) == before  # name and definition exact, one index
        assert await db.fetchval("SELECT count(*) FROM ruvector.centroid_stats") == 40


async def test_a_recall_below_the_floor_keeps_the_old_index(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        _, cid = await _setup(db, dsn, state_dir, conn)
        # one probe of 8 lists cannot find every neighbour: recall falls below a floor of 1
        config = make_config(
            dsn,
            state_dir,
            SPEC,
            healing={
                "strategies": {
                    "recall_canary": {"ivfflat_probes": 1},
                    "rebuild_centroids": {"recall_floor": 1.0},
                }
            },
        )
        before = await vector_indexes(conn)
        oid = await conn.fetchval("SELECT $1::regclass::oid", INDEX)
        strategy = RebuildCentroids()
        ctx = context(db, config, cid, PROBLEM, SPEC)
        ctx.rollback_data = await strategy.plan(ctx)
        result = await strategy.execute(ctx)
        assert not result.success
        assert "below the floor 1; swap undone" in str(result.error), result
        assert await vector_indexes(conn) == before
        assert await conn.fetchval("SELECT $1::regclass::oid", INDEX) == oid  # untouched
        assert await db.fetchval("SELECT count(*) FROM ruvector.centroid_stats") == 40


async def test_without_the_canary_it_does_not_act_and_says_why(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        config = _config(dsn, state_dir)
        cid = (await Store(db).sync_collections(config))["items"]
        await skewed(conn, cid)  # owned by the superuser: ruvector_owner may not read it
        with pytest.raises(CannotAct, match=r"no recall canary: .*-v canary=on"):
            await RebuildCentroids().plan(context(db, config, cid, PROBLEM, SPEC))


async def test_an_interrupted_build_is_dropped_by_recovery(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        config, cid = await _setup(db, dsn, state_dir, conn)
        before = await vector_indexes(conn)
        strategy = RebuildCentroids()
        ctx = context(db, config, cid, PROBLEM, SPEC)
        ctx.rollback_data = await strategy.plan(ctx)
        action_id = await db.fetchval(
            "INSERT INTO ruvector.healing_actions (collection_id, problem_class, problem_details, "
            "strategy_name, status, reversible, integrity_state, initial_lambda, rollback_data, "
            "actor, created_at, updated_at) VALUES ($1, 'CentroidSkew', $2, "
            "'rebuild_centroids', 'running', true, 'stress', 0.5, $3, 'dead', now(), now()) "
            "RETURNING id",
            cid,
            PROBLEM.details(),
            ctx.rollback_data,
        )
        ctx.action_id = action_id
        # an old snapshot holds the CREATE INDEX CONCURRENTLY after it made the new index
        holder = await connect(dsn)
        await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await holder.fetchval("SELECT count(*) FROM public.items_p1")
        async with anyio.create_task_group() as tg:
            tg.start_soon(strategy.execute, ctx)
            pid = await until(
                conn,
                "SELECT pid FROM pg_stat_progress_create_index WHERE phase LIKE 'waiting%'",
                limit=30,
            )
            names = [n for n, _, _ in await vector_indexes(conn)]
            assert names == ["items_p0_ivf", f"ruvector_rebuild_{ix_oid(ctx)}"]
            tg.cancel_scope.cancel()  # the daemon dies here ...
            await conn.execute("SELECT pg_terminate_backend($1)", pid)  # ... and its backend
        await holder.close()
        assert len(await vector_indexes(conn)) == 2  # the invalid copy is still there

        async def audit(**fields: Any) -> None:
            return None

        done = await recover(
            HealingStore(db), builtin_registry(), db, config.healing, audit, datetime.now(UTC)
        )
        assert done == [(action_id, "rolled_back")]
        assert await vector_indexes(conn) == before


def ix_oid(ctx: Any) -> int:
    return int(ctx.rollback_data["indexes"][0]["oid"])


@pytest.mark.slow
async def test_a_skewed_ivfflat_index_is_rebuilt_end_to_end(
    db: Database, dsn: str, state_dir: Path
) -> None:
    """Skew reported in centroid_stats -> CentroidSkew (3 overloaded lists of 40 are enough:
    the classifier reads the cut's missing capacity) -> rebuild_centroids -> verified."""
    conn = await connect(dsn)
    try:
        async with running_actor(db) as actor:
            await create_collection(conn, SPEC)
            await owned_by_app(conn, SPEC)
            config = make_config(
                dsn,
                state_dir,
                SPEC,
                integrity={"degrade_samples": 1, "recovery_hold_seconds": 0, "cooldown_seconds": 0},
                healing={
                    "settle_seconds": 1,
                    "min_healing_interval_seconds": 0,
                    "strategies": {"recall_canary": {"ivfflat_probes": 10}},
                },
            )
            h = await harness(db, config)
            await skewed(conn, h.ids["items"])
            engine = RemediationEngine(
                config=lambda: config,
                registry=builtin_registry(config=lambda: config),
                journal=HealingStore(db),
                sql=db,
                clock=h.clock,
                metrics=h.metrics,
                actor=actor,
                audit=audit_writer(h.store, h.clock),
                node="e2e",
            )
            monitor = h.monitor("items", healer=engine)
            cycle = await monitor.cycle()
            line = h.runtime.decisions["items"]
            assert cycle.state is State.STRESS, line
            assert "skewed centroid lists" in line, line
            assert "rebuild_centroids (action 1) verified" in line, line
            assert [n for n, _, _ in await vector_indexes(conn)] == ["items_p0_ivf"]
            action = await db.fetchrow("SELECT status, result FROM ruvector.healing_actions")
            assert action is not None and action["status"] == "succeeded"
            assert action["result"]["rebuilt"][0]["lists_after"] == 8
    finally:
        await conn.close()
