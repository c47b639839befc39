"""Signals that never lie, on real servers.

- `ruvectord_database_up` drops to 0 while a real embedded server is stopped and comes back
  to 1 when it answers again; the watchdog keeps pinging meanwhile (the loops go on, failing
  their samples), and STATUS says the database is unreachable.
- A collection loop stuck on an await that never returns (a testpoint) stops the watchdog
  pings, so systemd would restart the daemon; STATUS names the stuck loop.
- A collection's error status clears on its next good sample, whoever set it.
- With two daemons on one database, only the acting one records samples and transitions; the
  other observes and exports, and when it takes over it goes on from the recorded state
  instead of writing the transition a second time.
- Time to recovery is leaving normal -> back to normal, from the recorded transitions.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest

from ruvectord.clock import ManualClock
from ruvectord.embedded import EmbeddedPostgres
from ruvectord.integrity.hysteresis import State
from ruvectord.postgres.leader import ActorLock
from ruvectord.postgres.pool import Database
from ruvectord.scenarios.collection import (
    CollectionSpec,
    create_collection,
    flush_stats,
    insert_rows,
    uniform,
)
from tests.helpers import collection, free_port, harness, hot_sample, make_config
from tests.notify import Notifications

SPEC = CollectionSpec(partitions=4, rows_per_partition=50, index=False)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
        return body.decode()


def _until(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


class _Daemon:
    """A real `ruvectord run` process against a server of the test's own."""

    def __init__(self, tmp: Path, dsn: str, *, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.notify = Notifications(tmp / "notify.sock")
        self.log_path = tmp / "daemon.log"
        cfg = tmp / "ruvectord.yaml"
        cfg.write_text(
            f"""
database: {{statement_timeout_seconds: 1, connect_timeout_seconds: 1, connect_retries: 1}}
daemon: {{state_directory: {tmp / "state"}, shutdown_timeout_seconds: 10}}
metrics: {{listen_address: "127.0.0.1:{self.port}"}}
logging: {{format: json}}
integrity: {{sample_interval_seconds: 0.5}}
collections:
  - {{name: items, table: public.items, vector_column: embedding}}
  - {{name: ghost, table: public.ghost, vector_column: embedding}}
"""
        )
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ruvectord.cli", "run", "-c", str(cfg), "--dsn", dsn],
            env={
                **os.environ,
                "NOTIFY_SOCKET": str(tmp / "notify.sock"),
                "WATCHDOG_USEC": "1000000",  # pings every 0.5 s while loops progress
                **(env or {}),
            },
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def metric(self, name: str) -> float | None:
        for line in _get(f"http://127.0.0.1:{self.port}/metrics").splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def status(self) -> dict[str, object]:
        value: dict[str, object] = json.loads(_get(f"http://127.0.0.1:{self.port}/status"))
        return value

    def events(self, name: str) -> list[dict[str, object]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                out.append(json.loads(line))
        return [e for e in out if e.get("event") == name]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.notify.sock.close()


@pytest.fixture
def own_server(server_root: Path) -> Iterator[EmbeddedPostgres]:
    """An embedded server of this test's own, to stop and start at will."""
    server = EmbeddedPostgres(server_root / "pgdata")
    dsn = server.start()

    async def prepare() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await create_collection(conn, SPEC)
        finally:
            await conn.close()

    anyio.run(prepare)
    try:
        yield server
    finally:
        server.destroy()


def test_database_up_and_the_watchdog_follow_a_real_outage(
    own_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    d = _Daemon(tmp_path, own_server.dsn())
    try:
        d.notify.wait_for("READY=1")
        _until("a first good sample", lambda: d.metric("ruvectord_database_up") == 1.0, 20)
        _until("a sample of items", lambda: d.status()["last_sample"] is not None, 20)

        own_server.stop(mode="fast")
        down_at = time.monotonic()
        _until("database_up drops to 0", lambda: d.metric("ruvectord_database_up") == 0.0, 15)
        print(f"database_up fell to 0 {time.monotonic() - down_at:.1f} s into the outage")  # noqa: T201
        status = d.notify.wait_for_status("database unreachable since", timeout=10)
        assert status.startswith("acting on 2 collections") or "not acting" in status, status
        assert d.status()["database_up"] is False
        # the loops go on failing their samples: that is progress, the watchdog is fed
        during = d.notify.collect(4.0)
        assert sum("WATCHDOG=1" in m.split("\n") for m in during) >= 4, during
        assert not d.events("watchdog_withheld")

        own_server.start()
        _until("database_up back to 1", lambda: d.metric("ruvectord_database_up") == 1.0, 20)
        back = d.notify.wait_for_status("last sample", timeout=20)
        _until(
            "STATUS no longer says unreachable",
            lambda: "unreachable" not in d.status()["summary"],  # type: ignore[operator]
            20,
        )
        assert d.status()["database_up"] is True, back
        # said once when it went, once when it came back: not at every probe
        [down] = d.events("database_down")
        # the probe may catch the server on its way down or after: either way it says why
        said = str(down["error"])
        assert (
            "nothing listens there (is PostgreSQL running?)" in said
            or "the database system is shutting down" in said
        ), down
        assert len(d.events("database_back")) == 1
        # the latest sample's contracted graph, from the daemon's memory
        served = json.loads(_get(f"http://127.0.0.1:{d.port}/status?graph=1"))
        graph = served["collections"]["items"]["graph"]
        assert graph["nodes"][0]["kind"] == "gateway" and len(graph["edges"]) >= 4, graph
        assert d.stop() == 0
    finally:
        d.close()


def test_a_stuck_loop_stops_the_watchdog_and_status_names_it(
    own_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    # `items` hangs for good after its first sample; `ghost` (no such table) keeps failing
    # and finishing its cycles: one stuck loop is enough to withhold the pings
    d = _Daemon(tmp_path, own_server.dsn(), env={"RUVECTORD_TESTPOINT": "monitor.after_sample"})
    try:
        d.notify.wait_for("READY=1")
        d.notify.wait_for("WATCHDOG=1", timeout=5)  # fed while the allowance lasts
        _until("items stuck at the testpoint", lambda: d.events("testpoint_reached"), 20)
        status = d.notify.wait_for_status("stuck: items has not finished a cycle", timeout=20)
        assert "ghost" not in status.split("stuck:")[1].split(";")[0], status
        # the STATUS line may say so a moment before the watchdog's tick logs it
        _until("the watchdog withheld", lambda: d.events("watchdog_withheld"), 10)
        [withheld] = d.events("watchdog_withheld")
        assert withheld["level"] == "error"
        stalled = withheld["stalled"]
        assert isinstance(stalled, list) and [s.split()[0] for s in stalled] == ["items"]
        # from now on: not one ping, so systemd's WatchdogSec runs out and it restarts us
        d.notify.collect(0.6)  # what was sent before the watchdog said so
        after = d.notify.collect(3.0)
        assert not any("WATCHDOG=1" in m.split("\n") for m in after), after
        assert d.proc.poll() is None  # alive, and honest about it: restarting is systemd's call
        assert "stuck: items" in str(d.status()["summary"])
    finally:
        d.stop()
        d.close()


# --------------------------------------------------------------------------- in process


async def test_an_error_status_clears_on_the_next_good_sample_whoever_set_it(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC):
        h = await harness(db, make_config(dsn, state_dir, SPEC))
        cid = h.ids["items"]
        # what another daemon, configured with a table that does not exist, left behind
        await h.store.set_collection_status(cid, "table public.nope does not exist")
        monitor = h.monitor("items")
        assert monitor.failing is None  # this daemon never failed
        assert await monitor.cycle_safely() is not None
        row = await db.fetchrow(
            "SELECT status, status_detail FROM ruvector.collections WHERE id = $1", cid
        )
        assert row is not None and (row["status"], row["status_detail"]) == ("ok", None)


async def test_only_the_acting_daemon_records_and_a_new_actor_goes_on_from_the_record(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        config = make_config(dsn, state_dir, SPEC, integrity={"degrade_samples": 2})
        clock = ManualClock()
        a, b = await harness(db, config, clock), await harness(db, config, clock)
        lock_a = ActorLock(db, a.metrics, check_interval=0.1)
        lock_b = ActorLock(db, b.metrics, check_interval=0.1)
        a.runtime.writes = lambda: lock_a.is_actor
        b.runtime.writes = lambda: lock_b.is_actor
        ma, mb = a.monitor("items"), b.monitor("items")

        async def events() -> int:
            value: int = await db.fetchval(
                "SELECT count(*) FROM ruvector.integrity_events WHERE event_type = 'state_change'"
            )
            return value

        async with anyio.create_task_group() as tg:
            scope_a = anyio.CancelScope()

            async def run_a() -> None:
                with scope_a:
                    await lock_a.run()

            tg.start_soon(run_a)
            await lock_a.tried.wait()
            tg.start_soon(lock_b.run)
            await lock_b.tried.wait()
            assert (lock_a.is_actor, lock_b.is_actor) == (True, False)

            assert await ma.cycle_safely() is not None and await mb.cycle_safely() is not None
            for _ in range(2):  # a burst both daemons see: both go to stress
                await hot_sample(conn, a, ma, SPEC)
                await mb.cycle()
            assert ma.tracker.state is State.STRESS and mb.tracker.state is State.STRESS
            assert await events() == 1  # one transition, signed by the actor alone
            samples = await db.fetchval("SELECT count(*) FROM ruvector.integrity_samples")
            assert samples == 3  # the actor's baseline and two hot samples
            assert b.metrics.state.labels("items")._value.get() == 1  # B still exports
            assert (
                "(observed; the acting daemon records transitions)" in b.runtime.decisions["items"]
            )

            # A stops; B takes over and records from the state A recorded: no second
            # normal -> stress although B's own history would have produced one
            mb.tracker = type(mb.tracker)()  # as if B had started during the burst
            scope_a.cancel()
            with anyio.fail_after(10):
                while not lock_b.is_actor:
                    await lock_b.changed.wait()
            for _ in range(2):
                await hot_sample(conn, b, mb, SPEC)
            assert mb.tracker.state is not State.NORMAL
            assert await events() == 1
            tg.cancel_scope.cancel()


async def test_time_to_recovery_is_degraded_to_normal(
    db: Database, dsn: str, state_dir: Path
) -> None:
    async with collection(dsn, SPEC) as conn:
        config = make_config(
            dsn,
            state_dir,
            SPEC,
            integrity={"degrade_samples": 2, "recovery_hold_seconds": 5, "cooldown_seconds": 0},
        )
        h = await harness(db, config)
        h.metrics.declare_collection("items", [])
        monitor = h.monitor("items")
        await monitor.cycle()
        while monitor.tracker.state is State.NORMAL:
            await hot_sample(conn, h, monitor, SPEC)
        left_normal = h.clock.now()
        assert math.isnan(h.metrics.healing_ttr.labels("items")._value.get())
        rng = random.Random(3)
        recovered = False
        for _ in range(60):
            await insert_rows(conn, SPEC, uniform(SPEC, 200, rng))
            await flush_stats(conn)
            h.clock.advance(1)
            recovered = (await monitor.cycle()).state is State.NORMAL
            if recovered:
                break
        assert recovered
        took = (h.clock.now() - left_normal).total_seconds()
        ttr = h.metrics.healing_ttr.labels("items")._value.get()
        assert ttr == pytest.approx(took, abs=0.01)
        # the same number the effectiveness function reports, from the same transitions
        assert await h.store.mean_recovery_seconds("items", left_normal.replace(year=2000)) == (
            pytest.approx(took, abs=0.01)
        )
