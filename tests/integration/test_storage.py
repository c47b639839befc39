"""Bounded storage on a real server: WAL per sample, graph snapshots, retention, pruned audit.

- A steady-state sample of a 64-partition collection writes at most 4 KB of WAL (it wrote
  ~39 KB when every sample rewrote the whole contracted graph).
- The graph is kept at every transition and periodically (driven by the injected clock); the
  contracted_graph / contracted_edges views answer from the newest; the latest sample's graph
  is the daemon's, from memory.
- Retention prunes in batches, keeps each collection's newest graph, never prunes audit events
  the server recorded less than 30 days ago (even as the daemon's role, whatever it asks), and
  `audit verify` passes after pruning yet fails when an event in the middle is deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ruvectord.audit import Signer
from ruvectord.clock import ManualClock
from ruvectord.daemon import latest_graph
from ruvectord.integrity.hysteresis import State
from ruvectord.postgres.audit_trail import verify_events
from ruvectord.postgres.pool import Database
from ruvectord.postgres.retention import Retention, prune_audit
from ruvectord.postgres.store import Store
from ruvectord.scenarios.collection import CollectionSpec
from tests.conftest import PgServer, options
from tests.helpers import collection, harness, hot_sample, make_config
from tests.roles import parties

WIDE = CollectionSpec(partitions=64, rows_per_partition=2, index=False)
SMALL = CollectionSpec(partitions=8, rows_per_partition=50, index=False)
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
        # and one sample of every 300 (the default period at 1 s) writes its graph: amortised
        # with it, a sample still stays within the bound
        before = await _wal_lsn(db)
        h.clock.advance(300)
        await monitor.cycle()
        snapshot = await _wal_lsn(db) - before
        print(f"WAL a sample at 64 partitions: {per_sample:.0f} B; a periodic graph {snapshot} B")  # noqa: T201
        assert per_sample + snapshot / 300 <= WAL_PER_SAMPLE_BOUND, (per_sample, snapshot)
        assert await db.fetchval("SELECT count(*) FROM ruvector.graph_snapshots") == 2


async def _graphs(db: Database) -> list[tuple[str, str]]:
    rows = await db.fetch("SELECT reason, state FROM ruvector.graph_snapshots ORDER BY sampled_at")
    return [(r["reason"], r["state"]) for r in rows]


async def test_graphs_are_kept_at_transitions_and_periodically(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SMALL) as conn:
        config = make_config(
            dsn,
            state_dir,
            SMALL,
            integrity={"degrade_samples": 2, "graph_snapshot_seconds": 10},
        )
        h = await harness(db, config)
        monitor = h.monitor("items")
        await monitor.cycle()  # the first graph a writer takes
        for _ in range(9):
            h.clock.advance(1)
            await monitor.cycle()
        assert await _graphs(db) == [("periodic", "normal")]
        h.clock.advance(1)
        await monitor.cycle()  # 10 s on
        assert await _graphs(db) == [("periodic", "normal")] * 2
        for _ in range(2):
            cycle = await hot_sample(conn, h, monitor, SMALL)
        assert cycle.state is State.STRESS
        assert await _graphs(db) == [("periodic", "normal")] * 2 + [("transition", "stress")]

        # the views answer from the newest graph, as the tables did
        graph = await db.fetchrow(
            "SELECT sampled_at, lambda_cut, nodes FROM ruvector.contracted_graph"
        )
        assert graph is not None and graph["sampled_at"] == h.clock.now()
        assert graph["lambda_cut"] == pytest.approx(cycle.lambda_cut)
        assert len(graph["nodes"]) == len(cycle.result.graph.nodes)
        edges = await db.fetch("SELECT * FROM ruvector.contracted_edges ORDER BY edge_index")
        assert len(edges) == len(cycle.result.graph.edges)
        witness = sorted(r["edge_index"] for r in edges if r["witness"])
        assert witness == sorted(cycle.result.witness_indices)
        first = cycle.result.graph.edges[0]
        assert (edges[0]["kind"], edges[0]["source"], edges[0]["target"]) == (
            first.kind.value,
            first.source,
            first.target,
        )
        assert edges[0]["flow"] == pytest.approx(first.flow)

        # the latest sample's graph is the daemon's, from memory, newer than the stored one
        h.clock.advance(1)
        await monitor.cycle()
        assert monitor.last is not None
        served = latest_graph(monitor.last)
        assert served["sampled_at"] == h.clock.now().isoformat()
        assert len(served["edges"]) == len(monitor.last.result.graph.edges)
        assert len(await _graphs(db)) == 3  # not written: no transition, not due


async def test_retention_prunes_samples_and_graphs_in_batches_by_the_clock(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SMALL) as conn:
        config = make_config(
            dsn,
            state_dir,
            SMALL,
            integrity={
                "degrade_samples": 2,
                "graph_snapshot_seconds": 10,
                "sample_retention_days": 1,
                "prune_batch_size": 2,
            },
            retention={"periodic_graph_days": 2, "transition_graph_days": 5},
        )
        h = await harness(db, config)
        monitor = h.monitor("items")
        for _ in range(5):  # 5 periodic graphs, 10 s apart, and a 6th at the first hot sample
            await monitor.cycle()
            h.clock.advance(10)
        for _ in range(2):
            await hot_sample(conn, h, monitor, SMALL)  # then the transition's graph
        assert len(await _graphs(db)) == 7
        assert h.store.signer is not None
        retention = Retention(db, h.store.signer)

        h.clock.advance(1.5 * 86400)  # samples past their day, graphs not yet
        pruned = await retention.round(config, h.clock.now())
        assert pruned.samples == 7 and pruned.graphs == 0
        h.clock.advance(86400)  # periodic graphs past their 2 days; the newest graph stays
        pruned = await retention.round(config, h.clock.now())
        assert pruned.graphs == 6
        assert await _graphs(db) == [("transition", "stress")]
        h.clock.advance(10 * 86400)  # past the transition's 5 days: still the newest, kept
        await retention.round(config, h.clock.now())
        assert await _graphs(db) == [("transition", "stress")]
        assert await db.fetchval("SELECT count(*) FROM ruvector.contracted_edges") > 0


async def _events(store: Store, clock: ManualClock, n: int) -> list[int]:
    ids = []
    for i in range(n):
        clock.advance(60)
        ids.append(
            await store.record_event(
                {
                    "collection": "items",
                    "event_type": "audit",
                    "metadata": {"n": i},
                    "created_at": clock.now(),
                }
            )
        )
    return ids


async def _age(db: Database, ids: list[int], days: float) -> None:
    """As if the server had recorded these events `days` ago (only a superuser can)."""
    await db.execute(
        "UPDATE ruvector.integrity_events SET recorded_at = now() - make_interval(days => $2) "
        "WHERE id = ANY($1::bigint[])",
        ids,
        int(days),
    )


async def test_pruned_audit_trail_verifies_from_its_marker_and_keeps_the_floor(
    db: Database,
) -> None:
    clock = ManualClock()
    signer = Signer(Ed25519PrivateKey.generate())
    store = Store(db, signer)
    await store.register_key(signer, "test")
    trusted = {signer.id: signer.public_bytes}
    ids = await _events(store, clock, 8)
    await _age(db, ids[:5], 400)
    await _age(db, ids[5:6], 10)  # inside the 30-day floor: stays whatever is asked
    far_future = clock.now() + timedelta(days=10_000)

    deleted = await prune_audit(db, signer, far_future, batch=2, now=clock.now())
    assert deleted == 5
    left = [r["id"] for r in await db.fetch("SELECT id FROM ruvector.integrity_events")]
    assert ids[5] in left and ids[4] not in left
    markers = await db.fetch(
        "SELECT metadata FROM ruvector.integrity_events WHERE event_type = 'audit_pruned' "
        "ORDER BY id"
    )
    assert [m["metadata"]["through_id"] for m in markers] == [ids[1], ids[3], ids[4]]
    report = await verify_events(db, trusted)
    assert report.failures == [] and report.pruned_through == ids[4]

    # nothing the floor protects goes, however far the daemon's clock runs
    assert await prune_audit(db, signer, far_future, batch=2, now=clock.now()) == 0
    assert (await verify_events(db, trusted)).failures == []

    # an event deleted in the middle: verification fails there
    await db.execute("DELETE FROM ruvector.integrity_events WHERE id = $1", ids[6])
    failed = await verify_events(db, trusted)
    assert [f.id for f in failed.failures] == [ids[7]]
    assert "chain broken" in failed.failures[0].problem


async def test_a_pruned_prefix_without_its_marker_fails_verification(db: Database) -> None:
    clock = ManualClock()
    signer = Signer(Ed25519PrivateKey.generate())
    store = Store(db, signer)
    await store.register_key(signer, "test")
    ids = await _events(store, clock, 4)
    await db.execute("DELETE FROM ruvector.integrity_events WHERE id <= $1", ids[1])
    report = await verify_events(db, {signer.id: signer.public_bytes})
    assert [f.id for f in report.failures] == [ids[2]]
    assert "not here" in report.failures[0].problem


async def test_the_daemon_role_prunes_only_through_the_floor_guarded_functions(
    pg_server: PgServer, tmp_path: Path
) -> None:
    async with parties(pg_server) as p:
        admin = await Database.connect(options(p.dsn))
        db = await Database.connect(options(p.as_(p.daemon)))
        try:
            config = make_config(p.as_(p.daemon), tmp_path, p.spec)
            clock = ManualClock(datetime.now(UTC))  # in step with the server's clock
            signer = Signer(Ed25519PrivateKey.generate())
            store = Store(db, signer)
            await store.register_key(signer, "test")
            await store.sync_collections(config)
            ids = await _events(store, clock, 4)
            await _age(admin, ids[:2], 100)
            # no DELETE on the audit trail, and no say over when the server recorded an event
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await db.execute("DELETE FROM ruvector.integrity_events WHERE id = $1", ids[3])
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await db.execute(
                    "UPDATE ruvector.integrity_events SET recorded_at = now() - interval '1 year'"
                )
            # a marker of its own naming recent events does not let it erase them
            await store.record_event(
                {
                    "collection": "*",
                    "event_type": "audit_pruned",
                    "metadata": {"through_id": ids[3]},
                    "created_at": clock.now(),
                }
            )
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="30 days"):
                await db.execute(
                    "SELECT ruvector.prune_audit($1, $2)",
                    ids[3],
                    clock.now() + timedelta(days=10_000),
                )
            # the honest round prunes the old two, and the rest still verifies
            retention = Retention(db, signer)
            pruned = await retention.round(config, clock.now() + timedelta(days=400))
            assert pruned.audit_events == 2
            report = await verify_events(admin, {signer.id: signer.public_bytes})
            assert report.failures == [] and report.pruned_through == ids[1]
            assert pruned.healing_history == 0
        finally:
            await db.close()
            await admin.close()


async def test_a_hostile_daemon_role_cannot_backdate_fresh_history_past_the_floor(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """The daemon's role writes its journal, so it may change an action's status and
    updated_at; the 7-day floor must rest on what it cannot change: when the action was
    created, when an operator made a request."""
    async with parties(pg_server) as p:
        admin = await Database.connect(options(p.dsn))
        db = await Database.connect(options(p.as_(p.daemon)))
        try:
            config = make_config(p.as_(p.daemon), tmp_path, p.spec)
            cid = (await Store(db).sync_collections(config))["items"]
            fresh = await _action(db, cid, "running", 0)  # as the daemon journals one
            await admin.execute(
                "INSERT INTO ruvector.healing_requests (kind) VALUES ('trigger')"
            )  # an operator's request, a minute old
            for sql in (
                "UPDATE ruvector.healing_actions SET created_at = now() - interval '1 year'",
                "UPDATE ruvector.healing_requests SET requested_at = now() - interval '1 year'",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await db.execute(sql)
            # what it may write, it backdates as far as it likes...
            await db.execute(
                "UPDATE ruvector.healing_actions SET status = 'failed', "
                "updated_at = now() - interval '1 year', completed_at = now() - interval '1 year'"
            )
            await db.execute(
                "UPDATE ruvector.healing_requests SET status = 'done', "
                "processed_at = now() - interval '1 year'"
            )
            # ...and a prune asking for everything still keeps both
            pruned = await db.fetchval(
                "SELECT ruvector.prune_healing_history(now() + interval '10 years', 1000)"
            )
            assert pruned == 0
            assert await admin.fetchval("SELECT array_agg(id) FROM ruvector.healing_actions") == [
                fresh
            ]
            assert await admin.fetchval("SELECT count(*) FROM ruvector.healing_requests") == 1
        finally:
            await db.close()
            await admin.close()


async def _action(db: Database, cid: int, status: str, age_days: int) -> int:
    action: int = await db.fetchval(
        """
        INSERT INTO ruvector.healing_actions
               (collection_id, problem_class, problem_details, strategy_name, status,
                reversible, integrity_state, initial_lambda, actor, created_at, updated_at)
        VALUES ($1, 'hot_partition', '{}', 'throttle_ingestion', $2, true, 'stress', 0.5,
                'test', now() - make_interval(days => $3), now() - make_interval(days => $3))
        RETURNING id
        """,
        cid,
        status,
        age_days,
    )
    return action


async def test_healing_history_keeps_open_actions_pending_requests_and_the_floor(
    db: Database, dsn: str, state_dir: Path
) -> None:
    config = make_config(dsn, state_dir, SMALL, retention={"healing_history_days": 7})
    h = await harness(db, config, ManualClock(datetime.now(UTC)))
    cid = h.ids["items"]
    old_done = await _action(db, cid, "succeeded", 400)
    old_open = await _action(db, cid, "pending_approval", 400)
    recent_done = await _action(db, cid, "rolled_back", 3)
    held = await _action(db, cid, "lifted", 400)  # a throttle row still names it
    await db.execute(
        "INSERT INTO ruvector.throttles (collection_id, operation, throttle_pct, action_id, "
        "expires_at) VALUES ($1, 'insert', 0, $2, now())",
        cid,
        held,
    )
    await db.execute(
        "INSERT INTO ruvector.healing_requests (kind, requested_at, processed_at, status) "
        "VALUES ('trigger', now() - interval '400 days', now() - interval '400 days', 'done'),"
        "       ('trigger', now() - interval '400 days', NULL, 'pending')"
    )
    running = await _action(db, cid, "running", 400)  # in flight: its batches stay
    await db.execute(
        "INSERT INTO ruvector.placement_batches (collection_id, action_id, from_partition, "
        "to_partition, moved, moved_at) VALUES "
        "($1, $2, 'p1', 'p2', 10, now() - interval '400 days'), "
        "($1, $3, 'p1', 'p2', 10, now() - interval '400 days'), "
        "($1, $4, 'p1', 'p2', 10, now() - interval '3 days')",
        cid,
        old_done,
        running,
        recent_done,
    )
    assert h.store.signer is not None
    # the daemon's clock years ahead asks for everything; the floor keeps the last 7 days
    pruned = await Retention(db, h.store.signer).round(config, h.clock.now() + timedelta(days=3650))
    assert pruned.healing_history == 3  # an action, a request, a batch
    assert await db.fetchval(
        "SELECT array_agg(action_id ORDER BY action_id) FROM ruvector.placement_batches"
    ) == sorted([running, recent_done])
    left = {r["id"] for r in await db.fetch("SELECT id FROM ruvector.healing_actions")}
    assert left == {old_open, recent_done, held, running} and old_done not in left
    assert await db.fetchval("SELECT array_agg(status) FROM ruvector.healing_requests") == [
        "pending"
    ]
