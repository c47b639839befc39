"""`ruvectord replay` on a real server: the monitor and the engine record a real hot-partition
incident (transitions, a class, a strategy chosen and run, cooldowns, recovery); replaying the
window under the same config reproduces every recorded decision exactly, another config
decides otherwise and says where and why; bad input is named, not a traceback."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
import yaml

from ruvectord.clock import ManualClock
from ruvectord.config import Config, load_config
from ruvectord.daemon import audit_writer
from ruvectord.healing.engine import RemediationEngine
from ruvectord.healing.strategies import builtin_registry
from ruvectord.integrity.hysteresis import State
from ruvectord.postgres.actions import HealingStore
from ruvectord.postgres.pool import Database
from ruvectord.postgres.retention import prune_samples
from ruvectord.scenarios.collection import (
    THROTTLED_SQLSTATE,
    CollectionSpec,
    create_collection,
    flush_stats,
    hot,
    insert_rows,
)
from tests.conftest import PgServer, options
from tests.helpers import cli, connect, harness, make_config
from tests.integration.test_healing_e2e import running_actor
from tests.roles import parties

SPEC = CollectionSpec(partitions=8, rows_per_partition=20)
FROM = "2025-12-31T00:00:00+00:00"  # the manual clock starts on 2026-01-01


async def _write(path: Path, dsn: str, state_dir: Path, **integrity: Any) -> Path:
    data = {
        "database": {"dsn": dsn, "connect_retries": 1, "statement_timeout_seconds": 10},
        "daemon": {"state_directory": str(state_dir), "node_name": "test-node"},
        "integrity": {
            "sample_interval_seconds": 1,
            "recovery_hold_seconds": 5,
            "cooldown_seconds": 0,
            **integrity,
        },
        "healing": {"settle_seconds": 10, "min_healing_interval_seconds": 60},
        "collections": [{"name": "items", "table": SPEC.qualified, "vector_column": "embedding"}],
    }
    await anyio.Path(path).write_text(yaml.safe_dump(data))
    return path


async def _load(path: Path) -> Config:
    return await anyio.to_thread.run_sync(load_config, path)


async def _burst(conn: asyncpg.Connection) -> None:
    """A write burst on one partition, retried as a client does while the throttle turns
    statements away (each statement is rolled at random)."""
    for _ in range(50):
        try:
            await insert_rows(conn, SPEC, hot(SPEC, 3, 600, background=5))
            break
        except asyncpg.PostgresError as exc:
            if exc.sqlstate != THROTTLED_SQLSTATE:
                raise
    await flush_stats(conn)


async def _incident(db: Database, conn: asyncpg.Connection, config: Config) -> list[str]:
    """A quiet sample, a hot partition for five samples, then quiet until normal again."""
    async with running_actor(db) as actor:
        h = await harness(db, config, ManualClock())
        engine = RemediationEngine(
            config=lambda: config,
            registry=builtin_registry(config=lambda: config),
            journal=HealingStore(db),
            sql=db,
            clock=h.clock,
            metrics=h.metrics,
            actor=actor,
            audit=audit_writer(h.store, h.clock),
            node="replay",
        )
        monitor = h.monitor("items", healer=engine)
        await monitor.cycle()
        lines = []
        for _ in range(5):
            await _burst(conn)
            h.clock.advance(1)
            await monitor.cycle()
            lines.append(h.runtime.decisions["items"])
        for _ in range(8):
            h.clock.advance(3)
            await monitor.cycle()
            lines.append(h.runtime.decisions["items"])
            if monitor.tracker.state is State.NORMAL:
                break
        assert monitor.tracker.state is State.NORMAL, lines
        return lines


async def _replay(dsn: str, path: Path, *extra: str) -> dict[str, Any]:
    done = await cli("replay", "-c", str(path), "--collection", "items", "--from", FROM, *extra)
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout) if "--json" in extra else {"text": done.stdout}
    return out


async def test_replay_reproduces_the_recorded_decisions_and_another_config_differs(
    db: Database, dsn: str, tmp_path: Path, state_dir: Path
) -> None:
    path = await _write(tmp_path / "same.yaml", dsn, state_dir)
    config = await _load(path)
    conn = await connect(dsn)
    try:
        await create_collection(conn, SPEC)
        lines = await _incident(db, conn, config)
    finally:
        await conn.close()
    assert any("throttle_ingestion (action 1) verified" in line for line in lines), lines
    assert any("cooldown: last attempt" in line for line in lines), lines
    frames = await db.fetch("SELECT octet_length(frame) AS n FROM ruvector.integrity_samples")
    assert frames and all(r["n"] for r in frames)
    assert await db.fetchval("SELECT count(*) FROM ruvector.healing_decisions") >= 3

    same = await _replay(dsn, path, "--json")
    samples, summary = same["samples"], same["summary"]
    assert len(samples) == len(frames)
    for s in samples:
        assert s["differs"] == [], s
        assert s["lambda_cut"] == s["recorded"]["lambda_cut"]
        assert s["state"] == s["recorded"]["state"]
        assert s["problem_class"] == s["recorded"]["problem_class"] or (
            s["recorded"]["problem_class"] is None and s["decision"] in ("none", "gate")
        )
        assert (s["decision"], s["strategy"], s["why"]) == (
            s["recorded"]["decision"],
            s["recorded"]["strategy"],
            s["recorded"]["why"],
        )
    assert summary["differing"] == 0 and summary["approximate"] == 0
    moves = summary["transitions"]
    assert moves["recorded"] == moves["replayed"]
    assert moves["replayed"][0]["transition"] == "normal -> stress"
    assert moves["replayed"][-1]["transition"] == "stress -> normal"
    assert summary["classes"]["recorded"] == summary["classes"]["replayed"]
    assert summary["classes"]["replayed"]["HotspotCongestion"] >= 2
    assert summary["actions"] == {
        "recorded": {"throttle_ingestion": 1},
        "replayed": {"throttle_ingestion": 1},
    }
    blocked = [s for s in samples if s["why"].startswith("cooldown: last attempt")]
    assert blocked and all(s["decision"] == "blocked" for s in blocked)

    # the table: headers, times with their zone, the summary lines
    text = (await _replay(dsn, path))["text"]
    assert "TIME" in text and "LAMBDA" in text and "DIFFERS" in text and " UTC" in text
    assert f"samples: {len(samples)} replayed, 0 differ from the recording" in text
    assert "actions chosen: recorded throttle_ingestion x1; replayed throttle_ingestion x1" in text

    # five low samples before stress: the stress, the class and the action come two samples
    # later, and each differing sample says what was recorded and why it differs
    slower = await _write(tmp_path / "slower.yaml", dsn, state_dir, degrade_samples=5)
    other = await _replay(dsn, slower, "--json")
    o_samples, o_summary = other["samples"], other["summary"]
    assert o_summary["differing"] > 0
    recorded, replayed = o_summary["transitions"]["recorded"], o_summary["transitions"]["replayed"]
    assert replayed[0]["transition"] == "normal -> stress"
    assert replayed[0]["at"] > recorded[0]["at"]
    first = next(s for s in o_samples if s["differs"])
    assert first["differs"][:1] == ["state"]
    assert first["state"] == "normal" and first["recorded"]["state"] == "stress"
    assert first["reason"].endswith("stress after 5"), first
    assert first["lambda_cut"] == first["recorded"]["lambda_cut"]  # the same cut, read otherwise
    # the replay's own action, later: the recorded attempt it did not make is no cooldown
    acted = [s for s in o_samples if s["decision"] == "chosen"]
    assert [s["strategy"] for s in acted] == ["throttle_ingestion"]
    assert acted[0]["sampled_at"] == replayed[0]["at"] and acted[0]["approximate"]
    assert o_summary["actions"]["replayed"] == {"throttle_ingestion": 1}
    text = (await _replay(dsn, slower))["text"]
    assert "state (recorded stress)" in text
    assert "1 approximate (selection on corrected or borrowed inputs)" in text

    # a stress threshold below every sample: nothing degrades, nothing is chosen
    lenient = await _write(
        tmp_path / "lenient.yaml", dsn, state_dir, threshold_high=0.05, threshold_low=0.01
    )
    calm = await _replay(dsn, lenient, "--json")
    assert calm["summary"]["transitions"]["replayed"] == []
    assert calm["summary"]["actions"]["replayed"] == {}
    assert calm["summary"]["actions"]["recorded"] == {"throttle_ingestion": 1}


async def test_replay_names_bad_input(
    db: Database, dsn: str, tmp_path: Path, state_dir: Path
) -> None:
    path = await _write(tmp_path / "c.yaml", dsn, state_dir)
    config = await _load(path)
    conn = await connect(dsn)
    try:
        await create_collection(conn, SPEC)
        h = await harness(db, config, ManualClock())
        await h.monitor("items").cycle()
        # a sample recorded before schema v12: no frame
        cid = h.ids["items"]
        await conn.execute(
            "INSERT INTO ruvector.integrity_samples (collection_id, sampled_at, lambda_cut, "
            "lambda_cut_raw, state, node_count, edge_count, witness_count, sample_ms, "
            "computation_ms) VALUES ($1, '2025-06-01T00:00Z', 1, 1, 'normal', 1, 0, 0, 1, 1)",
            cid,
        )
    finally:
        await conn.close()

    async def fails(*args: str) -> str:
        done = await cli("replay", "--dsn", dsn, *args)
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert done.stdout == ""
        return done.stderr.strip()

    said = await fails("--collection", "nope", "--from=-1d")
    assert "unknown collection 'nope' (known: items)" in said
    said = await fails("--collection", "items", "--from", "now", "--to=-1h")
    assert "--from" in said and "is after --to" in said
    said = await fails("--collection", "items", "--from", "yesterday")
    assert "--from 'yesterday': expected an ISO 8601 time" in said
    said = await fails("--collection", "items", "--from", "2020-01-01", "--to", "2020-02-01")
    assert "no samples of items recorded between" in said
    said = await fails(
        "--collection", "items", "--from", "2025-05-01T00:00Z", "--to", "2025-07-01T00:00Z"
    )
    assert "no replay frames recorded for items" in said and "before schema v12" in said
    # with --dsn alone (the defaults): the recorded sample and the old one, which is skipped
    done = await cli("replay", "--dsn", dsn, "--collection", "items", "--from", FROM, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"]["samples"] == 1


@pytest.mark.parametrize("partitions", [64])
async def test_a_frame_at_64_partitions(
    db: Database, dsn: str, state_dir: Path, tmp_path: Path, partitions: int
) -> None:
    spec = CollectionSpec(partitions=partitions, rows_per_partition=5)
    path = await _write(tmp_path / "c.yaml", dsn, state_dir)
    data = yaml.safe_load(await anyio.Path(path).read_text())
    data["collections"][0]["table"] = spec.qualified
    await anyio.Path(path).write_text(yaml.safe_dump(data))
    config = await _load(path)
    conn = await connect(dsn)
    try:
        await create_collection(conn, spec)
    finally:
        await conn.close()
    h = await harness(db, config, ManualClock())
    monitor = h.monitor("items")
    await monitor.cycle()
    h.clock.advance(1)
    await monitor.cycle()
    sizes = [
        r["n"]
        for r in await db.fetch("SELECT octet_length(frame) AS n FROM ruvector.integrity_samples")
    ]
    assert max(sizes) < 2048, sizes


async def test_the_daemon_role_records_what_replay_reads_and_a_reader_replays(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """With the grants of deploy/sql/roles.sql: the daemon writes frames and decisions (and
    prunes them), a ruvector_reader replays."""
    async with parties(pg_server) as p:
        db = await Database.connect(options(p.as_(p.daemon)))
        try:
            config = make_config(p.as_(p.daemon), tmp_path, p.spec)
            h = await harness(db, config, ManualClock())
            await h.monitor("items").cycle()
            journal = HealingStore(db)
            for _ in range(2):  # the first decision on a sample stands
                await journal.record_decision(
                    h.ids["items"], h.clock.now(), {"g": "busy", "k": "busy"}
                )
            done = await cli(
                "replay",
                "--dsn",
                p.as_(p.reader),
                "--collection",
                "items",
                "--from",
                FROM,
                "--json",
            )
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["summary"]["samples"] == 1
            assert await prune_samples(db, h.clock.now() + timedelta(days=1), 100) == 1
            assert await db.fetchval("SELECT count(*) FROM ruvector.healing_decisions") == 0
        finally:
            await db.close()
