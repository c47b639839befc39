"""throttle_ingestion and the whole loop on a real server: trigger, gate, journal, outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from ruvectord.config import Config
from ruvectord.daemon import audit_writer
from ruvectord.healing.engine import RemediationEngine
from ruvectord.healing.problems import HotspotCongestion
from ruvectord.healing.strategies import builtin_registry
from ruvectord.healing.strategies.throttle_ingestion import ThrottleIngestion, ensure_guard
from ruvectord.healing.strategy import RemediationContext
from ruvectord.integrity.hysteresis import State
from ruvectord.metrics import Metrics
from ruvectord.postgres.actions import HealingStore
from ruvectord.postgres.leader import ActorLock
from ruvectord.postgres.pool import Database
from ruvectord.postgres.store import Store
from ruvectord.scenarios.collection import (
    THROTTLED_SQLSTATE,
    CollectionSpec,
    create_collection,
)
from tests.helpers import collection, connect, harness, hot_sample, make_config

SPEC = CollectionSpec(partitions=8, rows_per_partition=20)


async def _inserts(conn: asyncpg.Connection, n: int) -> tuple[int, list[asyncpg.PostgresError]]:
    """n single-row inserts; returns (accepted, rejections)."""
    rejected: list[asyncpg.PostgresError] = []
    sample = await conn.fetchval("SELECT embedding::text FROM public.items LIMIT 1")
    cast = "vector" if sample.startswith("[") else "real[]"
    for i in range(n):
        try:
            await conn.execute(
                f"INSERT INTO public.items (shard, embedding) VALUES ($1, $2::text::{cast})",
                i % SPEC.partitions,
                sample,
            )
        except asyncpg.PostgresError as exc:
            assert exc.sqlstate == THROTTLED_SQLSTATE, exc
            rejected.append(exc)
    return n - len(rejected), rejected


def _context(db: Database, config: Config, cid: int, state: State) -> RemediationContext:
    return RemediationContext(
        collection="items",
        collection_id=cid,
        table="public.items",
        problem=HotspotCongestion((1,), ("public.items_p1",), 8.0),
        state=state,
        initial_lambda=0.4,
        sql=db,
        settings=config.healing,
        action_id=None,
        lease_seconds=60,
    )


async def test_the_guard_rejects_the_throttled_share_and_nothing_after_rollback(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        config = make_config(dsn, state_dir, SPEC)
        cid = (await Store(db).sync_collections(config))["items"]
        assert await ensure_guard(db, cid, lock_timeout_ms=1000) == "installed now"
        strategy = ThrottleIngestion()
        ctx = _context(db, config, cid, State.STRESS)
        ctx.rollback_data = await strategy.plan(ctx)
        assert ctx.rollback_data == {"previous": {"insert": None, "bulk_insert": None}}
        result = await strategy.execute(ctx)
        assert result.success and result.metadata["throttle_pct"] == {
            "insert": 50,
            "bulk_insert": 60,
        }

        accepted, rejected = await _inserts(conn, 1000)
        assert 400 <= len(rejected) <= 600, len(rejected)
        first = rejected[0]
        assert "insert into public.items_p" in str(first) and "throttled (50 %" in str(first)
        assert first.hint == "retry after 5 s"
        gate = await db.fetchval("SELECT ruvector_integrity_gate('items', 'point_insert')")
        assert gate["throttle_factor"] == 0.5 and gate["response"] == "throttle"

        # a bulk writer that says so is held to the bulk level; all-or-nothing per statement
        async with conn.transaction():
            await conn.execute("SET LOCAL ruvector.operation = 'bulk_insert'")
            with pytest.raises(asyncpg.PostgresError) as bulk:
                for _ in range(50):  # P(all 50 pass at 60 %) ~ 1e-20
                    await conn.execute(
                        "INSERT INTO public.items (shard, embedding) "
                        "SELECT shard, embedding FROM public.items LIMIT 20"
                    )
            assert "(60 % of bulk_insert statements turned away)" in str(bulk.value)

        await strategy.rollback(ctx)
        assert await db.fetchval("SELECT count(*) FROM ruvector.throttles") == 0
        accepted, rejected = await _inserts(conn, 1000)
        assert (accepted, rejected) == (1000, [])


async def test_rollback_restores_the_exact_previous_levels(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC):
        config = make_config(dsn, state_dir, SPEC)
        cid = (await Store(db).sync_collections(config))["items"]
        await db.execute(
            "INSERT INTO ruvector.throttles (collection_id, operation, throttle_pct, "
            "retry_after_seconds, expires_at) VALUES ($1, 'insert', 20, 7, "
            "'2030-01-01 00:00:00+00')",
            cid,
        )
        strategy = ThrottleIngestion()
        ctx = _context(db, config, cid, State.CRITICAL)
        ctx.rollback_data = await strategy.plan(ctx)
        await strategy.execute(ctx)
        levels = await db.fetch(
            "SELECT operation, throttle_pct FROM ruvector.throttles ORDER BY operation"
        )
        assert [tuple(r) for r in levels] == [("bulk_insert", 100), ("insert", 90)]
        await strategy.rollback(ctx)
        rows = await db.fetch(
            "SELECT operation, throttle_pct, retry_after_seconds, "
            "expires_at = '2030-01-01 00:00:00+00' FROM ruvector.throttles"
        )
        assert [tuple(r) for r in rows] == [("insert", 20, 7.0, True)]


@asynccontextmanager
async def running_actor(db: Database) -> AsyncIterator[ActorLock]:
    """A real actor lock, held by a task of this test (fixtures cannot own task groups)."""
    lock = ActorLock(db, Metrics(), check_interval=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lock.run)
        with anyio.fail_after(10):
            while not lock.is_actor:
                await lock.changed.wait()
        yield lock
        tg.cancel_scope.cancel()


async def test_hot_partition_is_healed_end_to_end_and_recorded(
    db: Database, dsn: str, state_dir: Path
) -> None:
    conn = await connect(dsn)
    try:
        async with running_actor(db) as actor:
            await create_collection(conn, SPEC)
            config = make_config(dsn, state_dir, SPEC, healing={"settle_seconds": 10})
            h = await harness(db, config)
            engine = RemediationEngine(
                config=lambda: config,
                registry=builtin_registry(),
                journal=HealingStore(db),
                sql=db,
                clock=h.clock,
                metrics=h.metrics,
                actor=actor,
                audit=audit_writer(h.store, h.clock),
                node="e2e",
            )
            monitor = h.monitor("items", healer=engine)
            await monitor.cycle()
            lines = []
            for _ in range(3):  # degrade_samples = 3
                cycle = await hot_sample(conn, h, monitor, SPEC)
                lines.append(h.runtime.decisions["items"])
            assert cycle.state is State.STRESS
            assert "hot partition public.items_p3" in lines[-1]
            assert "throttle_ingestion (action 1) verified" in lines[-1]

            outcome = await db.fetchrow("SELECT * FROM ruvector.healing_outcomes")
            assert outcome is not None
            assert outcome["problem_class"] == "HotspotCongestion"
            assert outcome["problem_details"]["partition_names"] == ["public.items_p3"]
            assert outcome["strategy_name"] == "throttle_ingestion"
            assert outcome["success"] and outcome["verified"]
            assert outcome["final_lambda"] > outcome["initial_lambda"]
            assert {w["kind"] for w in outcome["witness_edges"]} == {"routing", "partition_link"}
            assert (
                await db.fetchval("SELECT count(*) FROM ruvector.throttles WHERE throttle_pct = 50")
                == 1
            )
            assert h.metrics.healing_success.labels("items", "throttle_ingestion")._value.get() == 1
            events = [
                r["metadata"]["status"]
                for r in await db.fetch(
                    "SELECT metadata FROM ruvector.integrity_events "
                    "WHERE event_type = 'audit' ORDER BY id"
                )
            ]
            assert events == ["succeeded"]

            # back to normal (quiet, held): the throttle is let go in steps, 10 s apart
            config2 = make_config(
                dsn,
                state_dir,
                SPEC,
                integrity={"recovery_hold_seconds": 0, "cooldown_seconds": 0},
                healing={"throttle": {"lift_hold_seconds": 10}},
            )
            h.runtime.config = config2
            engine._config = lambda: config2

            async def levels() -> dict[str, int]:
                rows = await db.fetch("SELECT operation, throttle_pct FROM ruvector.throttles")
                return {r["operation"]: r["throttle_pct"] for r in rows}

            async def quiet(seconds: float) -> str:
                h.clock.advance(seconds)
                await monitor.cycle()
                return h.runtime.decisions["items"]

            for _ in range(3):
                said = await quiet(1)
            assert monitor.tracker.state is State.NORMAL
            assert "holding 100% of the brake" in said, said
            assert await levels() == {"insert": 50, "bulk_insert": 60}
            said = await quiet(10)
            assert "stepping down to 67% of the brake" in said, said
            assert await levels() == {"insert": 34, "bulk_insert": 40}

            # the load comes back after the step: one sample under threshold_low steps the
            # brake back up before the state machine counts enough to degrade, and the
            # next hold is twice as long (the burst is written past the guard, which would
            # turn its one statement away one time in three at this level)
            await conn.execute("SET session_replication_role = replica")
            await hot_sample(conn, h, monitor, SPEC)
            await conn.execute("RESET session_replication_role")
            said = h.runtime.decisions["items"]
            assert monitor.tracker.state is State.NORMAL
            assert "back to 100% of the brake, holding 20 s" in said, said
            assert await levels() == {"insert": 50, "bulk_insert": 60}
            said = await quiet(10)
            assert "holding 100% of the brake (10 of 20 s)" in said, said
            said = await quiet(10)
            assert "stepping down to 67%" in said, said
            said = await quiet(20)
            assert "stepping down to 33%" in said, said
            assert await levels() == {"insert": 17, "bulk_insert": 20}
            # on probation: 0 %, still held (a load back in full would put the brake back)
            said = await quiet(20)
            assert "stepping down to 0% of the brake after 20 s normal, on probation" in said
            assert await levels() == {"insert": 0, "bulk_insert": 0}
            said = await quiet(20)
            assert "lifted throttle_ingestion (action 1)" in said, said
            assert await db.fetchval("SELECT count(*) FROM ruvector.throttles") == 0
            assert await db.fetchval("SELECT status FROM ruvector.healing_actions") == "lifted"
            transitions = await db.fetchval(
                "SELECT count(*) FROM ruvector.integrity_events WHERE event_type = 'state_change'"
            )
            assert transitions == 2  # one episode: normal -> stress -> normal
    finally:
        await conn.close()


async def test_only_one_daemon_holds_the_actor_lock(db: Database) -> None:
    second = ActorLock(db, Metrics(), check_interval=0.2)
    async with running_actor(db) as actor, anyio.create_task_group() as tg:
        tg.start_soon(second.run)
        with anyio.fail_after(10):
            while "another daemon holds the actor lock" not in second.why_not:
                await second.changed.wait()
        assert (actor.is_actor, second.is_actor) == (True, False)
        assert "backend pid" in second.why_not
        # the holder's connection dies: it stops acting at once, the other takes over
        lost: list[Any] = []
        actor.on_lost(lambda: lost.append(True))
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'ruvectord-actor' AND pid IN (SELECT pid FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted)"
        )
        # the holder stops acting as soon as the drop reaches it ...
        with anyio.fail_after(5):
            while not lost:
                await actor.changed.wait()
        # ... then one of the two (either may win the race to re-take it) acts again, never both
        with anyio.fail_after(10):
            while not (actor.is_actor or second.is_actor):  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert actor.is_actor != second.is_actor
        holders = await db.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        assert holders == 1
        tg.cancel_scope.cancel()
