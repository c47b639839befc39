"""Composition root: wires adapters to the core and owns every lifecycle.

One anyio task group holds named tasks: signals, the metrics endpoint, the systemd watchdog
(fed only while the collection loops make progress, see health.py), the database probe behind
`ruvectord_database_up`, housekeeping, the actor lock, and one loop per collection. Signal
handlers only deliver signals to a task that acts on them (as Patroni does): SIGHUP validates
the new file and keeps the running config when it is bad; SIGTERM/SIGINT stop taking work,
cancel the current step (healing steps shield their journal writes and rollbacks) and exit 0
within `daemon.shutdown_timeout_seconds`.
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from anyio.abc import TaskGroup

from ruvectord import __version__
from ruvectord.audit import load_or_create_key
from ruvectord.clock import Clock, Shutdown, SystemClock
from ruvectord.config import CollectionConfig, Config, load_config
from ruvectord.embedded import EmbeddedPostgres
from ruvectord.errors import ConfigError
from ruvectord.healing.engine import RemediationEngine
from ruvectord.healing.intake import Intake
from ruvectord.healing.journal import recover
from ruvectord.healing.strategies import builtin_registry
from ruvectord.healing.strategies.throttle_ingestion import ensure_guard
from ruvectord.health import Facts, Progress, status_line
from ruvectord.integrity.graph_record import graph_document
from ruvectord.integrity.monitor import CollectionMonitor, Cycle, Healer, Runtime, sample_bound
from ruvectord.live_config import LiveConfig
from ruvectord.logs import get_logger, setup_logging
from ruvectord.metrics import Endpoint, Metrics, open_endpoint
from ruvectord.postgres.actions import HealingStore
from ruvectord.postgres.control import REQUESTS, SETTINGS, ControlStore, Notifications
from ruvectord.postgres.leader import ActorLock
from ruvectord.postgres.migrations import ensure_current
from ruvectord.postgres.pool import ConnectOptions, Database
from ruvectord.postgres.retention import Retention
from ruvectord.postgres.sampler import HostMemory, Sampler
from ruvectord.postgres.store import Store
from ruvectord.systemd import Notifier

log = get_logger("ruvectord.daemon")

HOUSEKEEPING_SECONDS = 600.0
PROBE_SECONDS = 5.0  # how often the database probe asks, at most
ACTOR_FIRST_TRY_SECONDS = 5.0  # READY waits this long to say truthfully whether it acts

# Builds the healer once the database is up; None means "monitor only".
HealerFactory = Callable[["Daemon"], Awaitable[Healer | None]]


@dataclass
class _Loop:
    collection: CollectionConfig
    monitor: CollectionMonitor
    scope: anyio.CancelScope


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        dsn: str | None = None,
        embedded_dir: Path | None = None,
        healer_factory: HealerFactory | None = None,
        metrics: Metrics | None = None,
        observers: list[Callable[[Any, str], None]] | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock or SystemClock()
        self.notifier = notifier or Notifier.from_env()
        self.metrics = metrics or Metrics()
        self.dsn_override = dsn
        self.embedded_dir = embedded_dir
        self.healer_factory = healer_factory
        self.observers = observers or []
        self.embedded: EmbeddedPostgres | None = None
        self.db: Database | None = None
        self.store: Store | None = None
        self.retention: Retention | None = None
        self.rt: Runtime | None = None
        self.healer: Healer | None = None
        self.engine: RemediationEngine | None = None  # when healing is wired
        self.local_config = config  # the YAML file (and environment) as loaded
        self.live: LiveConfig | None = None  # ... with the database's dynamic settings on top
        self.notifications: Notifications | None = None
        self.actor: ActorLock | None = None  # when healing is wired
        self.shutdown = Shutdown()
        self.collection_ids: dict[str, int] = {}
        self.loops: dict[str, _Loop] = {}
        self.host_memory = HostMemory(clock=self.clock.monotonic)  # one host, one reading
        self.metrics_port: int | None = None
        self._tg: TaskGroup | None = None
        self._stopping = False
        self._last_status = ""
        self.progress = Progress()
        self.database_down_since: datetime | None = None
        self.ready = anyio.Event()
        # long-running tasks that adapters built in _start need (e.g. the actor lock)
        self.background: list[tuple[str, Callable[[], Awaitable[None]]]] = []

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        self.metrics.set_node(self.config.daemon.node_name)
        log.info(
            "daemon_starting",
            version=__version__,
            pid=os.getpid(),
            collections=[c.name for c in self.config.collections],
        )
        self.notifier.status("starting")
        endpoint: Endpoint | None = None
        try:
            if self.config.metrics.enabled:
                # before the database: a port that is taken fails the start at once
                m = self.config.metrics
                endpoint = await open_endpoint(m.host, m.port)
                self.metrics_port = endpoint.port
            await self._start()
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._signals, name="signals")
                if endpoint is not None:
                    serve = partial(endpoint.serve, self.metrics, self.status)
                    tg.start_soon(_logged("metrics", serve), name="metrics")
                if self.notifier.watchdog_interval:
                    tg.start_soon(self._watchdog, name="watchdog")
                tg.start_soon(self._housekeeping, name="housekeeping")
                tg.start_soon(_logged("database-probe", self._probe), name="database-probe")
                for task_name, task in self.background:
                    tg.start_soon(_logged(task_name, task), name=task_name)
                if self.actor is not None:
                    # so that the first samples are recorded by the acting daemon only, and
                    # READY says truthfully whether this one acts
                    with anyio.move_on_after(ACTOR_FIRST_TRY_SECONDS):
                        await self.actor.tried.wait()
                for c in self.config.collections:
                    self._start_loop(c)
                # what start-up made (modules, config, pools) lives as long as the daemon: out
                # of the collector's sight, a full collection no longer walks it (bench/
                # footprint.py: about 0.4 ms of a 6 ms collection-sample)
                gc.freeze()
                status = self._status_line()
                self.notifier.ready(status)
                self.ready.set()
                log.info("daemon_ready", msg=status, metrics_port=self.metrics_port)
        finally:
            with anyio.CancelScope(shield=True):
                if endpoint is not None:
                    await endpoint.aclose()
                await self._close()
        left = self.shutdown.left_behind
        if left:
            line = "; ".join(left)
            log.warning("daemon_stopped", msg=f"ruvectord stopped; {line}")
        else:
            log.info("daemon_stopped", msg="ruvectord stopped cleanly")
        return 0

    async def _start(self) -> None:
        cfg = self.config
        dsn = self.dsn_override
        embedded_dir = self.embedded_dir or (
            cfg.database.embedded_data_dir if cfg.database.embedded else None
        )
        if embedded_dir is not None:
            self.embedded = EmbeddedPostgres(embedded_dir)
            self.notifier.status(f"starting embedded PostgreSQL in {embedded_dir}")
            dsn = await anyio.to_thread.run_sync(self.embedded.start)
            log.info("embedded_server_started", data_dir=str(embedded_dir))
        self.db = await Database.connect(ConnectOptions.from_config(cfg.database, dsn))
        self.metrics.up.set(1)
        log.info("database_connected", target=self.db.target)
        report = await ensure_current(self.db, may_migrate=cfg.database.migrate_on_start)
        log.info("schema_ready", version=report.version, applied=list(report.applied))
        signer, created = await anyio.to_thread.run_sync(load_or_create_key, cfg.signing_key_path)
        if created:
            log.warning("signing_key_created", path=str(cfg.signing_key_path), signer_id=signer.id)
        self.store = Store(self.db, signer)
        self.retention = Retention(self.db, signer)
        await self.store.register_key(signer, f"ruvectord on {cfg.daemon.node_name}")
        # the database's dynamic settings on top of the file, from the first cycle on
        self.notifications = Notifications(self.db)
        self.live = LiveConfig(
            cfg, ControlStore(self.db, cfg.daemon.node_name), on_change=self._settings_changed
        )
        await self.live.refresh()
        self.config = cfg = self.live.effective
        self.collection_ids = await self.store.sync_collections(cfg)
        self.rt = Runtime(
            cfg,
            self.clock,
            self.metrics,
            self.store,
            observers=list(self.observers),
            progress=self.progress,
            # with several daemons on one database, only the acting one records
            writes=lambda: self.actor is None or self.actor.is_actor,
            after_cycle=self._refresh_status,
        )
        live, notifications = self.live, self.notifications

        async def settings() -> None:
            poll = min(5.0, self.config.integrity.sample_interval_seconds)
            await live.run(lambda seconds: notifications.wait(SETTINGS, seconds), poll)

        self.background.append(("listen", notifications.run))
        self.background.append(("settings", settings))
        if self.healer_factory is not None:
            self.healer = await self.healer_factory(self)
        if self.engine is not None:
            self.progress.healing_bound = healing_bound(self.engine.registry.strategies, cfg)

    async def _close(self) -> None:
        self.shutdown.begin(self.config.daemon.shutdown_timeout_seconds)
        if self.db is not None:
            # whatever is left of the deadline, keeping a little for the embedded server
            with anyio.move_on_after(self.shutdown.budget(5.0)) as scope:
                await self.db.close()
            if scope.cancelled_caught:
                self.db.pool.terminate()
                self.shutdown.left_behind.append(
                    "the database did not answer in time; connections were cut"
                )
        if self.embedded is not None and self.embedded.started_here:
            await anyio.to_thread.run_sync(self.embedded.stop)
            log.info("embedded_server_stopped")
        self.notifier.close()

    def stop(self) -> None:
        """Begin a clean shutdown (what SIGTERM does)."""
        if self._stopping:
            return
        self._stopping = True
        self.shutdown.begin(self.config.daemon.shutdown_timeout_seconds)
        self.notifier.stopping()
        log.info("daemon_stopping", msg="stopping: cancelling collection loops")
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # ------------------------------------------------------------------ tasks

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload()
                else:
                    log.info("signal_received", signal=signal.Signals(signum).name)
                    self.stop()
                    return

    async def _watchdog(self) -> None:
        """WATCHDOG=1 only while every collection loop makes progress (health.Progress)."""
        interval = self.notifier.watchdog_interval
        assert interval is not None
        withheld: list[str] = []
        while True:
            stalled = self.progress.stalled(self.clock.monotonic())
            if not stalled:
                self.notifier.watchdog()
                if withheld:
                    log.warning("watchdog_resumed", msg="collection loops make progress again")
            elif stalled != withheld:
                line = "; ".join(stalled)
                log.error(
                    "watchdog_withheld",
                    stalled=stalled,
                    msg=f"not pinging the systemd watchdog: {line}; systemd restarts ruvectord "
                    "when WatchdogSec runs out",
                )
                self._refresh_status()
            withheld = stalled
            await anyio.sleep(interval)

    async def _probe(self) -> None:
        """`ruvectord_database_up` follows whether the server answers, checked every few
        seconds without retries, so it drops to 0 during an outage and not only at start."""
        assert self.db is not None
        while True:
            cfg = self.config
            every = min(PROBE_SECONDS, cfg.integrity.sample_interval_seconds)
            why = await self.db.probe(min(cfg.database.connect_timeout_seconds, PROBE_SECONDS))
            self.metrics.up.set(0 if why else 1)
            if why and self.database_down_since is None:
                self.database_down_since = self.clock.now()
                log.error("database_down", error=why, msg=f"database unreachable: {why}")
                self._refresh_status()
            elif not why and self.database_down_since is not None:
                since = self.database_down_since
                self.database_down_since = None
                log.warning(
                    "database_back",
                    msg=f"database answers again (unreachable since {since.isoformat()})",
                )
                self._refresh_status()
            await anyio.sleep(every)

    async def _housekeeping(self) -> None:
        assert self.retention is not None
        while True:
            if self.actor is not None and not self.actor.is_actor:
                await self.clock.sleep(HOUSEKEEPING_SECONDS)
                continue  # the acting daemon prunes
            try:
                pruned = await self.retention.round(self.config, self.clock.now())
                if pruned.total:
                    log.info("history_pruned", **asdict(pruned))
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("housekeeping_failed", error=str(exc))
            await self.clock.sleep(HOUSEKEEPING_SECONDS)

    # ------------------------------------------------------------------ collection loops

    def _start_loop(self, collection: CollectionConfig) -> None:
        assert self._tg is not None and self.rt is not None and self.db is not None
        monitor = CollectionMonitor(
            self.rt,
            collection,
            self.collection_ids[collection.name],
            Sampler(self.db, collection, memory=self.host_memory),
            self.healer,
        )
        scope = anyio.CancelScope()
        self.loops[collection.name] = _Loop(collection, monitor, scope)
        self.progress.register(
            collection.name,
            interval=self.config.integrity.sample_interval_seconds,
            sample_bound=sample_bound(self.config),
            now=self.clock.monotonic(),
        )
        strategies = self.engine.registry.names if self.engine is not None else []
        self.metrics.declare_collection(collection.name, strategies)
        self.metrics.approval_ttl.set(self.config.healing.approval_ttl_seconds)

        async def loop() -> None:
            with scope:
                log.info(
                    "collection_loop_started", collection=collection.name, table=collection.table
                )
                await monitor.run()

        self._tg.start_soon(loop, name=f"collection:{collection.name}")

    def _stop_loop(self, name: str) -> None:
        loop = self.loops.pop(name, None)
        if loop is not None:
            loop.scope.cancel()
            self.progress.forget(name)
            strategies = self.engine.registry.names if self.engine is not None else []
            self.metrics.forget_collection(name, strategies)
            log.info("collection_loop_stopped", collection=name)

    # ------------------------------------------------------------------ reload

    async def reload(self) -> bool:
        """Re-read the config file; keep running on the old config when the new one is bad."""
        if self.config_path is None:
            log.warning("config_reload_skipped", reason="no config file (started without -c)")
            return False
        self.notifier.reloading()
        try:
            new = await anyio.to_thread.run_sync(load_config, self.config_path)
        except ConfigError as exc:
            self.metrics.reloads.labels("error").inc()
            line = f"kept the running config; {len(exc.problems)} problem(s) in the new file"
            log.error(
                "config_reload_failed", path=str(self.config_path), errors=exc.problems, msg=line
            )
            self.notifier.ready(self._status_line())
            return False
        old = self.config
        if new.database != old.database:
            log.warning(
                "config_restart_required",
                section="database",
                msg="database settings change only on restart",
            )
        self.local_config = new
        setup_logging(new.logging.level, new.logging.format)
        assert self.rt is not None and self.store is not None and self.live is not None
        old_ids = dict(self.collection_ids)
        await self.live.set_local(new)  # the file, with the database's settings on top
        new = self.live.effective  # synced by _settings_changed, which set_local always runs
        wanted = {c.name: c for c in new.collections}
        for name in list(self.loops):
            if name not in wanted or wanted[name] != self.loops[name].collection:
                self._stop_loop(name)
        await self._release_held(new, old_ids)
        for name, c in wanted.items():
            if name not in self.loops:
                self._start_loop(c)
        self.metrics.reloads.labels("ok").inc()
        status = self._status_line()
        log.info("config_reloaded", msg=status)
        self.notifier.ready(status)
        return True

    async def _settings_changed(self, new: Config) -> None:
        """The effective configuration changed (the file, or the database's settings)."""
        self.config = new
        if self.rt is not None:
            self.rt.config = new
        self.metrics.approval_ttl.set(new.healing.approval_ttl_seconds)
        if self.store is not None and self.rt is not None:
            # the policies the gate and status read follow the thresholds
            self.collection_ids = await self.store.sync_collections(new)
        if self.engine is not None and self.actor is not None and self.actor.is_actor:
            assert self.live is not None
            await self.live.publish(self.engine.registry.strategies)
            if not new.healing.enabled:
                await self._release_held(new, dict(self.collection_ids))

    async def _release_held(self, new: Config, old_ids: dict[str, int]) -> None:
        """What ruvectord holds on a collection it no longer heals is let go, by rollback."""
        engine = self.engine
        if engine is None or self.actor is None or not self.actor.is_actor:
            return  # leases lapse by themselves; the next actor journals them
        why: dict[int, str] = {}
        if not new.healing.enabled:
            why = {cid: "healing was disabled in the configuration" for cid in old_ids.values()}
        else:
            for name, cid in old_ids.items():
                if name not in self.collection_ids:
                    why[cid] = f"collection {name} was removed from the configuration"
        for cid, reason in why.items():

            async def release(cid: int = cid, reason: str = reason) -> list[str]:
                assert engine is not None
                return await engine.holds.release(cid, reason)

            try:
                lifted = await engine.exclusively(f"collection {cid}", release)
            except (asyncpg.PostgresError, OSError) as exc:
                log.error("release_failed", collection_id=cid, error=str(exc))
                continue
            if lifted:
                log.warning("healing_released", collection_id=cid, lifted=lifted, msg=reason)

    # ------------------------------------------------------------------ status

    def _facts(self) -> Facts:
        monitors = [loop.monitor for loop in self.loops.values()]
        samples = [m.last.snapshot.taken_at for m in monitors if m.last is not None]
        return Facts(
            collections=len(self.config.collections),
            acting=None if self.actor is None else self.actor.is_actor,
            why_not_acting="" if self.actor is None else self.actor.why_not,
            healing_enabled=self.config.healing.enabled,
            degraded=tuple(
                sorted(
                    (m.name, m.tracker.state.value) for m in monitors if m.tracker.state.degraded
                )
            ),
            failing=tuple(sorted((m.name, m.failing) for m in monitors if m.failing)),
            last_sample=max(samples, default=None),
            database_down_since=self.database_down_since,
            stalled=tuple(self.progress.stalled(self.clock.monotonic())),
        )

    def _status_line(self) -> str:
        return status_line(self._facts(), self.clock.now())

    def _refresh_status(self) -> None:
        """Keep systemd's STATUS= current (after every cycle); sent only when it changes."""
        status = self._status_line()
        if status != self._last_status:
            self._last_status = status
            self.notifier.status(status)

    def status(self, *, graphs: bool = False) -> dict[str, Any]:
        """What /status serves; with `graphs`, each collection's latest contracted graph too
        (from memory: the database keeps graphs at transitions and periodically only)."""
        decisions = self.rt.decisions if self.rt is not None else {}
        collections: dict[str, dict[str, Any]] = {}
        for name, loop in self.loops.items():
            last = loop.monitor.last
            collections[name] = {
                "state": loop.monitor.tracker.state.value,
                "lambda_cut": None if last is None else round(last.lambda_cut, 6),
                "error": loop.monitor.failing,
                "decision": decisions.get(name),
            }
            if graphs:
                collections[name]["graph"] = None if last is None else latest_graph(last)
        actor = None
        if self.actor is not None:
            actor = {"acting": self.actor.is_actor, "why_not": self.actor.why_not or None}
        facts = self._facts()
        down = self.database_down_since
        return {
            "version": __version__,
            "node": self.config.daemon.node_name,
            "pid": os.getpid(),
            "database": self.db.target if self.db else None,
            "database_up": down is None,
            "database_down_since": None if down is None else down.isoformat(),
            "actor": actor,
            "stalled": list(facts.stalled),
            "last_sample": None if facts.last_sample is None else facts.last_sample.isoformat(),
            "summary": status_line(facts, self.clock.now()),
            "collections": collections,
        }


def latest_graph(cycle: Cycle) -> dict[str, Any]:
    r = cycle.result
    return {
        "sampled_at": cycle.snapshot.taken_at.isoformat(),
        "lambda_cut": r.lambda_cut,
        **graph_document(r.graph, r.witness_indices, r.cut_side),
    }


def healing_bound(strategies: Any, config: Config) -> float:
    """The longest a healing step may keep a collection loop busy: the executor's bounds for
    the slowest strategy (execute at twice its estimate, the verification window and its six
    readings at most, undo twice), and a margin for the journal writes around them."""
    longest = max((float(s.estimated_duration) for s in strategies), default=0.0)
    undo = max(10.0, 2 * longest) + max(10.0, longest)
    h = config.healing
    verify = max(h.settle_seconds, 2 * h.throttle.retry_after_seconds) + 6 * sample_bound(config)
    return 2 * longest + verify + undo + 60.0


def _logged(
    name: str, task: Callable[[], Awaitable[None]]
) -> Callable[[], Coroutine[Any, Any, None]]:
    """A background task whose crash is logged, never lost, and does not stop the daemon."""

    async def run() -> None:
        while True:
            try:
                await task()
                return
            except Exception:
                log.exception(
                    "background_task_crashed", task=name, msg=f"{name} crashed; restarting in 5 s"
                )
                await anyio.sleep(5)

    return run


async def build_healer(daemon: Daemon) -> Healer | None:
    """The remediation engine, wired to this daemon's Postgres, clock, metrics and signer."""
    db, store, rt = daemon.db, daemon.store, daemon.rt
    assert db is not None and store is not None and rt is not None
    journal = HealingStore(db)
    kube = None
    if daemon.config.has_kubernetes_targets:
        from ruvectord.kube import Kube  # only a daemon with a Kubernetes target loads it

        kube = Kube(lambda: daemon.config.kubernetes)
    registry = builtin_registry(kube=kube, config=lambda: daemon.config)
    audit = audit_writer(store, daemon.clock)

    async def took_over() -> None:
        cfg = daemon.config
        if daemon.live is not None:
            await daemon.live.publish(registry.strategies)

        def rollback_failed(collection: str, strategy: str) -> None:
            daemon.metrics.rollback_failures.labels(collection, strategy).inc()

        done = await recover(
            journal,
            registry,
            db,
            cfg.healing,
            audit,
            daemon.clock.now(),
            on_rollback_failed=rollback_failed,
        )
        if done:
            log.warning("previous_actions_recovered", actions=done)
        if not cfg.healing.throttle.install_trigger:
            return
        for c in cfg.collections:
            loop = daemon.loops.get(c.name)
            if loop is not None and loop.monitor.tracker.state.degraded:
                continue  # no DDL on a table that is already in trouble
            state = await ensure_guard(db, daemon.collection_ids[c.name], lock_timeout_ms=1000)
            log.info("throttle_guard_checked", collection=c.name, guard=state)

    actor = ActorLock(db, daemon.metrics, on_acquired=took_over)
    engine = RemediationEngine(
        config=lambda: daemon.config,
        registry=registry,
        journal=journal,
        sql=db,
        clock=daemon.clock,
        metrics=daemon.metrics,
        actor=actor,
        audit=audit,
        node=daemon.config.daemon.node_name,
        shutdown=daemon.shutdown,
        pause=lambda: daemon.live.pause if daemon.live is not None else None,
    )
    await engine.load_weights()

    def monitor(name: str) -> CollectionMonitor | None:
        loop = daemon.loops.get(name)
        return loop.monitor if loop is not None else None

    intake = Intake(
        engine=engine,
        journal=journal,
        audit=audit,
        node=daemon.config.daemon.node_name,
        monitor=monitor,
        decision=lambda name: rt.decisions.get(name),
    )
    notifications = daemon.notifications
    if notifications is None:  # a daemon assembled by hand (tests): listen here
        notifications = daemon.notifications = Notifications(db)
        daemon.background.append(("listen", notifications.run))

    async def requests() -> None:
        assert notifications is not None
        poll = min(5.0, daemon.config.integrity.sample_interval_seconds)
        await intake.run(lambda seconds: notifications.wait(REQUESTS, seconds), poll)

    daemon.background.append(("actor-lock", actor.run))
    daemon.background.append(("requests", requests))
    daemon.actor = actor
    daemon.engine = engine
    return engine


def audit_writer(store: Store, clock: Clock) -> Callable[..., Awaitable[None]]:
    """Every healing step becomes a signed event in ruvector.integrity_events."""

    async def audit(**fields: Any) -> None:
        event_type = fields.pop("event_type", "audit")
        collection = str(fields.pop("collection"))
        metadata = {k: v for k, v in fields.items() if v is not None}
        await store.record_event(
            {
                "collection": collection,
                "event_type": event_type,
                "previous_state": None,
                "new_state": None,
                "lambda_cut": None,
                "lambda2": None,
                "witness_edges": [],
                "metadata": metadata,
                "created_at": clock.now(),
            }
        )

    return audit
