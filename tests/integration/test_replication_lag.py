"""ReplicationLag answered by its cause, on a real streaming standby (issue 9, point 5).

Proves, against an embedded primary and a standby made from it with pg_basebackup:

* a standby whose replay is paused (pg_wal_replay_pause) while the primary keeps writing is
  sampled with the WAL it holds but has not replayed (`unapplied_bytes`, flush - replay),
  classified as ReplicationLag with `replay_stalled`, and the real engine does not throttle:
  no throttle, no healing action, the decision says "no safe automatic action" and why, and
  one signed alert per degradation episode however many degraded cycles it lasts;
* a standby that replays everything it receives, behind a link slower than the primary's
  writes (a byte-level TCP relay in front of the primary, rate limited), is the other cause:
  the lag is WAL the standby never got, and throttle_ingestion is chosen for it.

Both run on a primary of their own whatever RUVECTORD_TEST_DSN says: the standby has to be
made from its primary, as in the other standby tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import asyncpg
import pytest

from ruvectord.config import Config
from ruvectord.daemon import audit_writer
from ruvectord.embedded import EmbeddedPostgres
from ruvectord.healing.engine import RemediationEngine
from ruvectord.healing.problems import ReplicationLag, classify
from ruvectord.healing.strategies import builtin_registry
from ruvectord.integrity.monitor import CollectionMonitor, Cycle
from ruvectord.integrity.snapshot import ReplicaStats
from ruvectord.postgres.actions import HealingStore
from ruvectord.postgres.audit_trail import verify_events
from ruvectord.postgres.leader import ActorLock
from ruvectord.postgres.migrations import migrate
from ruvectord.postgres.pool import Database
from ruvectord.scenarios.collection import CollectionSpec, create_collection
from ruvectord.scenarios.faults import paused_replay
from ruvectord.scenarios.replica import StreamingPair
from tests.conftest import options
from tests.helpers import Harness, connect, harness, make_config
from tests.integration.test_healing_e2e import running_actor

SPEC = CollectionSpec(partitions=8, rows_per_partition=20)
LAG_BUDGET = 1024 * 1024  # bytes: a few MB of lag take the replication edge to its floor
STALLED = (
    "no safe automatic action (throttle_ingestion cannot help: the replica holds the WAL but "
    "does not replay it; throttling writes cannot make it replay)"
)


async def _wait_until(sql: str, conn: asyncpg.Connection, limit: float = 30) -> None:
    """Poll the server (there is nothing to wait on but its catalog)."""
    with anyio.fail_after(limit):
        while not await conn.fetchval(sql):  # noqa: ASYNC110
            await anyio.sleep(0.05)


def _config(dsn: str, state_dir: Path) -> Config:
    return make_config(
        dsn,
        state_dir,
        SPEC,
        # back to normal as soon as the lag is gone, so a second episode can be seen
        integrity={
            "budgets": {"lag_budget_bytes": LAG_BUDGET},
            "recovery_hold_seconds": 0,
            "cooldown_seconds": 0,
        },
    )


def _engine(db: Database, h: Harness, actor: ActorLock) -> RemediationEngine:
    return RemediationEngine(
        config=lambda: h.config,
        registry=builtin_registry(),
        journal=HealingStore(db),
        sql=db,
        clock=h.clock,
        metrics=h.metrics,
        actor=actor,
        audit=audit_writer(h.store, h.clock),
        node="replication-lag",
    )


def _standby1(cycle: Cycle) -> ReplicaStats:
    (replica,) = (r for r in cycle.snapshot.replicas if r.name == "standby1")
    return replica


async def _cycle(h: Harness, monitor: CollectionMonitor, real_seconds: float) -> Cycle:
    """Let real time pass (the primary's writes, the standby's replies), then one sample."""
    await anyio.sleep(real_seconds)
    h.clock.advance(1)
    return await monitor.cycle()


async def _alerts(db: Database) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT metadata FROM ruvector.integrity_events WHERE event_type = 'alert' ORDER BY id"
    )


async def _until_normal(h: Harness, monitor: CollectionMonitor) -> None:
    with anyio.fail_after(30):
        while (await _cycle(h, monitor, 0.1)).state.degraded:
            pass


async def test_a_paused_replay_gets_one_signed_alert_and_no_throttle(
    streaming_pair: StreamingPair, state_dir: Path
) -> None:
    primary_dsn = streaming_pair.primary.dsn()
    standby_dsn = streaming_pair.standby.dsn()
    db = await Database.connect(options(primary_dsn))
    primary = await connect(primary_dsn)
    try:
        await migrate(db)
        await create_collection(primary, SPEC)
        async with running_actor(db) as actor:
            h = await harness(db, _config(primary_dsn, state_dir))
            monitor = h.monitor("items", healer=_engine(db, h, actor))
            await _wait_until(
                "SELECT count(*) = 1 FROM pg_stat_replication WHERE state = 'streaming' "
                "AND replay_lsn = pg_current_wal_lsn()",
                primary,
            )
            healthy = await monitor.cycle()
            assert healthy.lambda_cut > 0.99
            # read, and (at most the last few writes' worth, reported before replayed) small
            assert (_standby1(healthy).unapplied_bytes or 0) < 64 * 1024

            for episode in (1, 2):
                cycles: list[Cycle] = []
                lines: list[str] = []
                # the fault's writer adds ~2 MB/s of WAL the standby receives, not replays
                async with paused_replay(primary_dsn, standby_dsn):
                    while len(lines) < 4:  # four degraded cycles, each one decided
                        cycle = await _cycle(h, monitor, 0.5)
                        cycles.append(cycle)
                        if cycle.state.degraded:
                            lines.append(h.runtime.decisions["items"])
                replicas = [_standby1(c) for c in cycles]
                assert all(r.state == "streaming" and r.unapplied_bytes for r in replicas)
                for c in cycles:
                    if c.state.degraded:  # received and flushed, not replayed: most of the lag
                        r = _standby1(c)
                        assert r.lag_bytes and (r.unapplied_bytes or 0) * 2 >= r.lag_bytes
                # the primary kept writing: what the standby holds unreplayed grows
                unapplied = [r.unapplied_bytes or 0 for r in replicas]
                assert unapplied == sorted(unapplied) and unapplied[-1] > unapplied[0]

                last = cycles[-1]
                assert unapplied[-1] > 2 * LAG_BUDGET
                assert last.lambda_cut == pytest.approx(0.01)
                problem = classify(last.result, last.snapshot, h.config.healing.classifier)
                assert isinstance(problem, ReplicationLag), problem
                assert problem.replica_names == ("standby1",) and problem.replay_stalled
                assert problem.unapplied_bytes == unapplied[-1]
                for line in lines:
                    assert "; replica standby1 lagging " in line, line
                    assert "received but not replayed" in line and STALLED in line, line

                # nothing acted: no throttle, no action, and one alert for this episode
                assert await db.fetchval("SELECT count(*) FROM ruvector.throttles") == 0
                assert await db.fetchval("SELECT count(*) FROM ruvector.healing_actions") == 0
                alerts = await _alerts(db)
                assert len(alerts) == episode, alerts
                meta = alerts[-1]["metadata"]
                assert meta["problem"] == "ReplicationLag"
                assert meta["error"].startswith("no automatic healing: replica standby1 lagging")
                assert STALLED in meta["error"]

                # replay resumed (on leaving the fault): the episode ends
                await _wait_until(
                    "SELECT replay_lsn >= pg_current_wal_lsn() FROM pg_stat_replication", primary
                )
                await _until_normal(h, monitor)

            signer = h.store.signer
            assert signer is not None
            report = await verify_events(db, {signer.id: signer.public_bytes})
            assert report.failures == [] and report.checked >= 2
    finally:
        await primary.close()
        await db.close()


class SlowLink:
    """A byte-level TCP relay on 127.0.0.1 in front of the primary's unix socket: the
    standby's WAL stream passes through it, primary -> standby at `bytes_per_second` (None:
    as fast as it comes); the standby's replies go back unhindered. What a thin or congested
    network between the two does, and nothing else: the protocol is not looked at."""

    def __init__(self, upstream: Path) -> None:
        self.upstream = upstream
        self.port = 0
        self.bytes_per_second: float | None = None
        self.relayed = 0  # primary -> standby

    async def handle(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            try:
                server = await anyio.connect_unix(self.upstream)
            except OSError:
                return  # the primary is gone: so is the standby's connection
            async with server, anyio.create_task_group() as tg:
                tg.start_soon(self._pump, client, server, tg.cancel_scope, False)
                await self._pump(server, client, tg.cancel_scope, True)

    async def _pump(
        self,
        source: anyio.abc.SocketStream,
        sink: anyio.abc.SocketStream,
        scope: anyio.CancelScope,
        limited: bool,
    ) -> None:
        """Copy until either end goes away, then end the other direction too."""
        try:
            while True:
                rate = self.bytes_per_second if limited else None
                # at most 1/20 s worth at a time, so the rate holds over short windows too
                chunk = await source.receive(max(1024, int(rate / 20)) if rate else 65536)
                await sink.send(chunk)
                if limited:
                    self.relayed += len(chunk)
                if rate:
                    await anyio.sleep(len(chunk) / rate)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        scope.cancel()


@asynccontextmanager
async def slow_link(primary: EmbeddedPostgres) -> AsyncIterator[SlowLink]:
    link = SlowLink(primary.socket_dir / f".s.PGSQL.{primary.port}")
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    link.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, link.handle)
        yield link
        tg.cancel_scope.cancel()


async def test_a_primary_outrunning_a_replaying_standby_is_throttled(
    streaming_pair: StreamingPair, state_dir: Path
) -> None:
    primary_dsn = streaming_pair.primary.dsn()
    db = await Database.connect(options(primary_dsn))
    primary = await connect(primary_dsn)
    standby = await connect(streaming_pair.standby.dsn())
    try:
        await migrate(db)
        await create_collection(primary, SPEC)
        async with slow_link(streaming_pair.primary) as link, running_actor(db) as actor:
            # the standby streams through the relay from now on (primary_conninfo reloads)
            await standby.execute(
                "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port="
                f"{link.port} user=postgres application_name=standby1 sslmode=disable "
                "gssencmode=disable'"
            )
            await standby.execute("SELECT pg_reload_conf()")
            await _wait_until(
                "SELECT sender_host = '127.0.0.1' AND status = 'streaming' "
                "FROM pg_stat_wal_receiver",
                standby,
            )
            await _wait_until(
                "SELECT count(*) = 1 FROM pg_stat_replication WHERE state = 'streaming' "
                "AND replay_lsn >= pg_current_wal_lsn()",
                primary,
            )
            assert link.relayed > 0
            h = await harness(db, _config(primary_dsn, state_dir))
            monitor = h.monitor("items", healer=_engine(db, h, actor))
            assert (await monitor.cycle()).lambda_cut > 0.99

            # the link carries 100 kB/s; the primary writes ~4 MB of WAL at once
            link.bytes_per_second = 100_000
            await primary.execute(
                "CREATE TABLE ballast AS SELECT g, repeat('x', 200) AS pad "
                "FROM generate_series(1, 15000) g"
            )
            cycles: list[Cycle] = []
            with anyio.fail_after(30):
                while not cycles or not cycles[-1].state.degraded:
                    cycles.append(await _cycle(h, monitor, 0.3))
            line = h.runtime.decisions["items"]
            replicas = [_standby1(c) for c in cycles]
            for r in replicas:
                # WAL the standby never got: what it holds, it has (nearly all) replayed
                assert r.state == "streaming" and (r.lag_bytes or 0) > 2 * LAG_BUDGET
                assert (r.unapplied_bytes or 0) * 2 < (r.lag_bytes or 0)
            last = cycles[-1]
            problem = classify(last.result, last.snapshot, h.config.healing.classifier)
            assert isinstance(problem, ReplicationLag) and not problem.replay_stalled
            assert "received but not replayed" not in line
            assert "throttle_ingestion (action 1)" in line, line
            action = await db.fetchrow(
                "SELECT problem_class, problem_details, strategy_name, status, result "
                "FROM ruvector.healing_actions"
            )
            assert action is not None
            assert action["problem_class"] == "ReplicationLag"
            assert action["strategy_name"] == "throttle_ingestion"
            assert action["problem_details"]["replica_names"] == ["standby1"]
            assert action["result"]["throttle_pct"] == {"insert": 50, "bulk_insert": 60}
            # it took hold; the WAL already written still has to cross the link, and the
            # verification (on the manual clock: at once) sees the same lag, so it is rolled
            # back, as a brake that did not help would be
            assert action["status"] == "rolled_back"
            assert await db.fetchval("SELECT count(*) FROM ruvector.throttles") == 0
            assert (
                await db.fetchval(
                    "SELECT count(*) FROM ruvector.integrity_events WHERE event_type = 'alert'"
                )
                == 0
            )

            link.bytes_per_second = None
            await _wait_until(
                "SELECT replay_lsn >= pg_current_wal_lsn() FROM pg_stat_replication", primary
            )
    finally:
        await standby.close()
        await primary.close()
        await db.close()
