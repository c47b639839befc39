"""Strategies that move rows, end to end on real daemons, and SIGKILLed at five points.

Each case: a collection with a declared placement (8 LIST partitions and a cold tier), 4
writers and 2 searchers that check every answer (tests/placement.py), a real fault (a burst
of writes on one partition for rebalance_partitions and drain_hot_partition; a deadlock storm
that no graph cause explains, with the host's real memory reading counted as pressure, for
evict_cold_data), and a real daemon process that detects it, classifies it and picks the
strategy under test. End to end, the action ends verified or rolled back; killed, it is
killed after plan, inside a batch's transaction, between batches, during verification or
during rollback, and the next daemon's recovery must leave every row exactly once and the
placement fully undone. Either way the collection ends with the same rows and vectors as the
writers' own record of what they committed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import asyncpg
import pytest
import yaml

from ruvectord.scenarios.collection import CollectionSpec, create_collection
from tests.helpers import connect
from tests.placement import Proof, deadlock_storm

pytestmark = [pytest.mark.slow, pytest.mark.pgvector]
SPEC = CollectionSpec(partitions=8, rows_per_partition=150, placement=True)
POINTS = ("after_plan", "mid_batch", "between_batches", "verify", "rollback")
STRATEGIES = ("rebalance_partitions", "drain_hot_partition", "evict_cold_data")
HOT = 3


def _config(tmp: Path, strategy: str, **healing: Any) -> dict[str, Any]:
    evict = strategy == "evict_cold_data"
    return {
        "daemon": {
            "state_directory": str(tmp / "state"),
            "node_name": "node-a",
            "shutdown_timeout_seconds": 5,
        },
        "metrics": {"enabled": False},
        "logging": {"format": "json"},
        "integrity": {
            "sample_interval_seconds": 0.25,
            "degrade_samples": 2,
            "critical_samples": 1000,
            "cooldown_seconds": 0,
            "recovery_hold_seconds": 3600,
            # the writers' updates leave dead index entries behind: not the fault under test
            "budgets": {
                "max_queue": 8,
                "fragmentation_budget": 1.0,
                # evict's fault is the error rate: neither the writers' random skew nor the
                # storm's lock waits (a queue on its partitions) is a hotspot
                **({"hot_load_ratio": 100.0, "max_queue": 1000} if evict else {}),
            },
        },
        "healing": {
            "min_healing_interval_seconds": 3600,  # one action per case
            "max_attempts_per_window": 1000,
            "ineffective_after": 0,
            "settle_seconds": 0.5,
            "max_auto_heal_impact": 0.5,
            # the memory reading of this host, whatever it is, counts as pressure
            "classifier": {"memory_pressure_pct": 0.0} if evict else {},
            # the writers leave dead index entries and the machine may be slow: what they
            # cause is not under test, only the placement strategy is
            "strategies": {
                name: {"enabled": False}
                for name in ("pause_maintenance", "compact_indexes", "rebuild_centroids")
            },
            **healing,
        },
        "collections": [
            {
                "name": "items",
                "table": "public.items",
                "vector_column": "embedding",
                "placement": SPEC.placement_config(
                    max_rows_per_batch=40, max_rows_per_action=200, max_batches_per_second=10
                ),
            }
        ],
    }


async def _write(path: Path, data: dict[str, Any]) -> Path:
    await anyio.Path(path).write_text(yaml.safe_dump(data))
    return path


@asynccontextmanager
async def daemon(
    config: Path, dsn: str, log: Path, testpoint: str | None = None
) -> AsyncIterator[anyio.abc.Process]:
    cmd = [sys.executable, "-m", "ruvectord.cli", "run", "-c", str(config), "--dsn", dsn]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUVECTORD_")}
    if testpoint:
        env["RUVECTORD_TESTPOINT"] = testpoint
    out = await anyio.to_thread.run_sync(lambda: log.open("ab"))
    try:
        async with await anyio.open_process(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env
        ) as proc:
            try:
                yield proc
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    with anyio.move_on_after(15) as waited:
                        await proc.wait()
                    if waited.cancelled_caught:
                        proc.kill()
                        await proc.wait()
    finally:
        await anyio.to_thread.run_sync(out.close)


async def _until(
    conn: asyncpg.Connection, sql: str, limit: float, *args: Any, log: Path | None = None
) -> Any:
    try:
        with anyio.fail_after(limit):
            while not (value := await conn.fetchval(sql, *args)):  # noqa: ASYNC110
                await anyio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {limit} s: {sql}{await _last_words(log)}") from None
    return value


async def _logged(log: Path, event: str, limit: float) -> None:
    try:
        with anyio.fail_after(limit):
            while True:
                text = await anyio.Path(log).read_text()
                if f'"{event}"' in text:
                    return
                await anyio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"no {event} within {limit} s{await _last_words(log)}") from None


async def _last_words(log: Path | None) -> str:
    """The daemon's last decisions, for a failure message: what it was doing instead."""
    if log is None or not await anyio.Path(log).exists():
        return ""
    lines = (await anyio.Path(log).read_text()).splitlines()
    said = [line for line in lines if '"cycle_decided"' in line or '"level": "error"' in line]
    return "\nthe daemon's last lines:\n" + "\n".join(said[-6:])


async def _prepare(conn: asyncpg.Connection, strategy: str) -> bool:
    vector = await create_collection(conn, SPEC)
    # a third of the rows were last written 40 days ago: cold
    await conn.execute(
        "UPDATE public.items SET created_at = now() - interval '40 days' WHERE id % 3 = 0"
    )
    # fresh indexes again: the update's dead entries would read as fragmentation
    await conn.execute("REINDEX TABLE public.items")
    await conn.execute("VACUUM ANALYZE public.items")
    # the strategy under test is the learned favourite (the others keep the default 1.0)
    await conn.execute(
        "INSERT INTO ruvector.strategy_weights (strategy_name, weight, attempts, successes, "
        "success_rate, avg_improvement) VALUES ($1, 5.0, 1, 1, 1.0, 4.0)",
        strategy,
    )
    return vector


@asynccontextmanager
async def fault(dsn: str, strategy: str, vector: bool) -> AsyncIterator[None]:
    cast = "vector" if vector else "real[]"
    e = (
        "[" + ",".join(["0.5"] * SPEC.dims) + "]"
        if vector
        else "{" + ",".join(["0.5"] * SPEC.dims) + "}"
    )

    async def burst() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            while True:
                await conn.execute(
                    "INSERT INTO public.items (shard, embedding) "
                    f"SELECT $1, $2::{cast} FROM generate_series(1, 10)",
                    HOT,
                    e,
                )
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close(timeout=5)

    async def vacuum() -> None:
        # the proof's writers update rows (dead index entries); on a loaded machine the
        # daemon may take long enough to act that they outweigh the fault under test and
        # the case turns into IndexFragmentation: keep them vacuumed, as autovacuum would
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            while True:
                await conn.execute("VACUUM (SKIP_LOCKED) public.items")
                await anyio.sleep(1.0)
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close(timeout=5)

    async with anyio.create_task_group() as tg:
        tg.start_soon(vacuum)
        if strategy == "evict_cold_data":
            tg.start_soon(deadlock_storm, dsn)
        else:
            for _ in range(6):
                tg.start_soon(burst)
        yield
        tg.cancel_scope.cancel()


@asynccontextmanager
async def proving(proof: Proof) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        for n in range(4):
            tg.start_soon(proof.writer, n)
        tg.start_soon(proof.exact_searcher)
        tg.start_soon(proof.knn_searcher)
        try:
            yield
        finally:
            proof.stopping = True  # each finishes its statement, records it, and returns


async def _adopt_fault_rows(conn: asyncpg.Connection, proof: Proof) -> None:
    """Rows the fault inserted (identical vectors of 0.5) become part of the model."""
    rows = await conn.fetch(
        "SELECT id, shard, embedding::text AS e FROM public.items WHERE id <> ALL($1::bigint[]) "
        "AND embedding::text = ($2)",
        list(proof.model),
        "[" + ",".join(["0.5"] * SPEC.dims) + "]",
    )
    for r in rows:
        proof.model[int(r["id"])] = str(r["e"])
        proof.shards[int(r["id"])] = HOT  # the burst writes only there


def _placement_expected(proof: Proof, action: dict[str, Any] | None) -> dict[int, int]:
    """id -> shard the rows must have: as written, plus the moves of a verified action."""
    want = dict(proof.shards)
    if action is not None and action["status"] == "succeeded":
        for batch in action["rollback_data"].get("batches", []):
            if batch.get("state") == "done":
                for k in batch["keys"]:
                    want[int(k)] = int(batch["to_value"])
    return want


async def _run(
    dsn: str, tmp: Path, strategy: str, point: str | None
) -> tuple[dict[str, Any], Proof]:
    conn = await connect(dsn)
    log = tmp / "daemon.log"
    try:
        vector = await _prepare(conn, strategy)
        proof = Proof(dsn, SPEC, vector=vector)
        await proof.start(conn)
        healing: dict[str, Any] = {}
        if point == "verify":
            healing["settle_seconds"] = 120  # the action sits in "verifying"
        if point == "rollback":
            healing["min_improvement"] = 10.0  # never verified: always rolled back
        cfg = await _write(tmp / "a.yaml", _config(tmp, strategy, **healing))
        testpoint = {
            "after_plan": "placement.after_plan",
            "between_batches": "placement.between_batches",
            "rollback": "placement.rollback_batch",
        }.get(point or "")
        holder: asyncpg.Connection | None = None
        if point == "mid_batch":
            # the batch's transaction records itself in placement_batches last: hold that
            # table so the first batch waits there, its rows already moved, uncommitted
            holder = await asyncpg.connect(dsn, timeout=10)
            await holder.execute("BEGIN; LOCK TABLE ruvector.placement_batches IN EXCLUSIVE MODE")
        async with proving(proof):
            async with fault(dsn, strategy, vector), daemon(cfg, dsn, log, testpoint) as proc:
                if point is None:
                    await _until(
                        conn,
                        "SELECT status FROM ruvector.healing_actions WHERE status IN "
                        "('succeeded', 'rolled_back', 'failed', 'unverified', "
                        "'rollback_failed') LIMIT 1",
                        120,
                        log=log,
                    )
                else:
                    if testpoint:
                        await _logged(log, "testpoint_reached", 120)
                    elif point == "mid_batch":
                        await _until(
                            conn,
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                            "'Lock' AND query LIKE '%placement_move%'",
                            120,
                            log=log,
                        )
                    else:
                        await _until(
                            conn,
                            "SELECT id FROM ruvector.healing_actions WHERE status = 'verifying'",
                            120,
                            log=log,
                        )
                    proc.send_signal(signal.SIGKILL)
                    with anyio.fail_after(10):
                        assert await proc.wait() == -signal.SIGKILL
                    if holder is not None:
                        # the killed daemon's batch commits after it died: only the journal's
                        # "before" record knows those rows moved
                        await holder.execute("COMMIT")
                        await _until(
                            conn,
                            "SELECT count(*) = 0 FROM pg_stat_activity WHERE state <> 'idle' "
                            "AND query LIKE '%ruvector.placement_move(%' "
                            "AND pid <> pg_backend_pid()",
                            30,
                        )
            if point is not None:
                row = await conn.fetchrow(
                    "SELECT id, status FROM ruvector.healing_actions ORDER BY id LIMIT 1"
                )
                assert row is not None and row["status"] in (
                    "running",
                    "verifying",
                    "rolling_back",
                ), row
                # restart: recovery only (healing off), while writers and searchers go on
                calm = await _write(tmp / "b.yaml", _config(tmp, strategy, enabled=False))
                async with daemon(calm, dsn, log):
                    await _until(
                        conn,
                        "SELECT status FROM ruvector.healing_actions WHERE id = $1 AND status "
                        "NOT IN ('running', 'verifying', 'rolling_back')",
                        60,
                        row["id"],
                    )
            await anyio.sleep(0.5)  # a few more searches after the last move
        if holder is not None:
            await holder.close()
        await _adopt_fault_rows(conn, proof)
        action = await conn.fetchrow(
            "SELECT id, strategy_name, status, rollback_data, error_message "
            "FROM ruvector.healing_actions ORDER BY id LIMIT 1"
        )
        assert action is not None, await anyio.Path(log).read_text()
        result = dict(action)
        result["rollback_data"] = (
            json.loads(result["rollback_data"])
            if isinstance(result["rollback_data"], str)
            else result["rollback_data"]
        )
        shards = await proof.check(conn)
        assert shards == _placement_expected(proof, result), result
        result["moved_batches"] = await conn.fetchval(
            "SELECT count(*) FROM ruvector.placement_batches WHERE action_id = $1", result["id"]
        )
        result["drains"] = await conn.fetchval("SELECT count(*) FROM ruvector.drains")
        return result, proof
    finally:
        await conn.close()


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_end_to_end_under_writers_and_searchers(
    dsn: str, tmp_path: Path, strategy: str
) -> None:
    action, proof = await _run(dsn, tmp_path, strategy, None)
    assert action["strategy_name"] == strategy, action
    # lifted: it worked and integrity recovered before the test looked (lift on recovery)
    assert action["status"] in ("succeeded", "rolled_back", "lifted"), action
    assert action["moved_batches"] >= 1, action  # rows really moved (and maybe back)
    assert proof.tally.updates > 0 and proof.tally.searches > 20
    if action["status"] == "rolled_back" or strategy != "drain_hot_partition":
        assert action["drains"] == 0


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_sigkill_then_recovery_leaves_every_row_once_and_the_placement_undone(
    dsn: str, tmp_path: Path, strategy: str, point: str
) -> None:
    action, _ = await _run(dsn, tmp_path, strategy, point)
    assert action["strategy_name"] == strategy, action
    assert action["status"] == "rolled_back", action
    assert "rolled back at takeover" in (action["error_message"] or ""), action
    assert action["drains"] == 0
    if point != "after_plan":
        assert action["moved_batches"] >= 1, action
