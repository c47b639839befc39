"""Per-tenant integrity on a real server: one tenant's burst leaves the others normal.

A collection LIST-partitioned by its tenant column (`shard`: tenants 0..3 with a partition
each, every other tenant in a DEFAULT partition), sampled by the real monitor through the
daemon's own role, healed by the real engine; the application writes as a role that may only
INSERT (tests/roles.py, as deploy/sql/roles.sql sets one up).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import asyncpg
import pytest

from ruvectord.clock import ManualClock
from ruvectord.config import Config
from ruvectord.daemon import audit_writer
from ruvectord.healing.engine import RemediationEngine
from ruvectord.healing.problems import HotspotCongestion
from ruvectord.healing.strategies import builtin_registry
from ruvectord.healing.strategies.throttle_ingestion import ThrottleIngestion, ensure_guard
from ruvectord.healing.strategy import RemediationContext
from ruvectord.integrity.hysteresis import State
from ruvectord.integrity.monitor import CollectionMonitor, Cycle, Runtime
from ruvectord.integrity.tenants import OTHER
from ruvectord.metrics import Metrics
from ruvectord.postgres.actions import HealingStore
from ruvectord.postgres.leader import ActorLock
from ruvectord.postgres.pool import Database
from ruvectord.postgres.sampler import Sampler
from ruvectord.postgres.store import Store
from ruvectord.scenarios.collection import (
    THROTTLED_SQLSTATE,
    CollectionSpec,
    flush_stats,
    grant_guard,
    insert_rows,
)
from tests.conftest import PgServer, options
from tests.helpers import Harness, collection, connect, harness, hot_sample, make_config
from tests.roles import Parties, parties
from tests.unit.test_gate_and_audit import EXAMPLE_OP, SPEC_MATRIX

SPEC = CollectionSpec(partitions=4, rows_per_partition=20, index=False)
SMALL_TENANT = 42  # no partition of its own: the DEFAULT partition, in "(other)"


def tenant_config(dsn: str, state_dir: Path, top: int = 10, **sections: object) -> Config:
    return make_config(
        dsn,
        state_dir,
        SPEC,
        collections=[
            {
                "name": "items",
                "table": "public.items",
                "vector_column": "embedding",
                "tenant_column": "shard",
                "tenants": {"top": top},
            }
        ],
        **sections,
    )


async def add_default_partition(conn: asyncpg.Connection, app: str | None = None) -> None:
    """Small tenants share one partition: what the statistics cannot tell apart."""
    await conn.execute("CREATE TABLE public.items_rest PARTITION OF public.items DEFAULT")
    await grant_guard(conn, SPEC)
    if app is not None:
        await conn.execute(f'GRANT INSERT ON public.items_rest TO "{app}"')


def now_clock() -> ManualClock:
    """Sample times near the server's clock, so the gate does not read them as stale; a few
    seconds behind, as the tests advance it faster than time passes (leases run on the
    server's clock, a few seconds long at a 1 s interval)."""
    return ManualClock(datetime.now(UTC) - timedelta(seconds=5))


def states(cycle: Cycle) -> dict[str, State]:
    return {r.tenant: r.state for r in cycle.tenants}


async def app_insert(app: asyncpg.Connection, shard: int, table: str = "public.items") -> str:
    """One row for a tenant, as an application with INSERT only; 'ok' or the SQLSTATE."""
    kind = await app.fetchval(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'public.items'::regclass AND attname = 'embedding'"
    )
    values = ",".join(["0.5"] * SPEC.dims)
    literal = f"[{values}]" if kind.startswith("vector") else f"{{{values}}}"
    try:
        await app.execute(
            f"INSERT INTO {table} (shard, embedding) VALUES ($1, $2::text::{kind})",
            shard,
            literal,
        )
    except asyncpg.PostgresError as exc:
        return str(exc.sqlstate)
    return "ok"


async def gate(conn: asyncpg.Connection, op: str, tenant: str | None = None) -> dict[str, object]:
    if tenant is None:
        raw = await conn.fetchval("SELECT ruvector_integrity_gate('items', $1)", op)
    else:
        raw = await conn.fetchval(
            "SELECT ruvector_integrity_gate('items', $1, tenant => $2)", op, tenant
        )
    answer: dict[str, object] = json.loads(raw) if isinstance(raw, str) else raw
    return answer


@asynccontextmanager
async def daemon_side(p: Parties) -> AsyncIterator[Database]:
    """The daemon's own login role, as roles.sql made it: what the monitor runs as."""
    db = await Database.connect(options(p.as_(p.daemon)))
    try:
        yield db
    finally:
        await db.close()


@asynccontextmanager
async def acting(db: Database) -> AsyncIterator[ActorLock]:
    lock = ActorLock(db, Metrics(), check_interval=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lock.run)
        with anyio.fail_after(10):
            while not lock.is_actor:
                await lock.changed.wait()
        yield lock
        tg.cancel_scope.cancel()


def engine_for(h: Harness, db: Database, actor: ActorLock) -> RemediationEngine:
    return RemediationEngine(
        config=lambda: h.runtime.config,
        registry=builtin_registry(),
        journal=HealingStore(db),
        sql=db,
        clock=h.clock,
        metrics=h.metrics,
        actor=actor,
        audit=audit_writer(h.store, h.clock),
        node="tenants",
    )


def series(h: Harness, name: str) -> dict[str, float]:
    """tenant -> value of one tenant metric for collection items, as scraped."""
    text = h.metrics.render().decode()
    found = re.findall(rf'^{name}\{{collection="items",tenant="([^"]*)"\}} (\S+)$', text, re.M)
    return {t: float(v) for t, v in found}


# --------------------------------------------------------------------------- isolation


async def test_one_tenants_burst_stresses_it_alone_and_its_throttle_holds_back_only_its_rows(
    pg_server: PgServer, state_dir: Path
) -> None:
    """The issue's case end to end: a write burst on tenant 3, sampled by the real monitor;
    tenant 3 goes to stress, 0, 1, 2 and the aggregate stay normal; the gate answers per
    tenant; healing throttles tenant 3 alone, and an application with nothing but INSERT
    has its tenant-3 rows turned away and every other tenant's accepted."""
    async with parties(pg_server, SPEC) as p, daemon_side(p) as db:
        admin = await connect(p.dsn)
        app = await connect(p.as_(p.app))
        try:
            await add_default_partition(admin, p.app)
            config = tenant_config(
                p.dsn,
                state_dir,
                integrity={"recovery_hold_seconds": 5, "cooldown_seconds": 0},
                # verification waits twice the retry hint, on the manual clock
                healing={
                    "throttle": {
                        "stress_pct": 100,
                        "retry_after_seconds": 0.5,
                        "lift_steps": 2,
                        "lift_hold_seconds": 0,
                    },
                    "settle_seconds": 0,
                },
            )
            h = await harness(db, config, clock=now_clock())
            async with acting(db) as actor:
                monitor = h.monitor("items", healer=engine_for(h, db, actor))
                first = await monitor.cycle()  # no load known yet
                assert states(first) == dict.fromkeys(["0", "1", "2", "3", OTHER], State.NORMAL)
                seen = []
                for _ in range(3):  # degrade_samples
                    cycle = await hot_sample(admin, h, monitor, SPEC, shard=3)
                    seen.append(states(cycle))
                line = h.runtime.decisions["items"]

            # tenant 3 alone: stress at the third sample, the others normal at every one
            assert [s["3"] for s in seen] == [State.NORMAL, State.NORMAL, State.STRESS]
            for s in seen:
                assert {t: v for t, v in s.items() if t != "3"} == dict.fromkeys(
                    ["0", "1", "2", OTHER], State.NORMAL
                ), s
            by_tenant = {r.tenant: r for r in cycle.tenants}
            assert (
                by_tenant["3"].lambda_cut
                < 0.8
                <= min(r.lambda_cut for t, r in by_tenant.items() if t != "3")
            )
            assert by_tenant["3"].partitions == ("public.items_p3",)
            assert by_tenant[OTHER].partitions == ("public.items_rest",)
            # the collection's own reading is the whole graph: it says which tenant
            assert cycle.state is State.STRESS
            assert "tenants: tenant 3 normal -> stress" in line, line
            assert "(tenant 3)" in line and "throttle_ingestion (action 1) verified" in line, line

            # a restarted daemon picks the tenants' states up where they were
            restarted = h.monitor("items")
            await restarted.restore()
            assert restarted.tenants is not None
            assert {t: tr.state for t, tr in restarted.tenants.trackers.items()} == states(cycle)

            rows = {
                r["tenant"]: r
                for r in await admin.fetch("SELECT * FROM ruvector_integrity_tenants('items')")
            }
            assert {t: r["state"] for t, r in rows.items()} == {
                "0": "normal",
                "1": "normal",
                "2": "normal",
                "3": "stress",
                OTHER: "normal",
            }
            assert rows["3"]["rank"] == 1 and rows[OTHER]["rank"] is None
            assert rows["3"]["throttles"] == {"insert": 100, "bulk_insert": 100}
            event = await admin.fetchrow(
                "SELECT * FROM ruvector.integrity_events WHERE event_type = 'tenant_state_change'"
            )
            assert event is not None
            assert (event["previous_state"], event["new_state"]) == ("normal", "stress")
            assert event["metadata"]["tenant"] == "3"
            # the collection's episodes (time to recovery) see the collection's events only
            assert (
                await admin.fetchval(
                    "SELECT count(*) FROM ruvector.integrity_events "
                    "WHERE event_type = 'state_change'"
                )
                == 1
            )

            # the throttle targets tenant 3 only
            throttles = await admin.fetch(
                "SELECT operation, throttle_pct, tenant FROM ruvector.throttles ORDER BY 1"
            )
            assert [tuple(r) for r in throttles] == [
                ("bulk_insert", 100, "3"),
                ("insert", 100, "3"),
            ]
            assert await app_insert(app, 3) == THROTTLED_SQLSTATE
            assert await app_insert(app, 3, "public.items_p3") == THROTTLED_SQLSTATE
            for shard in (0, 1, 2, SMALL_TENANT):
                assert await app_insert(app, shard) == "ok", shard
            # the application can neither give itself a scope nor lift its tenant's brake
            for sql in (
                "INSERT INTO ruvector.tenant_state (collection_id, tenant) VALUES (1, '42')",
                "DELETE FROM ruvector.throttles",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await app.execute(sql)
            # the application's own session cannot say it is someone else
            async with app.transaction():
                await app.execute("SET LOCAL ruvector.operation = 'search'")
                await app.execute("SET LOCAL ruvector.tenant = '1'")
                assert await app_insert(app, 3) == THROTTLED_SQLSTATE

            # the gate, per tenant (the application may ask it)
            noisy = await gate(app, "bulk_insert", "3")
            assert (noisy["response"], noisy["state"], noisy["scope"]) == ("defer", "stress", "3")
            assert "healing turns away every bulk_insert of 3" in str(noisy["reason"])
            quiet = await gate(app, "bulk_insert", "1")
            assert (quiet["response"], quiet["state"], quiet["throttle_factor"]) == (
                "allow",
                "normal",
                1.0,
            )
            small = await gate(app, "bulk_insert", str(SMALL_TENANT))
            assert (small["response"], small["scope"]) == ("allow", OTHER)
            assert await gate(app, "bulk_insert", None) == await gate(app, "bulk_insert")
            whole = await gate(app, "bulk_insert")
            assert (whole["state"], whole["response"]) == ("stress", "throttle")

            # quiet again: held for recovery one sample (the brake is renewed) ...
            async with acting(db) as actor:
                monitor.healer = engine_for(h, db, actor)
                h.clock.advance(1)
                cycle = await monitor.cycle()
                assert (cycle.state, states(cycle)["3"]) == (State.STRESS, State.STRESS)
                # metrics, as read with this sample: a tenant label per scope, the
                # aggregate as tenant="(other)", the throttle on tenant 3
                assert series(h, "ruvector_integrity_tenant_state") == {
                    "0": 0.0,
                    "1": 0.0,
                    "2": 0.0,
                    "3": 1.0,
                    OTHER: 0.0,
                }
                assert series(h, "ruvector_integrity_tenant_lambda_cut")["3"] == 1.0
                text = h.metrics.render().decode()
                assert (
                    'ruvector_healing_tenant_throttle_pct{collection="items",operation="insert",'
                    'tenant="3"} 100.0'
                ) in text
                assert (
                    'ruvector_healing_tenant_throttle_pct{collection="items",operation="insert",'
                    'tenant="1"} 0.0'
                ) in text
                # the collection's gauge shows the strictest throttle in force, any tenant's
                assert h.metrics.throttle_pct.labels("items", "insert")._value.get() == 100
                # ... then tenant 3 and the collection recover, and the brake is let go in
                # steps (healing/brake.py), on tenant 3's rows alone
                levels: list[list[tuple[object, ...]]] = []
                for advance in (10, 1, 1, 1):
                    h.clock.advance(advance)
                    cycle = await monitor.cycle()
                    assert states(cycle)["3"] is State.NORMAL and cycle.state is State.NORMAL
                    insert_levels = await admin.fetch(
                        "SELECT tenant, throttle_pct FROM ruvector.throttles "
                        "WHERE operation = 'insert'"
                    )
                    levels.append([tuple(r) for r in insert_levels])
            assert [("3", 50)] in levels and levels[-1] == [], levels
            assert await app_insert(app, 3) == "ok"
        finally:
            await app.close()
            await admin.close()


# --------------------------------------------------------------------------- the aggregate


async def test_the_busiest_tenants_get_a_scope_and_the_rest_are_one_aggregate(
    db: Database, dsn: str, state_dir: Path
) -> None:
    """top 2 of four tenants: the two busiest (smoothed) are scopes, the others join the
    DEFAULT partition in "(other)"; a tenant that drops out loses its row and its series; a
    restarted monitor picks the scopes' states up where they were."""
    async with collection(dsn, SPEC) as conn:
        await add_default_partition(conn)
        h = await harness(db, tenant_config(dsn, state_dir, top=2), clock=now_clock())
        monitor = h.monitor("items")
        first = await monitor.cycle()
        assert [r.tenant for r in first.tenants] == ["0", "1", OTHER]  # no load yet: by name
        assert series(h, "ruvector_integrity_tenant_state") == {"0": 0, "1": 0, OTHER: 0}

        async def second(per_shard: dict[int, int]) -> Cycle:
            await insert_rows(conn, SPEC, per_shard)
            await flush_stats(conn)
            h.clock.advance(1)
            return await monitor.cycle()

        cycle = await second({0: 1, 1: 1, 2: 40, 3: 30, SMALL_TENANT: 5})
        assert [r.tenant for r in cycle.tenants] == ["2", "3", OTHER]
        by_tenant = {r.tenant: r for r in cycle.tenants}
        assert by_tenant[OTHER].partitions == (
            "public.items_p0",
            "public.items_p1",
            "public.items_rest",
        )
        assert by_tenant["2"].load == pytest.approx(20.0, rel=0.2)  # half of 40/s, smoothed
        assert set(series(h, "ruvector_integrity_tenant_state")) == {"2", "3", OTHER}
        assert set(series(h, "ruvector_integrity_tenant_operations_per_second")) == {
            "2",
            "3",
            OTHER,
        }
        rows = await db.fetch("SELECT tenant, rank FROM ruvector.tenant_state ORDER BY tenant")
        assert [tuple(r) for r in rows] == [(OTHER, None), ("2", 1), ("3", 2)]
        status = await db.fetchval("SELECT ruvector_integrity_status('items')")
        assert set(status["tenants"]) == {"2", "3", OTHER}

        # an incumbent is displaced only by a clearly busier tenant: 1 (16.75/s smoothed)
        # is not yet, against 2's 20/s; at 38/s it is, and 2's series and row go
        cycle = await second({1: 33, 2: 20, 3: 30})
        assert [r.tenant for r in cycle.tenants] == ["3", "2", OTHER]
        cycle = await second({1: 60, 2: 20, 3: 30})
        assert [r.tenant for r in cycle.tenants] == ["1", "3", OTHER]
        assert set(series(h, "ruvector_integrity_tenant_state")) == {"1", "3", OTHER}
        assert set(series(h, "ruvector_integrity_tenant_lambda_cut")) == {"1", "3", OTHER}
        assert "public.items_p2" in {r.tenant: r for r in cycle.tenants}[OTHER].partitions
        assert await db.fetchval("SELECT count(*) FROM ruvector.tenant_state") == 3

        # a restart: the new monitor reads the scopes back, states and loads
        restarted = h.monitor("items")
        await restarted.restore()
        assert restarted.tenants is not None
        assert set(restarted.tenants.trackers) == {"1", "3", OTHER}
        assert restarted.tenants.loads.keys() == {"1", "3"}


async def test_an_aggregate_throttle_holds_back_every_tenant_without_a_scope(
    pg_server: PgServer, state_dir: Path
) -> None:
    """A hotspot in the shared partitions throttles "(other)": the rows of tenants without a
    scope (in the DEFAULT partition, or with a partition but below the top) are turned away,
    the tracked tenants' rows pass."""
    async with parties(pg_server, SPEC) as p, daemon_side(p) as db:
        admin = await connect(p.dsn)
        app = await connect(p.as_(p.app))
        try:
            await add_default_partition(admin, p.app)
            config = tenant_config(p.dsn, state_dir, top=2)
            h = await harness(db, config, clock=now_clock())
            await h.monitor("items").cycle()  # scopes: 0, 1 (by name), the rest aggregated
            cid = h.ids["items"]
            assert await ensure_guard(db, cid, lock_timeout_ms=1000) == "installed now"
            strategy = ThrottleIngestion()
            ctx = RemediationContext(
                collection="items",
                collection_id=cid,
                table="public.items",
                problem=HotspotCongestion((0,), ("public.items_rest",), 9.0, 0.0, OTHER),
                state=State.CRITICAL,
                initial_lambda=0.3,
                sql=db,
                settings=config.healing.model_copy(
                    update={
                        "throttle": config.healing.throttle.model_copy(update={"critical_pct": 100})
                    }
                ),
                lease_seconds=60,
            )
            ctx.rollback_data = await strategy.plan(ctx)
            assert ctx.rollback_data["tenant"] == OTHER
            assert (await strategy.execute(ctx)).success
            outcome = {s: await app_insert(app, s) for s in (0, 1, 2, 3, SMALL_TENANT)}
            assert outcome == {
                0: "ok",
                1: "ok",
                2: THROTTLED_SQLSTATE,
                3: THROTTLED_SQLSTATE,
                SMALL_TENANT: THROTTLED_SQLSTATE,
            }
            small = await gate(app, "insert", str(SMALL_TENANT))
            assert (small["scope"], small["response"]) == (OTHER, "defer")
            tracked = await gate(app, "insert", "0")
            assert (tracked["scope"], tracked["response"]) == ("0", "allow")
            listed = await admin.fetch(
                "SELECT operation, tenant FROM ruvector_healing_throttles() ORDER BY 1"
            )
            assert [tuple(r) for r in listed] == [("bulk_insert", OTHER), ("insert", OTHER)]
            await strategy.rollback(ctx)
            assert await admin.fetchval("SELECT count(*) FROM ruvector.throttles") == 0
            assert await app_insert(app, SMALL_TENANT) == "ok"
        finally:
            await app.close()
            await admin.close()


# --------------------------------------------------------------------------- the gate


async def _tenant_state(db: Database, cid: int, tenant: str, state: str) -> None:
    await db.execute(
        "INSERT INTO ruvector.tenant_state (collection_id, tenant, state, lambda_cut, "
        "last_sample_at) VALUES ($1, $2, $3, 0.5, now()) ON CONFLICT (collection_id, tenant) "
        "DO UPDATE SET state = EXCLUDED.state, last_sample_at = now()",
        cid,
        tenant,
        state,
    )


@pytest.mark.parametrize(("risk", "state"), list(SPEC_MATRIX))
async def test_the_tenant_gate_returns_the_matrix_answer_of_the_tenants_state(
    db: Database, dsn: str, state_dir: Path, risk: str, state: str
) -> None:
    cid = (await Store(db).sync_collections(tenant_config(dsn, state_dir)))["items"]
    # the collection and every other scope in the opposite mood: only the tenant's counts
    other = "critical" if state == "normal" else "normal"
    await db.execute(
        "INSERT INTO ruvector.integrity_state (collection_id, state, last_sample_at) "
        "VALUES ($1, $2, now())",
        cid,
        other,
    )
    await _tenant_state(db, cid, "t1", state)
    await _tenant_state(db, cid, "t2", other)
    await _tenant_state(db, cid, OTHER, other)
    answer = await db.fetchval(
        "SELECT ruvector_integrity_gate('items', $1, tenant => 't1')", EXAMPLE_OP[risk]
    )
    response, factor, retry = SPEC_MATRIX[(risk, state)]
    assert (answer["response"], answer["throttle_factor"], answer["retry_after_secs"]) == (
        response,
        factor,
        retry,
    )
    assert (answer["risk_level"], answer["state"], answer["scope"]) == (risk, state, "t1")
    assert answer["allowed"] == (response in ("allow", "throttle")) and not answer["stale"]
    # a tenant without a scope of its own is answered from the aggregate's
    small = await db.fetchval(
        "SELECT ruvector_integrity_gate('items', $1, tenant => 'tiny')", EXAMPLE_OP[risk]
    )
    assert (small["state"], small["scope"]) == (other, OTHER)


async def test_the_tenant_gate_before_any_tenant_was_sampled_and_when_stale(
    db: Database, dsn: str, state_dir: Path
) -> None:
    cid = (await Store(db).sync_collections(tenant_config(dsn, state_dir)))["items"]
    await db.execute(
        "INSERT INTO ruvector.integrity_state (collection_id, state, last_sample_at) "
        "VALUES ($1, 'stress', now())",
        cid,
    )
    # no scope yet: the collection's state answers
    early = await db.fetchval("SELECT ruvector_integrity_gate('items', 'bulk_insert', 't1')")
    assert (early["state"], early["scope"], early["response"]) == ("stress", None, "throttle")
    # the tenant's scope has not been sampled for ten minutes: unknown, so allowed
    await db.execute(
        "INSERT INTO ruvector.tenant_state (collection_id, tenant, state, last_sample_at) "
        "VALUES ($1, 't1', 'critical', now() - interval '10 minutes')",
        cid,
    )
    stale = await db.fetchval("SELECT ruvector_integrity_gate('items', 'bulk_insert', 't1')")
    assert (stale["response"], stale["stale"]) == ("allow", True)
    with pytest.raises(asyncpg.UndefinedObjectError, match="unknown collection 'nope'"):
        await db.fetchval("SELECT ruvector_integrity_gate('nope', 'search', 't1')")
    with pytest.raises(asyncpg.InvalidParameterValueError, match="operation must be"):
        await db.fetchval("SELECT ruvector_integrity_gate('items', ' ', 't1')")


async def test_a_tenant_column_that_is_not_the_list_key_tells_no_tenants_apart(
    db: Database, dsn: str, state_dir: Path
) -> None:
    """`tenant` is a column of the table, but the partitions are by `shard`: the statistics
    cannot see tenants, so there are no scopes (and the collection is sampled as ever)."""
    async with collection(dsn, SPEC) as conn:
        config = make_config(
            dsn,
            state_dir,
            SPEC,
            collections=[
                {
                    "name": "items",
                    "table": "public.items",
                    "vector_column": "embedding",
                    "tenant_column": "tenant",
                }
            ],
        )
        h = await harness(db, config, clock=now_clock())
        monitor = h.monitor("items")
        assert monitor.tenants is not None
        await monitor.cycle()
        for _ in range(2):
            cycle = await hot_sample(conn, h, monitor, SPEC, shard=3)
            assert cycle.tenants == () and cycle.lambda_cut < 0.8
        assert await db.fetchval("SELECT count(*) FROM ruvector.tenant_state") == 0
        assert monitor.tenants._said_why
        assert "tenants:" not in h.runtime.decisions["items"]
        assert series(h, "ruvector_integrity_tenant_state") == {}
        # asked for a tenant, the gate answers from the collection's state
        answer = await gate(conn, "search", "anyone")
        assert answer["scope"] is None and answer["state"] == "normal"


async def test_a_daemon_that_does_not_act_observes_the_tenants_and_records_nothing(
    db: Database, dsn: str, state_dir: Path
) -> None:
    """As for the collection, only the acting daemon records tenant states and events; another
    daemon on the database follows the same states in memory and exports them."""
    async with collection(dsn, SPEC) as conn:
        await add_default_partition(conn)
        h = await harness(db, tenant_config(dsn, state_dir), clock=now_clock())
        writer = h.monitor("items")
        watcher_rt = Runtime(h.config, h.clock, Metrics(), h.store, writes=lambda: False)
        c = h.config.collection("items")
        watcher = CollectionMonitor(watcher_rt, c, h.ids["items"], Sampler(db, c))
        await writer.cycle()
        await watcher.cycle()
        for _ in range(3):
            await hot_sample(conn, h, writer, SPEC, shard=3)
            seen = await watcher.cycle()
        assert states(seen)["3"] is State.STRESS
        assert watcher.tenants is not None and watcher.tenants.trackers["3"].state is State.STRESS
        assert watcher_rt.metrics.tenant_state.labels("items", "3")._value.get() == 1
        events = await db.fetchval(
            "SELECT count(*) FROM ruvector.integrity_events "
            "WHERE event_type = 'tenant_state_change'"
        )
        assert events == 1  # the writer's
        assert (
            await db.fetchval("SELECT state FROM ruvector.tenant_state WHERE tenant = '3'")
            == "stress"
        )
