"""A brake must fail open when its owner is gone: real daemons, killed, reconfigured, paused.

Once, after SIGKILL with no restart, after a reload with `healing.enabled: false`, and after
the collection left the config, inserts were still turned away while integrity was normal.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
import yaml

from ruvectord.embedded import EmbeddedPostgres
from ruvectord.postgres.migrations import migrate
from ruvectord.postgres.pool import Database
from ruvectord.scenarios.collection import THROTTLED_SQLSTATE, create_collection
from tests.chaos.test_chaos import SPEC, _config, _until, daemon, hot_writers
from tests.conftest import options
from tests.helpers import cli, connect

pytestmark = pytest.mark.slow

# stays in stress once there: the brake is held, not lifted on a passing recovery
HOLD = {"recovery_hold_seconds": 3600}
# statistics reach other sessions about once a second: verify after that, retry soon if not
SURE = {"settle_seconds": 1.5, "min_healing_interval_seconds": 3}
HELD = "SELECT count(*) FROM ruvector.healing_actions WHERE status = 'succeeded'"


async def _rejected(conn: asyncpg.Connection, n: int = 100) -> int:
    sample = await conn.fetchval("SELECT embedding FROM public.items LIMIT 1")
    refused = 0
    for _ in range(n):
        try:
            await conn.execute("INSERT INTO public.items (shard, embedding) VALUES (1, $1)", sample)
        except asyncpg.PostgresError as exc:
            assert exc.sqlstate == THROTTLED_SQLSTATE, exc
            refused += 1
    return refused


async def test_a_killed_daemons_throttle_lapses_by_itself(dsn: str, tmp_path: Path) -> None:
    conn = await connect(dsn)
    try:
        vector = await create_collection(conn, SPEC)
        cfg = await _config(tmp_path, "node-a", HOLD, **SURE)
        async with hot_writers(dsn, vector), daemon(cfg, dsn, tmp_path / "d.log") as proc:
            await _until(conn, HELD, 120)  # a loaded CI machine
            # held and renewed while the burst goes on
            await anyio.sleep(1.5)
            assert await conn.fetchval("SELECT count(*) FROM ruvector.throttles") == 2
            assert await _rejected(conn, 50) > 0
            proc.send_signal(signal.SIGKILL)
            with anyio.fail_after(10):
                await proc.wait()
        # nobody renews it now: within a lease (3 samples; a fresh action's first lease also
        # covers its settle time, 1.5 s) every insert passes again
        await anyio.sleep(3.5)
        assert await _rejected(conn) == 0
        gate = await conn.fetchval("SELECT ruvector_integrity_gate('items', 'insert')")
        assert gate["allowed"] and "healing throttles" not in gate["reason"]
    finally:
        await conn.close()


async def test_disabling_healing_or_dropping_the_collection_lifts_the_brake(
    dsn: str, tmp_path: Path
) -> None:
    conn = await connect(dsn)
    try:
        vector = await create_collection(conn, SPEC)
        cfg = await _config(tmp_path, "node-a", HOLD, min_healing_interval_seconds=2)
        data: dict[str, Any] = yaml.safe_load(await anyio.Path(cfg).read_text())
        async with hot_writers(dsn, vector), daemon(cfg, dsn, tmp_path / "d.log") as proc:
            first = await _until(
                conn, "SELECT id FROM ruvector.healing_actions WHERE status = 'succeeded'", 60
            )
            data["healing"]["enabled"] = False
            await anyio.Path(cfg).write_text(yaml.safe_dump(data))
            proc.send_signal(signal.SIGHUP)
            await _until(
                conn,
                "SELECT status = 'lifted' FROM ruvector.healing_actions WHERE id = $1",
                20,
                first,
            )
            assert await conn.fetchval("SELECT count(*) FROM ruvector.throttles") == 0
            why = await conn.fetchval(
                "SELECT error_message FROM ruvector.healing_actions WHERE id = $1", first
            )
            assert "healing was disabled" in why or "healing is disabled" in why, why

            # healing on again: it throttles again; then the collection leaves the config
            data["healing"]["enabled"] = True
            await anyio.Path(cfg).write_text(yaml.safe_dump(data))
            proc.send_signal(signal.SIGHUP)
            await _until(
                conn,
                "SELECT count(*) FROM ruvector.healing_actions "
                "WHERE status = 'succeeded' AND id > $1",
                60,
                first,
            )
            data["collections"] = []
            await anyio.Path(cfg).write_text(yaml.safe_dump(data))
            proc.send_signal(signal.SIGHUP)
            await _until(conn, "SELECT count(*) = 0 FROM ruvector.throttles", 20)
            why = await conn.fetchval(
                "SELECT error_message FROM ruvector.healing_actions ORDER BY id DESC LIMIT 1"
            )
            assert "collection items was removed from the configuration" in why, why
    finally:
        await conn.close()


async def test_pause_list_and_lift_from_the_cli_are_obeyed_and_signed(
    dsn: str, tmp_path: Path
) -> None:
    conn = await connect(dsn)
    try:
        vector = await create_collection(conn, SPEC)
        cfg = await _config(
            tmp_path, "node-a", HOLD, settle_seconds=1.5, min_healing_interval_seconds=20
        )
        base = ["-c", str(cfg), "--dsn", dsn]
        async with hot_writers(dsn, vector), daemon(cfg, dsn, tmp_path / "d.log"):
            await _until(conn, HELD, 120)  # a loaded CI machine
            listed = await cli("throttle", "list", *base)
            assert listed.returncode == 0, listed
            assert re.search(r"^items +insert +\d+% .* in force +\S+ \S+ UTC$", listed.stdout, re.M)
            lifted = await cli("throttle", "lift", "items", *base)
            assert lifted.returncode == 0, lifted.stderr
            # the CLI waited for the acting daemon, which undid its action
            assert "\ncarried out by node-a: lifted " in lifted.stdout, lifted.stdout
            # at once, in the database; and the lift holds throttling off (as a rejection does)
            assert await _rejected(conn, 30) == 0
            await _until(
                conn,
                "SELECT count(*) FROM ruvector.integrity_events WHERE event_type = "
                "'manual_override' AND metadata ->> 'kind' = 'lift'",
                20,
            )
            paused = await cli("pause", "--reason", "disk replacement", *base)
            assert paused.returncode == 0, paused.stderr
            assert (
                "\ncarried out by node-a: settings healing.enabled=false; lifted " in paused.stdout
            ), paused.stdout
            await _until(
                conn,
                "SELECT count(*) FROM ruvector.integrity_events WHERE event_type = "
                "'manual_override' AND metadata ->> 'kind' = 'configure'",
                20,
            )
            count = await conn.fetchval("SELECT count(*) FROM ruvector.healing_actions")
            await anyio.sleep(2)  # still degraded, but nothing new is tried while paused
            assert await conn.fetchval("SELECT count(*) FROM ruvector.healing_actions") == count
            assert await conn.fetchval("SELECT count(*) FROM ruvector.throttles") == 0
            decision = await _until(
                conn,
                "SELECT decision FROM ruvector.integrity_state "
                "WHERE decision LIKE '%healing is paused by postgres%'",
                10,
            )
            assert "disk replacement" in decision
            resumed = await cli("resume", *base)
            assert resumed.returncode == 0
            # the operator's lift holds throttling off this collection (the engine tests show
            # the decision line); nothing new for a while, though the burst goes on
            await anyio.sleep(3)
            assert count == await conn.fetchval("SELECT count(*) FROM ruvector.healing_actions")
        events = await conn.fetch(
            "SELECT metadata FROM ruvector.integrity_events WHERE event_type = 'manual_override' "
            "ORDER BY id"
        )
        kinds = [(e["metadata"]["kind"], e["metadata"]["requested_by"]) for e in events]
        assert kinds == [("lift", "postgres"), ("configure", "postgres"), ("configure", "postgres")]
    finally:
        await conn.close()


def _server_pids(server: EmbeddedPostgres) -> list[int]:
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(entry))
    return pids


async def test_shutdown_keeps_its_deadline_while_postgres_is_stalled(
    tmp_path: Path, server_root: Path
) -> None:
    """Once, 31.6 s against a 5 s limit, and then "stopped cleanly"."""
    server = await anyio.to_thread.run_sync(EmbeddedPostgres, server_root / "pgdata")
    dsn = await anyio.to_thread.run_sync(server.start)
    pids: list[int] = []
    try:
        db = await Database.connect(options(dsn))
        try:
            await migrate(db)
        finally:
            await db.close()
        conn = await connect(dsn)
        try:
            vector = await create_collection(conn, SPEC)
            cfg = await _config(tmp_path, "node-a", settle_seconds=120)
            log = tmp_path / "d.log"
            async with hot_writers(dsn, vector, n=4), daemon(cfg, dsn, log) as proc:
                action = await _until(
                    conn, "SELECT id FROM ruvector.healing_actions WHERE status = 'verifying'", 60
                )
                pids = await anyio.to_thread.run_sync(_server_pids, server)
                for pid in pids:
                    os.kill(pid, signal.SIGSTOP)
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                with anyio.fail_after(20):
                    code = await proc.wait()
                took = time.monotonic() - started
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
                pids = []
        finally:
            await conn.close()
        assert code == 0
        assert took < 5 + 1.5, f"shutdown took {took:.1f} s against a 5 s limit"
        text = await anyio.Path(log).read_text()
        last = [line for line in text.splitlines() if "daemon_stopped" in line][-1]
        assert "stopped cleanly" not in last and f"action {action}" in last, last
        # the next start repairs it
        conn = await connect(dsn)
        try:
            async with daemon(cfg, dsn, log):
                status = await _until(
                    conn,
                    "SELECT status FROM ruvector.healing_actions WHERE id = $1 "
                    "AND status NOT IN ('verifying', 'rolling_back')",
                    60,
                    action,
                )
            assert status == "rolled_back"
            assert await conn.fetchval("SELECT count(*) FROM ruvector.throttles") == 0
        finally:
            await conn.close()
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        await anyio.to_thread.run_sync(server.destroy)
