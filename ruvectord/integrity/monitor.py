"""The per-collection loop: sample -> graph -> lambda_cut -> state -> persist -> heal.

The only impure module of the sensor: it drives the pure pieces and talks to the adapters it
is given (a snapshot source, a store that signs events, a clock, metrics, a healer). Each cycle ends
in one human line saying what was decided and why.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import anyio

from ruvectord.clock import Clock
from ruvectord.config import CollectionConfig, Config
from ruvectord.errors import CollectionError
from ruvectord.health import Progress
from ruvectord.integrity.evaluate import IntegrityResult, finite
from ruvectord.integrity.frame import Frame, encode
from ruvectord.integrity.graph import ContractedGraph
from ruvectord.integrity.graph_record import GraphReason, graph_reason
from ruvectord.integrity.hysteresis import State, Step, Tracker
from ruvectord.integrity.sense import Sensed, policy_from, reading, sense
from ruvectord.integrity.snapshot import Snapshot, rates
from ruvectord.integrity.tenant_monitor import TenantMonitor, TenantReading, TenantStore
from ruvectord.logs import get_logger
from ruvectord.metrics import OPERATIONS, STATE_VALUE, Metrics
from ruvectord.testpoints import reach


class SnapshotSource(Protocol):
    async def sample(
        self, taken_at: datetime, collection_id: int | None, *, host_memory: bool = True
    ) -> Snapshot: ...


@dataclass(frozen=True)
class SampleRecord:
    collection_id: int
    sampled_at: datetime
    lambda_cut: float
    lambda_cut_raw: float
    lambda2: float | None
    state: str
    tracker: Mapping[str, Any]
    witness_edges: list[dict[str, Any]]
    witness_indices: tuple[int, ...]
    cut_side: list[int]
    graph: ContractedGraph
    sample_ms: float
    computation_ms: float
    decision: str
    transitioned: bool
    # what the decisions were computed from, for `ruvectord replay` (integrity/frame.py)
    frame: bytes | None = None
    # why this sample's graph is kept (ruvector.graph_snapshots), or None: not every sample's
    graph_reason: GraphReason | None = None


@dataclass(frozen=True)
class Held:
    """What healing holds on a collection, as the database says (read with every sample)."""

    throttles: tuple[tuple[str, int, datetime], ...] = ()  # (operation, pct, lease expiry)
    pending_approvals: int = 0
    oldest_pending: datetime | None = None


class IntegrityStore(TenantStore, Protocol):
    async def load_tracker(self, collection_id: int) -> dict[str, Any] | None: ...

    async def record_sample(self, rec: SampleRecord, event: Mapping[str, Any] | None) -> Held:
        """Persist the sample (and sign the event); returns what healing holds right now."""
        ...

    async def set_collection_status(self, collection_id: int, error: str | None) -> None: ...

    async def set_decision(self, collection_id: int, decision: str) -> None: ...

    async def read_held(self, collection_id: int) -> Held:
        """What healing holds, for a daemon that does not record samples."""
        ...

    async def mean_recovery_seconds(self, collection: str, since: datetime) -> float | None:
        """Mean time from leaving normal to the first return to normal, since `since`."""
        ...


@dataclass(frozen=True)
class Cycle:
    """Everything one sample produced, handed to the healer."""

    collection: CollectionConfig
    collection_id: int
    snapshot: Snapshot
    result: IntegrityResult
    step: Step
    # each tenant scope's reading, where the collection has tenants (tenant_monitor.py)
    tenants: tuple[TenantReading, ...] = ()

    @property
    def state(self) -> State:
        return self.step.state

    @property
    def lambda_cut(self) -> float:
        return self.result.lambda_cut


class Healer(Protocol):
    async def after_sample(self, cycle: Cycle, monitor: CollectionMonitor) -> str | None:
        """React to a sample; return a short phrase of what healing decided, if anything."""
        ...

    async def export(self, collection_id: int, name: str) -> None:
        """Set the collection's healing gauges from what is recorded (when a loop starts)."""
        ...


@dataclass
class Runtime:
    """What every collection loop shares: the context object passed instead of a dozen args."""

    config: Config
    clock: Clock
    metrics: Metrics
    store: IntegrityStore
    decisions: dict[str, str] = field(default_factory=dict)  # collection -> last human line
    # called with every completed cycle and its human line (the demo's timeline uses it)
    observers: list[Callable[[Cycle, str], None]] = field(default_factory=list)
    # when each loop last finished a cycle: what the systemd watchdog is fed from
    progress: Progress = field(default_factory=Progress)
    # whether this daemon writes shared state (samples, transitions, statuses): only the
    # acting one does when several watch the same database; the others sample and export
    writes: Callable[[], bool] = lambda: True
    # called after every cycle, good or failed (the daemon refreshes systemd's STATUS)
    after_cycle: Callable[[], None] = lambda: None


def sample_bound(config: Config) -> float:
    """How long one sample may take before it fails: its few statements, each bounded by the
    statement timeout, and a floor for connecting."""
    return max(config.database.statement_timeout_seconds * 3, 5.0)


class CollectionMonitor:
    def __init__(
        self,
        rt: Runtime,
        collection: CollectionConfig,
        collection_id: int,
        source: SnapshotSource,
        healer: Healer | None = None,
    ) -> None:
        self.rt = rt
        self.collection = collection
        self.collection_id = collection_id
        self.source = source
        self.healer = healer
        self.tracker = Tracker()
        self.previous: Snapshot | None = None
        self.last: Cycle | None = None
        self.failing: str | None = None
        self._restored = False
        self._writing = False  # whether the last cycle wrote shared state
        self._one_cycle = anyio.Lock()
        self._bad_rows = 0  # centroid_stats rows the sampler skipped, as last warned
        # when this daemon last wrote the graph (monotonic); None: not since it became writer
        self._graph_written: float | None = None
        # per-tenant scopes, where the collection declares a tenant column
        self.tenants = (
            TenantMonitor(collection, collection_id, rt.metrics)
            if collection.tenant_column is not None
            else None
        )
        self.log = get_logger("ruvectord.monitor", collection=collection.name)

    @property
    def name(self) -> str:
        return self.collection.name

    async def restore(self) -> None:
        """Pick up the persisted state, so a restart neither forgets nor repeats a transition."""
        raw = await self.rt.store.load_tracker(self.collection_id)
        self._graph_written = None  # a new writer keeps the graph it starts from
        if raw:
            saved = Tracker.from_json(raw, self.rt.clock.instant())
            self.tracker = saved
            self.log.info("state_restored", state=saved.state.value, streak=saved.low_streak)
        # the gauges from what is recorded, so a restart shows no gap until the next heal
        await self.export_recovery()
        if self.healer is not None:
            await self.healer.export(self.collection_id, self.name)
        if self.tenants is not None:
            await self.tenants.restore(self.rt.store, self.rt.clock.instant())

    async def run(self) -> None:
        while True:
            started = self.rt.clock.monotonic()
            await self.cycle_safely()
            interval = self.rt.config.integrity.sample_interval_seconds
            await self.rt.clock.sleep(max(0.0, interval - (self.rt.clock.monotonic() - started)))

    async def cycle_safely(self) -> Cycle | None:
        """One cycle; a failure fails this sample only, never the loop or the daemon.

        One at a time: the loop and a requested sample (`ruvector_healing_trigger`) take turns.
        """
        async with self._one_cycle:
            try:
                return await self._cycle_safely()
            finally:
                rt = self.rt
                interval = rt.config.integrity.sample_interval_seconds
                rt.progress.finished(self.name, rt.clock.monotonic(), interval=interval)
                rt.after_cycle()

    async def _cycle_safely(self) -> Cycle | None:
        try:
            if not self._restored:
                await self.restore()  # retried every cycle until the database answers
                self._restored = True
                self._writing = self.rt.writes()
            return await self.cycle()
        except CollectionError as exc:
            self._failed("collection", exc.reason, exc)
        except TimeoutError as exc:
            self._failed("timeout", "sampling timed out", exc)
        except Exception as exc:
            self._failed(_reason(exc), f"{type(exc).__name__}: {exc}", exc)
        if self.failing is not None and self._writing:
            try:
                await self.rt.store.set_collection_status(self.collection_id, self.failing)
            except Exception as exc:
                self.log.warning("collection_status_not_saved", error=str(exc))
        return None

    def _failed(self, reason: str, detail: str, exc: BaseException) -> None:
        self.rt.metrics.sample_errors.labels(self.name, reason).inc()
        line = f"{self.name}: sample failed ({detail}); keeping state {self.tracker.state}"
        self.rt.decisions[self.name] = line
        # warn when the problem appears or changes, not at every interval while it lasts
        emit = self.log.warning if detail != self.failing else self.log.debug
        emit(
            "sample_failed",
            reason=reason,
            error=detail,
            msg=line,
            exc_info=reason not in ("collection", "timeout", "database"),
        )
        self.failing = detail

    async def measure(self) -> IntegrityResult:
        """A fresh reading for verification; it does not feed the state machine."""
        snapshot = await self.source.sample(
            self.rt.clock.now(), self.collection_id, host_memory=False
        )
        load, config = rates(self.previous, snapshot), self.rt.config
        # the graph too is CPU work: both off the event loop, as a sample's
        _, result = await anyio.to_thread.run_sync(
            lambda: reading(snapshot, load, config, self.collection)
        )
        return result

    async def cycle(self) -> Cycle:
        rt, cfg = self.rt, self.rt.config
        # durations are measurements, so real time; decisions use the injected clock
        writes = rt.writes()
        if writes and not self._writing and self._restored:
            # just became the writer: go on from the recorded state, not from what this
            # daemon observed while another one recorded
            await self.restore()
        self._writing = writes
        t0 = time.perf_counter()
        at = rt.clock.instant()
        now = at.wall
        with anyio.fail_after(sample_bound(cfg)):
            snapshot = await self.source.sample(now, self.collection_id)
        sample_ms = (time.perf_counter() - t0) * 1000
        await reach("monitor.after_sample")
        if snapshot.bad_centroid_rows != self._bad_rows:
            # once when bad rows appear (or their number changes), not at every sample
            self._bad_rows = snapshot.bad_centroid_rows
            if self._bad_rows:
                self.log.warning(
                    "centroid_stats_rows_skipped",
                    rows=self._bad_rows,
                    msg=f"{self.name}: skipped {self._bad_rows} ruvector.centroid_stats row(s) "
                    "with a NaN, infinite or negative value; sampling goes on without them",
                )
        load, tracker, writing = rates(self.previous, snapshot), self.tracker, self._writing

        def compute() -> tuple[Sensed, bytes | None]:
            # the same pure path `ruvectord replay` runs on the frame recorded here
            sensed = sense(snapshot, load, tracker, at, cfg, self.collection)
            frame = encode(Frame(at.mono, tracker, snapshot, load)) if writing else None
            return sensed, frame

        sensed, frame = await anyio.to_thread.run_sync(compute)
        graph, result, step = sensed.graph, sensed.result, sensed.step
        tenants: tuple[TenantReading, ...] = ()
        if self.tenants is not None:
            budgets, policy = cfg.budgets_for(self.collection), policy_from(cfg)
            tenants = await self.tenants.readings(snapshot, load, budgets, policy, at)
        cycle = Cycle(self.collection, self.collection_id, snapshot, result, step, tenants)

        sensor_line = self._sensor_line(cycle)
        event = None
        if step.changed:
            event = dict(
                collection=self.name,
                event_type="state_change",
                previous_state=step.previous.value,
                new_state=step.state.value,
                lambda_cut=finite(result.lambda_cut),
                lambda2=finite(result.lambda2),
                witness_edges=result.witness_edges,
                metadata={
                    "reason": step.reason,
                    "lambda_cut_raw": finite(result.cut.raw),
                    "witness_summary": result.summary(),
                    "nodes": len(graph.nodes),
                    "edges": len(graph.edges),
                },
                created_at=now,
            )
        if self._writing:
            reason = graph_reason(
                transitioned=step.changed,
                last_written=self._graph_written,
                now=at.mono,
                every_seconds=cfg.integrity.graph_snapshot_seconds,
            )
            record = SampleRecord(
                collection_id=self.collection_id,
                sampled_at=now,
                lambda_cut=result.lambda_cut,
                lambda_cut_raw=result.cut.raw,
                lambda2=result.lambda2,
                state=step.state.value,
                tracker=step.tracker.to_json(at),
                witness_edges=result.witness_edges,
                witness_indices=result.witness_indices,
                cut_side=result.cut_side,
                graph=graph,
                sample_ms=sample_ms,
                computation_ms=result.computation_ms,
                decision=sensor_line,
                transitioned=step.changed,
                frame=frame,
                graph_reason=reason,
            )
            # the same transaction clears an error status, whichever daemon set it
            held = await rt.store.record_sample(record, event)
            if reason is not None:
                self._graph_written = at.mono
        else:
            held = await rt.store.read_held(self.collection_id)
            if step.changed:
                sensor_line += " (observed; the acting daemon records transitions)"
        # only now is the new state durable; a crash before this line repeats the sample
        self.tracker = step.tracker
        self.previous = snapshot
        self.last = cycle
        self.failing = None
        if self.tenants is not None:
            await self.tenants.commit(rt.store, tenants, at, write=self._writing)
        self._export(cycle, time.perf_counter() - t0, held, now)
        if step.changed:
            rt.metrics.transitions.labels(self.name, step.previous.value, step.state.value).inc()
            self.log.warning(
                "state_changed",
                previous=step.previous.value,
                state=step.state.value,
                lambda_cut=round(result.lambda_cut, 4),
                reason=step.reason,
                witness=result.witness_edges,
                recorded=self._writing,
            )
            if step.state is State.NORMAL:
                await self.export_recovery()

        healing = None
        if self.healer is not None:
            rt.progress.healing(self.name, rt.clock.monotonic())
            try:
                healing = await self.healer.after_sample(cycle, self)
            except Exception as exc:  # the sample stands; healing is retried next cycle
                healing = f"healing step failed ({type(exc).__name__}: {exc})"
                self.log.exception("healing_failed", msg=healing)
            finally:
                rt.progress.healed(self.name)
        line = sensor_line + (f"; {healing}" if healing else "")
        rt.decisions[self.name] = line
        for observe_cycle in rt.observers:
            observe_cycle(cycle, line)
        if healing and self._writing:
            await rt.store.set_decision(self.collection_id, line)
        self.log.info(
            "cycle_decided",
            state=step.state.value,
            lambda_cut=round(result.lambda_cut, 4),
            lambda2=None if result.lambda2 is None else round(result.lambda2, 4),
            witness_count=len(result.witness_indices),
            sample_ms=round(sample_ms, 1),
            computation_ms=round(result.computation_ms, 1),
            msg=line,
        )
        return cycle

    async def export_recovery(self) -> None:
        """Time to recovery: leaving normal -> back to normal, over the learning window."""
        rt = self.rt
        since = rt.clock.now() - timedelta(days=rt.config.healing.learning_window_days)
        try:
            seconds = await rt.store.mean_recovery_seconds(self.name, since)
        except Exception as exc:  # a gauge is not worth failing the cycle for
            self.log.warning("recovery_time_not_read", error=str(exc))
            return
        rt.metrics.healing_ttr.labels(self.name).set(math.nan if seconds is None else seconds)

    def _sensor_line(self, c: Cycle) -> str:
        state = c.step.state.value
        if c.step.changed:
            state = f"{c.step.previous.value} -> {state}"
        line = f"{self.name}: {state}, {c.step.reason}"
        if c.step.state.degraded or c.step.changed or c.result.lambda_cut < 1.0:
            line += f"; weakest cut: {c.result.summary()}"
        if self.tenants is not None and c.tenants:
            line += f"; {self.tenants.summary(c.tenants, self.rt.config.integrity.threshold_high)}"
        return line

    def _export(self, c: Cycle, seconds: float, held: Held, now: datetime) -> None:
        m = self.rt.metrics
        m.last_sample.labels(self.name).set(now.timestamp())
        in_force = {op: (pct, until) for op, pct, until in held.throttles if until > now}
        for op in OPERATIONS:
            pct, until = in_force.get(op, (0, None))
            m.throttle_pct.labels(self.name, op).set(pct)
            m.throttle_expiry.labels(self.name, op).set(until.timestamp() if until else 0)
        m.pending_approvals.labels(self.name).set(held.pending_approvals)
        oldest = held.oldest_pending
        m.oldest_pending.labels(self.name).set(
            max(0.0, (now - oldest).total_seconds()) if oldest else 0
        )
        m.lambda_cut.labels(self.name).set(c.result.lambda_cut)
        m.lambda_cut_raw.labels(self.name).set(c.result.cut.raw)
        if c.result.lambda2 is not None:
            m.lambda2.labels(self.name).set(c.result.lambda2)
        m.state.labels(self.name).set(STATE_VALUE[c.step.state.value])
        m.witness_edges.labels(self.name).set(len(c.result.witness_indices))
        m.sample_duration.labels(self.name).observe(seconds)


def _reason(exc: BaseException) -> str:
    name = type(exc).__module__
    # the adapters raise asyncpg's errors, OSError for a refused or lost socket, and
    # DatabaseUnavailable once retries are spent
    if name.startswith("asyncpg") or "Database" in type(exc).__name__ or isinstance(exc, OSError):
        return "database"
    return "internal"
