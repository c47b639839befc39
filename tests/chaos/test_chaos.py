"""Real daemon processes, real faults: SIGKILL mid-action, and two daemons on one database."""

from __future__ import annotations

import itertools
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
from ruvectord.scenarios.workload import Workload
from tests.helpers import connect

pytestmark = pytest.mark.slow
SPEC = CollectionSpec(partitions=8, rows_per_partition=20)


async def _config(
    tmp: Path, node: str, integrity: dict[str, Any] | None = None, **healing: Any
) -> Path:
    data = {
        "daemon": {
            "state_directory": str(tmp / node),
            "node_name": node,
            "shutdown_timeout_seconds": 5,
        },
        "metrics": {"enabled": False},
        "logging": {"format": "json"},
        "integrity": {
            "sample_interval_seconds": 0.25,
            "degrade_samples": 1,
            "critical_samples": 1000,
            "cooldown_seconds": 0,
            "recovery_hold_seconds": 0,
            "budgets": {"max_queue": 8},
            **(integrity or {}),
        },
        "healing": {
            "min_healing_interval_seconds": 0,
            "max_attempts_per_window": 100000,
            "ineffective_after": 0,
            "settle_seconds": 0.2,
            "throttle": {"retry_after_seconds": 0.2},
            **healing,
        },
        "collections": [{"name": "items", "table": "public.items", "vector_column": "embedding"}],
    }
    path = tmp / f"{node}.yaml"
    await anyio.Path(path).write_text(yaml.safe_dump(data))
    return path


@asynccontextmanager
async def daemon(config: Path, dsn: str, log: Path) -> AsyncIterator[anyio.abc.Process]:
    cmd = [sys.executable, "-m", "ruvectord.cli", "run", "-c", str(config), "--dsn", dsn]
    out = await anyio.to_thread.run_sync(lambda: log.open("ab"))
    try:
        async with await anyio.open_process(cmd, stdout=out, stderr=subprocess.STDOUT) as proc:
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


@asynccontextmanager
async def hot_writers(dsn: str, vector: bool, n: int = 6) -> AsyncIterator[Workload]:
    work = Workload(dsn, SPEC, vector=vector)
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(lambda: work.writer([3], rows_per_statement=10))
        yield work
        tg.cancel_scope.cancel()


async def _until(conn: asyncpg.Connection, sql: str, limit: float, *args: Any) -> Any:
    with anyio.fail_after(limit):
        while not (value := await conn.fetchval(sql, *args)):  # noqa: ASYNC110
            await anyio.sleep(0.1)
    return value


async def test_sigkill_mid_action_is_rolled_back_at_restart(dsn: str, tmp_path: Path) -> None:
    conn = await connect(dsn)
    log = tmp_path / "daemon.log"
    try:
        vector = await create_collection(conn, SPEC)
        cfg = await _config(
            tmp_path, "node-a", settle_seconds=120
        )  # the action sits in "verifying"
        async with hot_writers(dsn, vector), daemon(cfg, dsn, log) as proc:
            await _until(
                conn, "SELECT id FROM ruvector.healing_actions WHERE status = 'verifying'", 60
            )
            assert await conn.fetchval("SELECT count(*) FROM ruvector.throttles") == 2
            proc.send_signal(signal.SIGKILL)
            with anyio.fail_after(10):
                assert await proc.wait() == -signal.SIGKILL
        # the crash left the action in flight and the throttle in place
        row = await conn.fetchrow(
            "SELECT id, status FROM ruvector.healing_actions WHERE status = 'verifying'"
        )
        assert row is not None, await conn.fetch("SELECT * FROM ruvector.healing_actions")
        assert await conn.fetchval("SELECT count(*) FROM ruvector.throttles") == 2

        async with daemon(cfg, dsn, log):
            status = await _until(
                conn,
                "SELECT status FROM ruvector.healing_actions WHERE id = $1 "
                "AND status <> 'verifying'",
                60,
                row["id"],
            )
            # recovery journals, then records the outcome, then signs the event: wait for all
            await _until(
                conn,
                "SELECT count(*) FROM ruvector.integrity_events WHERE event_type = 'recovery'",
                30,
            )
        assert status == "rolled_back"
        assert await conn.fetchval("SELECT count(*) FROM ruvector.throttles") == 0
        err = await conn.fetchval(
            "SELECT error_message FROM ruvector.healing_actions WHERE id = $1", row["id"]
        )
        assert "interrupted while verifying" in err and "rolled back at takeover" in err
        outcome = await conn.fetchrow(
            "SELECT * FROM ruvector.healing_outcomes "
            "WHERE (system_metrics ->> 'action_id')::bigint = $1",
            row["id"],
        )
        assert outcome is not None and not outcome["success"]
        assert outcome["system_metrics"]["recovered"] is True
        recovery = await conn.fetchval(
            "SELECT count(*) FROM ruvector.integrity_events WHERE event_type = 'recovery'"
        )
        assert recovery == 1
        # and the guard lets every insert through again
        sample = await conn.fetchval("SELECT embedding FROM public.items LIMIT 1")
        for _ in range(100):
            await conn.execute("INSERT INTO public.items (shard, embedding) VALUES (1, $1)", sample)
    finally:
        await conn.close()


async def test_two_daemons_never_run_two_actions_at_once(dsn: str, tmp_path: Path) -> None:
    conn = await connect(dsn)
    log = tmp_path / "daemons.log"
    try:
        vector = await create_collection(conn, SPEC)
        count_sql = "SELECT count(*) FROM ruvector.healing_actions WHERE started_at IS NOT NULL"
        async with hot_writers(dsn, vector):
            cfg_a, cfg_b = await _config(tmp_path, "node-a"), await _config(tmp_path, "node-b")
            async with daemon(cfg_a, dsn, log) as a, daemon(cfg_b, dsn, log) as b:
                await _until(conn, f"SELECT ({count_sql}) >= 25", 120)
                leader = await conn.fetchval(
                    "SELECT actor FROM ruvector.healing_actions ORDER BY id DESC LIMIT 1"
                )
                (a if leader == "node-a" else b).send_signal(signal.SIGKILL)
                await _until(conn, f"SELECT ({count_sql}) >= 55", 180)
        rows = await conn.fetch(
            "SELECT id, actor, status, started_at, completed_at FROM ruvector.healing_actions "
            "WHERE started_at IS NOT NULL ORDER BY started_at"
        )
    finally:
        await conn.close()
    assert len(rows) >= 50
    assert {r["actor"] for r in rows} == {"node-a", "node-b"}, "the survivor took over"
    finished = [r for r in rows if r["completed_at"] is not None]
    assert len(finished) >= len(rows) - 1  # at most the last one is still running
    for before, after in itertools.pairwise(finished):
        assert after["started_at"] >= before["completed_at"], (dict(before), dict(after))
