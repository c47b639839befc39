"""The sensor on a real PostgreSQL: healthy load stays normal, a hot partition degrades."""

from __future__ import annotations

import random
from pathlib import Path

from ruvectord.healing.strategies.throttle_ingestion import ensure_guard
from ruvectord.integrity.hysteresis import State
from ruvectord.postgres.pool import Database
from ruvectord.postgres.store import Store
from ruvectord.scenarios.collection import (
    CollectionSpec,
    flush_stats,
    insert_rows,
    uniform,
)
from tests.conftest import options
from tests.helpers import collection, harness, hot_sample, make_config

SPEC = CollectionSpec(partitions=8, rows_per_partition=50)


async def test_healthy_steady_workload_stays_normal_for_50_samples(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        h = await harness(db, make_config(dsn, state_dir, SPEC))
        monitor = h.monitor("items")
        rng = random.Random(7)
        lambdas = []
        for _ in range(50):
            await insert_rows(conn, SPEC, uniform(SPEC, 400, rng))
            await flush_stats(conn)
            h.clock.advance(1.0)
            cycle = await monitor.cycle()
            assert cycle.state is State.NORMAL, cycle.step.reason
            lambdas.append(cycle.lambda_cut)
        assert min(lambdas) >= 0.8
        samples = await db.fetchval(
            "SELECT count(*) FROM ruvector.integrity_samples WHERE state = 'normal'"
        )
        assert samples == 50


async def test_hot_partition_degrades_after_exactly_degrade_samples(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        config = make_config(dsn, state_dir, SPEC, integrity={"degrade_samples": 4})
        h = await harness(db, config)
        monitor = h.monitor("items")
        first = await monitor.cycle()  # baseline: no load known yet
        assert first.state is State.NORMAL
        states = []
        for _ in range(4):
            cycle = await hot_sample(conn, h, monitor, SPEC)
            states.append(cycle.state)
            assert cycle.lambda_cut < 0.8
        assert states == [State.NORMAL] * 3 + [State.STRESS]
        witness = cycle.result.witness_edges
        kinds = {w["kind"] for w in witness}
        assert kinds == {"partition_link", "routing"}
        assert all(
            "public.items_p3" in (w["source"]["name"], w["target"]["name"]) for w in witness
        ), witness
        assert sum(1 for w in witness if w["kind"] == "partition_link") > 3
        event = await db.fetchrow(
            "SELECT * FROM ruvector.integrity_events WHERE event_type = 'state_change'"
        )
        assert event is not None
        assert (event["previous_state"], event["new_state"]) == ("normal", "stress")


async def test_a_broken_collection_fails_alone_and_says_why(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        config = make_config(dsn, state_dir, SPEC)
        broken = config.collections[0].model_copy(
            update={"name": "broken", "vector_column": "no_such_column"}
        )
        config = config.model_copy(update={"collections": (config.collections[0], broken)})
        h = await harness(db, config)
        good, bad = h.monitor("items"), h.monitor("broken")
        assert await bad.cycle_safely() is None
        assert (await good.cycle_safely()) is not None
        row = await db.fetchrow(
            "SELECT status, status_detail FROM ruvector.collections WHERE name = 'broken'"
        )
        assert row is not None
        assert (row["status"], row["status_detail"]) == (
            "error",
            "column 'no_such_column' does not exist in public.items",
        )
        errors = h.metrics.sample_errors.labels("broken", "collection")._value.get()
        assert errors == 1
        assert h.runtime.decisions["broken"].startswith("broken: sample failed (column")
        # fixed (here: the column appears), the next sample clears the error
        await conn.execute("ALTER TABLE public.items ADD COLUMN no_such_column int")
        assert await bad.cycle_safely() is not None
        assert (
            await db.fetchval("SELECT status FROM ruvector.collections WHERE name = 'broken'")
            == "ok"
        )


async def test_a_database_outage_fails_samples_not_the_loop(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC):
        h = await harness(db, make_config(dsn, state_dir, SPEC))
        monitor = h.monitor("items")
        gone = await Database.connect(options(dsn))
        await gone.close()
        h.runtime.store = Store(gone)  # every read and write of ruvector.* fails
        assert await monitor.cycle_safely() is None  # restoring the state failed
        assert await monitor.cycle_safely() is None
        assert monitor.failing is not None and "pool is closed" in monitor.failing
        assert h.metrics.sample_errors.labels("items", "database")._value.get() == 2
        h.runtime.store = h.store  # the database is back
        cycle = await monitor.cycle_safely()
        assert cycle is not None and monitor.failing is None


async def test_names_that_need_quoting_are_watched_and_guarded_exactly(
    db: Database, dsn: str, state_dir: Path
) -> None:
    """Once, `table: public.Items` sampled "Items" but put the guard on public.items."""
    lower = CollectionSpec(table="items", partitions=2, rows_per_partition=5, index=False)
    upper = CollectionSpec(table="Items", partitions=3, rows_per_partition=5, index=False)
    spaced = CollectionSpec(table="My Vectors ü", partitions=2, rows_per_partition=5, index=False)
    async with collection(dsn, lower), collection(dsn, upper), collection(dsn, spaced) as conn:
        config = make_config(
            dsn,
            state_dir,
            collections=[
                {"name": "upper", "table": 'public."Items"', "vector_column": "embedding"},
                {"name": "folded", "table": "public.Items", "vector_column": "Embedding"},
                {"name": "spaced", "table": 'public."My Vectors ü"', "vector_column": "embedding"},
            ],
        )
        h = await harness(db, config)
        seen = {}
        for name in ("upper", "folded", "spaced"):
            cycle = await h.monitor(name).cycle()
            seen[name] = sorted(p.name for p in cycle.snapshot.partitions)
            assert await ensure_guard(db, h.ids[name], lock_timeout_ms=1000) == "installed now"
        assert seen == {
            "upper": ['public."Items_p0"', 'public."Items_p1"', 'public."Items_p2"'],
            "folded": ["public.items_p0", "public.items_p1"],
            "spaced": ['public."My Vectors ü_p0"', 'public."My Vectors ü_p1"'],
        }
        guarded = await conn.fetch(
            "SELECT DISTINCT tgrelid::regclass::text AS t FROM pg_trigger "
            "WHERE tgname = 'ruvector_throttle_guard' AND tgparentid = 0 ORDER BY 1"
        )
        assert [r["t"] for r in guarded] == ['"Items"', '"My Vectors ü"', "items"]
