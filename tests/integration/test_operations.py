"""What operators rely on: the CLI, restarts, retention, standbys, frozen learning."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from ruvectord.clock import ManualClock
from ruvectord.integrity.hysteresis import State
from ruvectord.metrics import Metrics
from ruvectord.postgres.leader import ActorLock
from ruvectord.postgres.pool import Database
from ruvectord.postgres.retention import prune_samples
from ruvectord.postgres.store import Store
from ruvectord.scenarios.collection import (
    CollectionSpec,
)
from ruvectord.scenarios.replica import StreamingPair
from tests.conftest import options
from tests.helpers import cli, collection, harness, hot_sample, make_config

SPEC = CollectionSpec(partitions=8, rows_per_partition=20)


async def _config_file(tmp: Path, dsn: str, trusted: str = "") -> Path:
    path = tmp / "ruvectord.yaml"
    await anyio.Path(path).write_text(
        f"database: {{dsn: '{dsn}'}}\nlogging: {{format: json}}\n"
        f"daemon: {{state_directory: '{tmp}'}}\n"
        f"integrity: {{trusted_public_keys: [{trusted}]}}\n"
        "collections:\n  - {name: items, table: public.items, vector_column: embedding}\n"
    )
    return path


async def _degrade(dsn: str, db: Database, state_dir: Path, samples: int = 3) -> str:
    """Three hot samples (on a clock that starts now, so they are fresh); returns the public
    key (hex) the harness signed events with."""
    async with collection(dsn, SPEC) as conn:
        h = await harness(db, make_config(dsn, state_dir, SPEC), ManualClock(datetime.now(UTC)))
        monitor = h.monitor("items")
        await monitor.cycle()
        for _ in range(samples):
            await hot_sample(conn, h, monitor, SPEC, shard=2, background=0)
        assert h.store.signer is not None
        return h.store.signer.public_bytes.hex()


async def test_status_and_audit_verify_from_the_cli(
    db: Database, dsn: str, state_dir: Path, tmp_path: Path
) -> None:
    key = await _degrade(dsn, db, state_dir)
    cfg = await _config_file(tmp_path, dsn)
    status = await cli("status", "-c", str(cfg))
    assert status.returncode == 3, status.stderr  # degraded: in stress, and no daemon acting
    assert status.stdout.startswith("COLLECTION  STATE   LAMBDA  LAST SAMPLE")
    assert "\nitems       stress   0.6" in status.stdout
    assert "weakest cut: 4 partition_link + 1 routing around public.items_p2" in status.stdout
    unknown = await cli("status", "-c", str(cfg), "nope")
    assert unknown.returncode == 2 and "unknown collection 'nope'" in unknown.stderr

    unpinned = await cli("audit", "verify", "-c", str(cfg))
    assert unpinned.returncode == 2 and "no pinned key" in unpinned.stderr
    cfg = await _config_file(tmp_path, dsn, trusted=key)
    ok = await cli("audit", "verify", "-c", str(cfg))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == "1 event(s) checked against 1 pinned key(s), 0 failed"
    await db.execute("UPDATE ruvector.integrity_events SET lambda_cut = lambda_cut + 1e-9")
    bad = await cli("audit", "verify", "-c", str(cfg))
    assert bad.returncode == 1
    # the signature no longer matches, and the chain's head no longer names this event's hash
    assert "altered or forged" in bad.stdout and "head names event 1" in bad.stdout
    assert "1 event(s) checked against 1 pinned key(s), 2 failed" in bad.stdout


async def test_heal_approve_reject_and_list_from_the_cli(
    db: Database, dsn: str, state_dir: Path, tmp_path: Path
) -> None:
    ids = await Store(db).sync_collections(make_config(dsn, state_dir, SPEC))
    for strategy in ("scale_replicas", "scale_replicas_again"):
        await db.execute(
            "INSERT INTO ruvector.healing_actions (collection_id, problem_class, "
            "problem_details, strategy_name, status, reversible, integrity_state, "
            "initial_lambda, actor, created_at, updated_at, expires_at) VALUES ($1, "
            "'HotspotCongestion', '{}', $2, 'pending_approval', true, 'stress', 0.4, 'n', "
            "now(), now(), now() + interval '1 hour')",
            ids["items"],
            strategy,
        )
    cfg = await _config_file(tmp_path, dsn)
    approved = await cli("heal", "approve", "1", "-c", str(cfg))
    assert (approved.returncode, approved.stdout) == (0, "action 1 approved (request 1)\n")
    # no daemon holds the actor lock: said at once, not waited for
    assert approved.stderr.startswith("note: no daemon holds the actor lock"), approved.stderr
    again = await cli("heal", "approve", "1", "-c", str(cfg))
    assert again.returncode == 2 and "action 1 is approved, not pending approval" in again.stderr
    rejected = await cli("heal", "reject", "2", "-c", str(cfg))
    assert rejected.stdout == "action 2 rejected (request 2)\n"
    missing = await cli("heal", "approve", "99", "-c", str(cfg))
    assert missing.returncode == 2 and "there is no healing action 99" in missing.stderr
    listing = await cli("heal", "list", "-c", str(cfg))
    lines = listing.stdout.splitlines()
    assert re.match(r"ID +CREATED +COLLECTION +STRATEGY +STATUS +LAMBDA +NOTE$", lines[0])
    # newest first; times carry their zone
    assert re.match(r" 2  \S+ \S+ UTC  items +scale_replicas_again +rejected +0.400 -> -", lines[1])
    assert re.match(r" 1  \S+ \S+ UTC  items +scale_replicas +approved +0.400 -> -$", lines[2])
    report = await cli("effectiveness", "-c", str(cfg))
    assert report.stdout.strip().endswith(
        "overall: 0 attempt(s), 0% verified, mean time to verification -, "
        "mean time to recovery (degraded -> normal) -"
    )


async def test_the_state_survives_a_restart(db: Database, dsn: str, state_dir: Path) -> None:
    await _degrade(dsn, db, state_dir)
    h = await harness(db, make_config(dsn, state_dir, SPEC))
    fresh = h.monitor("items")
    await fresh.restore()
    assert fresh.tracker.state is State.STRESS
    assert fresh.tracker.last_transition_at is not None


async def test_samples_are_pruned_in_batches_past_retention(
    db: Database, dsn: str, state_dir: Path
) -> None:
    await _degrade(dsn, db, state_dir, samples=5)
    newest = await db.fetchval("SELECT max(sampled_at) FROM ruvector.integrity_samples")
    deleted = await prune_samples(db, newest - timedelta(seconds=2.5), batch=1)
    assert deleted == 3
    assert await db.fetchval("SELECT count(*) FROM ruvector.integrity_samples") == 3


async def test_a_daemon_on_a_standby_never_acts(server_root: Path) -> None:
    pair = await anyio.to_thread.run_sync(
        lambda: StreamingPair.create(server_root / "repl", primary_port=5443, standby_port=5444)
    )
    try:
        db = await Database.connect(options(pair.standby.dsn()))
        try:
            lock = ActorLock(db, Metrics(), check_interval=0.1)
            async with anyio.create_task_group() as tg:
                tg.start_soon(lock.run)
                with anyio.fail_after(10):
                    while "standby" not in lock.why_not:
                        await lock.changed.wait()
                assert not lock.is_actor
                assert lock.why_not == "connected to a standby (pg_is_in_recovery() is true)"
                tg.cancel_scope.cancel()
        finally:
            await db.close()
    finally:
        await anyio.to_thread.run_sync(pair.destroy)


@pytest.mark.pgvector
async def test_vector_indexes_are_seen_with_their_size(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC):
        h = await harness(db, make_config(dsn, state_dir, SPEC))
        cycle = await h.monitor("items").cycle()
        indexes = cycle.snapshot.indexes
        assert len(indexes) == SPEC.partitions
        assert {i.method for i in indexes} == {"hnsw"} and all(i.bytes > 0 for i in indexes)
        nodes = [n for n in cycle.result.graph.nodes if n.kind.value == "index"]
        assert len(nodes) == SPEC.partitions
        assert all(n.attrs["bytes_per_live_tuple"] > 0 for n in nodes)
