"""compact_indexes on the embedded PostgreSQL 18 with pgvector: mass deletes fragment an HNSW
index; REINDEX CONCURRENTLY compacts it; a backend killed mid-reindex leaves an invalid
*_ccnew index that cleanup and recovery drop; the whole loop through the engine."""

from __future__ import annotations

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
from ruvectord.healing.problems import IndexFragmentation
from ruvectord.healing.strategies import builtin_registry
from ruvectord.healing.strategies.compact_indexes import CompactIndexes
from ruvectord.integrity.hysteresis import State
from ruvectord.postgres.actions import HealingStore
from ruvectord.postgres.pool import Database
from ruvectord.postgres.store import Store
from ruvectord.scenarios.collection import CollectionSpec, create_collection, flush_stats
from tests.helpers import collection, connect, harness, make_config
from tests.integration.test_healing_e2e import running_actor
from tests.maintenance import context, owned_by_app, until

pytestmark = pytest.mark.pgvector
SPEC = CollectionSpec(partitions=2, rows_per_partition=3000, dims=16)
INDEX = "public.items_p1_embedding_idx"


async def _fragment(conn: asyncpg.Connection) -> None:
    """Mass deletes: 80 % of one partition's rows."""
    await conn.execute("ALTER TABLE public.items_p1 SET (autovacuum_enabled = false)")
    await conn.execute("DELETE FROM public.items_p1 WHERE id % 5 < 4")
    await flush_stats(conn)


def _problem() -> IndexFragmentation:
    return IndexFragmentation((0,), (INDEX,), 60.0)


async def _invalid(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT indexrelid::regclass::text AS name FROM pg_index WHERE NOT indisvalid "
        "AND indrelid = 'public.items_p1'::regclass"
    )
    return [r["name"] for r in rows]


async def _setup(db: Database, dsn: str, state_dir: Path, conn: asyncpg.Connection) -> Any:
    await owned_by_app(conn, SPEC)
    config = make_config(dsn, state_dir, SPEC)
    cid = (await Store(db).sync_collections(config))["items"]
    assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", INDEX)
    await _fragment(conn)
    return config, cid


async def test_reindex_compacts_the_fragmented_index_and_reports_recall(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        config, cid = await _setup(db, dsn, state_dir, conn)
        strategy = CompactIndexes()
        assert strategy.targets(_problem()) == (INDEX,)
        ctx = context(db, config, cid, _problem(), SPEC)
        ctx.rollback_data = await strategy.plan(ctx)
        assert ctx.rollback_data["targets"] == [INDEX]
        oid_before = await conn.fetchval("SELECT $1::regclass::oid", INDEX)
        result = await strategy.execute(ctx)
        assert result.success, result
        [done] = result.metadata["compacted"]
        print("compact_indexes measured:", done)  # noqa: T201 - the numbers for the report
        assert done["bytes_after"] < done["bytes_before"]
        assert done["bytes_per_live_tuple_after"] < done["bytes_per_live_tuple_before"]
        assert isinstance(done["recall_after"], float) and done["recall_after"] >= 0.9
        assert "alert" not in result.metadata
        # a new index under the same name, nothing invalid left, still one vector index
        assert await conn.fetchval("SELECT $1::regclass::oid", INDEX) != oid_before
        assert await _invalid(conn) == []
        assert (
            await conn.fetchval(
                "SELECT n_dead_tup FROM pg_stat_user_tables "
                "WHERE relid = 'public.items_p1'::regclass"
            )
            == 0
        )  # vacuum_first


async def test_a_recall_below_the_floor_is_flagged_not_undone(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        _, cid = await _setup(db, dsn, state_dir, conn)
        # an HNSW search that looks at a single candidate cannot find the 10 nearest
        config = make_config(
            dsn,
            state_dir,
            SPEC,
            healing={
                "strategies": {
                    "recall_canary": {"hnsw_ef_search": 1},
                    "compact_indexes": {"recall_floor": 0.99},
                }
            },
        )
        strategy = CompactIndexes()
        ctx = context(db, config, cid, _problem(), SPEC)
        ctx.rollback_data = await strategy.plan(ctx)
        result = await strategy.execute(ctx)
        assert result.success  # compacted, and it stays compacted
        assert "after compaction, below the floor 0.99" in result.metadata["alert"]
        assert result.metadata["compacted"][0]["recall_after"] < 0.99


async def test_no_reindex_while_another_build_runs_nor_of_a_resting_index(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        config, cid = await _setup(db, dsn, state_dir, conn)
        strategy = CompactIndexes()
        resting = context(
            db, config, cid, _problem(), SPEC, params={"resting_targets": {INDEX: 60.0}}
        )
        with pytest.raises(CannotAct, match="compacted too recently"):
            await strategy.plan(resting)
        # someone's CREATE INDEX CONCURRENTLY on the same table, waiting for an old snapshot
        holder, builder = await connect(dsn), await connect(dsn)
        await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await holder.fetchval("SELECT count(*) FROM public.items_p0")
        async with anyio.create_task_group() as tg:

            async def build() -> None:
                with pytest.raises(asyncpg.PostgresError):
                    await builder.execute(
                        "CREATE INDEX CONCURRENTLY someone_elses ON public.items_p1 (id)"
                    )

            tg.start_soon(build)
            pid = await until(conn, "SELECT pid FROM pg_stat_progress_create_index", limit=30)
            with pytest.raises(CannotAct, match=r"another index build runs on public\.items_p1"):
                await strategy.plan(context(db, config, cid, _problem(), SPEC))
            await conn.execute("SELECT pg_cancel_backend($1)", pid)
        await holder.close()
        await builder.close()
        await conn.execute("DROP INDEX IF EXISTS public.someone_elses")


async def test_a_backend_killed_mid_reindex_leaves_nothing_invalid(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        config, cid = await _setup(db, dsn, state_dir, conn)
        config = make_config(
            dsn,
            state_dir,
            SPEC,
            healing={"strategies": {"compact_indexes": {"vacuum_first": False}}},
        )
        strategy = CompactIndexes()
        ctx = context(db, config, cid, _problem(), SPEC)
        ctx.rollback_data = await strategy.plan(ctx)
        # an old snapshot makes REINDEX CONCURRENTLY wait after it created the *_ccnew index
        holder = await connect(dsn)
        await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await holder.fetchval("SELECT count(*) FROM public.items_p0")
        outcome: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                outcome.append(await strategy.execute(ctx))

            tg.start_soon(run)
            pid = await until(
                conn,
                "SELECT pid FROM pg_stat_progress_create_index "
                "WHERE command = 'REINDEX CONCURRENTLY' AND phase LIKE 'waiting%'",
                limit=30,
            )
            assert await _invalid(conn) == ["items_p1_embedding_idx_ccnew"]
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
        await holder.close()
        [result] = outcome
        assert not result.success
        assert "terminating connection" in result.error
        assert "dropped the invalid public.items_p1_embedding_idx_ccnew" in result.error
        assert await _invalid(conn) == []


async def test_recovery_drops_what_an_interrupted_reindex_left(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        config, cid = await _setup(db, dsn, state_dir, conn)
        holder, victim = await connect(dsn), await connect(dsn)
        await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await holder.fetchval("SELECT count(*) FROM public.items_p0")
        async with anyio.create_task_group() as tg:

            async def reindex() -> None:
                with pytest.raises(asyncpg.PostgresError):
                    await victim.execute(f"REINDEX INDEX CONCURRENTLY {INDEX}")

            tg.start_soon(reindex)
            pid = await until(
                conn,
                "SELECT pid FROM pg_stat_progress_create_index WHERE phase LIKE 'waiting%'",
                limit=30,
            )
            await conn.execute("SELECT pg_terminate_backend($1)", pid)  # the daemon died
        await holder.close()
        assert await _invalid(conn) == ["items_p1_embedding_idx_ccnew"]
        await db.execute(
            "INSERT INTO ruvector.healing_actions (collection_id, problem_class, problem_details, "
            "strategy_name, status, reversible, integrity_state, initial_lambda, rollback_data, "
            "actor, created_at, updated_at) VALUES ($1, 'IndexFragmentation', $2, "
            "'compact_indexes', 'running', false, 'stress', 0.5, $3, 'dead', now(), now())",
            cid,
            {"index_ids": [0], "index_names": [INDEX], "fragmentation_pct": 60.0},
            {"targets": [INDEX]},
        )
        audits: list[dict[str, Any]] = []

        async def audit(**fields: Any) -> None:
            audits.append(fields)

        done = await recover(
            HealingStore(db), builtin_registry(), db, config.healing, audit, _now()
        )
        assert [s for _, s in done] == ["interrupted"]
        assert await _invalid(conn) == []
        err = await db.fetchval("SELECT error_message FROM ruvector.healing_actions")
        assert "dropped the invalid public.items_p1_embedding_idx_ccnew" in err


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


@pytest.mark.slow
async def test_mass_deletes_are_classified_and_compacted_end_to_end(
    db: Database, dsn: str, state_dir: Path
) -> None:
    conn = await connect(dsn)
    try:
        async with running_actor(db) as actor:
            await create_collection(conn, SPEC)
            await owned_by_app(conn, SPEC)
            config: Config = make_config(
                dsn,
                state_dir,
                SPEC,
                integrity={"degrade_samples": 1, "recovery_hold_seconds": 0, "cooldown_seconds": 0},
                healing={"settle_seconds": 1, "min_healing_interval_seconds": 0},
            )
            h = await harness(db, config)
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
            await _fragment(conn)
            cycle = await monitor.cycle()
            line = h.runtime.decisions["items"]
            assert cycle.state is State.STRESS, line
            assert "index fragmentation" in line and f"% on {INDEX}" in line, line
            assert "compact_indexes (action 1) verified" in line, line
            outcome = await db.fetchrow("SELECT * FROM ruvector.healing_outcomes")
            assert outcome is not None and outcome["verified"]
            action = await db.fetchrow("SELECT * FROM ruvector.healing_actions")
            assert action is not None and action["status"] == "succeeded"
            assert action["result"]["targets"] == [INDEX]
            h.clock.advance(1)
            assert (await monitor.cycle()).state is State.NORMAL
            # the index is resting now: a second fragmentation of it within 6 h is not compacted
            await conn.execute("DELETE FROM public.items_p1 WHERE id % 5 = 4")
            await flush_stats(conn)
            h.clock.advance(61)
            await monitor.cycle()
            line = h.runtime.decisions["items"]
            assert "compact_indexes: every target acted on within its min interval" in line, line
    finally:
        await conn.close()
