"""Real daemon processes killed mid-pause and mid-rebuild: the restart leaves no disabled
autovacuum, no invalid index and no second vector index behind.

The classifier at main needs more than 2 weak dependency edges for MaintenanceContention and
more than 5 centroid nodes for CentroidSkew; these tests lower both thresholds to 0 so one
VACUUM FULL, and three overloaded IVF lists, are enough."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest

from ruvectord.scenarios.collection import CollectionSpec, create_collection
from tests.chaos.test_chaos import _config, _until, daemon
from tests.helpers import connect
from tests.integration.test_rebuild_centroids import skewed, vector_indexes
from tests.maintenance import owned_by_app, reloption, vacuum_full_blocking_writers

pytestmark = pytest.mark.slow


async def test_sigkill_mid_pause_leaves_no_autovacuum_disabled(dsn: str, tmp_path: Path) -> None:
    spec = CollectionSpec(partitions=4, rows_per_partition=50, index=False)
    conn = await connect(dsn)
    log = tmp_path / "daemon.log"
    try:
        await create_collection(conn, spec)
        await owned_by_app(conn, spec)
        cfg = await _config(
            tmp_path,
            "node-a",
            settle_seconds=120,  # the action sits in "verifying" when it is killed
            strategies={"pause_maintenance": {"cancel_manual_sessions": True}},
        )
        async with (
            vacuum_full_blocking_writers(dsn, "public.items_p2", writers=3),
            daemon(cfg, dsn, log) as proc,
        ):
            action = await _until(
                conn,
                "SELECT id FROM ruvector.healing_actions WHERE status = 'verifying' "
                "AND strategy_name = 'pause_maintenance'",
                60,
            )
            assert await reloption(conn, "public.items_p2") == "false"
            proc.send_signal(signal.SIGKILL)
            with anyio.fail_after(10):
                assert await proc.wait() == -signal.SIGKILL
        # the crash left autovacuum disabled: a reloption cannot lapse by itself
        assert await reloption(conn, "public.items_p2") == "false"
        async with daemon(cfg, dsn, log):
            status = await _until(
                conn,
                "SELECT status FROM ruvector.healing_actions WHERE id = $1 "
                "AND status <> 'verifying'",
                60,
                action,
            )
            await _until(
                conn,
                "SELECT count(*) FROM ruvector.integrity_events WHERE event_type = 'recovery'",
                30,
            )
        assert status == "rolled_back"
        assert await reloption(conn, "public.items_p2") is None  # absent, as it was
    finally:
        await conn.close()


@pytest.mark.pgvector
async def test_sigkill_mid_rebuild_leaves_no_invalid_or_second_index(
    dsn: str, tmp_path: Path
) -> None:
    spec = CollectionSpec(partitions=2, rows_per_partition=2000, dims=16, index=False)
    conn = await connect(dsn)
    log = tmp_path / "daemon.log"
    holder = await connect(dsn)
    try:
        await create_collection(conn, spec)
        await owned_by_app(conn, spec)
        strategies = {"recall_canary": {"ivfflat_probes": 10}}
        cfg = await _config(
            tmp_path,
            "node-a",
            strategies=strategies,
        )
        # the collection must exist in ruvector.collections before its centroid_stats
        async with daemon(cfg, dsn, log) as first:
            cid = await _until(conn, "SELECT id FROM ruvector.collections WHERE name = 'items'", 60)
            first.send_signal(signal.SIGTERM)
            await first.wait()
        # an old snapshot makes the daemon's CREATE INDEX CONCURRENTLY wait mid-build
        await holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        await holder.fetchval("SELECT count(*) FROM public.items_p1")
        await skewed(conn, cid)
        before = await vector_indexes(conn)
        oid = await conn.fetchval("SELECT 'public.items_p0_ivf'::regclass::oid")
        async with daemon(cfg, dsn, log) as proc:
            await _until(
                conn,
                "SELECT count(*) FROM pg_stat_progress_create_index WHERE phase LIKE 'waiting%'",
                90,
            )
            assert len(await vector_indexes(conn)) == 2  # the copy exists, not yet valid
            proc.send_signal(signal.SIGKILL)
            with anyio.fail_after(10):
                assert await proc.wait() == -signal.SIGKILL
        await holder.execute("ROLLBACK")
        action = await conn.fetchval(
            "SELECT id FROM ruvector.healing_actions WHERE strategy_name = 'rebuild_centroids'"
        )
        # the restart only recovers (healing off, so it does not simply rebuild again)
        off = await _config(
            tmp_path,
            "node-b",
            enabled=False,
            strategies=strategies,
        )
        async with daemon(off, dsn, log):
            status = await _until(
                conn,
                "SELECT status FROM ruvector.healing_actions WHERE id = $1 "
                "AND status NOT IN ('running', 'verifying', 'rolling_back')",
                90,
                action,
            )
        assert status == "rolled_back"
        assert await vector_indexes(conn) == before  # one index, name and definition exact
        assert await conn.fetchval("SELECT 'public.items_p0_ivf'::regclass::oid") == oid
        assert not await conn.fetchval("SELECT bool_or(NOT indisvalid) FROM pg_index")
    finally:
        await holder.close()
        await conn.close()
