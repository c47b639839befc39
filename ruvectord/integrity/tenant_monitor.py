"""The per-tenant part of a collection's loop: each scope's lambda, state, events and series.

Driven by the collection's monitor (monitor.py) with the sample it has just taken; it queries
nothing itself, it only persists through its store. Scopes (integrity/tenants.py) are chosen
afresh every sample: the top N tenants by smoothed load, the rest as "(other)". Each scope has
its own hysteresis tracker with the collection's policy, persisted in ruvector.tenant_state
like the collection's in ruvector.integrity_state, and signed `tenant_state_change` events. A
tenant that leaves the top N loses its state, its row and its metric series.

What stays per collection: the collection's own graph, lambda and state (the whole graph: the
weakest part of the collection, whoever it belongs to), healing, and the two-argument gate. A
noisy tenant may put the collection in stress -- the decision line then says in which tenant --
but never another tenant: a fault in its partitions is in no other scope's graph.

A failure here costs this sample's tenant states (retried next sample), never the collection's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import anyio

from ruvectord.config import Budgets, CollectionConfig
from ruvectord.integrity.evaluate import IntegrityResult, evaluate, finite
from ruvectord.integrity.hysteresis import Policy, State, Step, Tracker, observe
from ruvectord.integrity.snapshot import Rates, Snapshot
from ruvectord.integrity.tenants import (
    OTHER,
    choose,
    is_multi_tenant,
    scope_graphs,
    scopes,
    smooth,
    tenant_loads,
)
from ruvectord.logs import get_logger
from ruvectord.metrics import OPERATIONS, Metrics
from ruvectord.timebase import Instant

# (tenant, operation, percent, lease expiry) of a throttle in force on one tenant's rows
TenantThrottle = tuple[str, str, int, datetime]


@dataclass(frozen=True)
class TenantRecord:
    """One scope's row of ruvector.tenant_state, as one sample leaves it."""

    tenant: str
    rank: int | None  # 1 = first of the tracked tenants (degraded first, then busiest); OTHER None
    load_ops: float
    partitions: tuple[str, ...]
    state: str
    lambda_cut: float
    lambda_cut_raw: float
    tracker: Mapping[str, Any]
    witness_edges: list[dict[str, Any]]
    decision: str
    sampled_at: datetime
    transitioned: bool


class TenantStore(Protocol):
    async def load_tenants(self, collection_id: int) -> dict[str, tuple[dict[str, Any], float]]:
        """Scope -> (tracker as JSON, smoothed load) as last persisted."""
        ...

    async def record_tenants(
        self,
        collection_id: int,
        records: Sequence[TenantRecord],
        events: Sequence[Mapping[str, Any]],
    ) -> tuple[TenantThrottle, ...]:
        """Replace the collection's scopes by `records` (one transaction, events signed);
        returns the throttles in force on its tenants."""
        ...

    async def tenant_throttles(self, collection_id: int) -> tuple[TenantThrottle, ...]:
        """The throttles in force on the collection's tenants (a daemon that only observes)."""
        ...


@dataclass(frozen=True)
class TenantReading:
    """One scope's share of a sample: its graph's reading and its state machine's step."""

    tenant: str
    rank: int | None
    load: float
    partitions: tuple[str, ...]
    result: IntegrityResult
    step: Step

    @property
    def state(self) -> State:
        return self.step.state

    @property
    def lambda_cut(self) -> float:
        return self.result.lambda_cut

    @property
    def label(self) -> str:
        return self.tenant if self.tenant == OTHER else f"tenant {self.tenant}"


class TenantMonitor:
    def __init__(self, collection: CollectionConfig, collection_id: int, metrics: Metrics) -> None:
        self.collection = collection
        self.collection_id = collection_id
        self.metrics = metrics
        self.trackers: dict[str, Tracker] = {}
        self.loads: dict[str, float] = {}  # smoothed, of every tenant with a partition
        self.other_load = 0.0  # smoothed, of the aggregate's partitions
        self._pending: tuple[dict[str, float], float] = ({}, 0.0)  # until committed
        self._said_why = False  # warned that no partition holds a single tenant
        self.log = get_logger("ruvectord.tenants", collection=collection.name)

    @property
    def name(self) -> str:
        return self.collection.name

    async def restore(self, store: TenantStore, now: Instant) -> None:
        saved = await store.load_tenants(self.collection_id)
        self.trackers = {t: Tracker.from_json(raw, now) for t, (raw, _) in saved.items()}
        self.loads = {t: load for t, (_, load) in saved.items() if t != OTHER}
        self.other_load = saved[OTHER][1] if OTHER in saved else 0.0
        raised = sorted(t for t, tr in self.trackers.items() if tr.state.degraded)
        if raised:
            self.log.info("tenant_states_restored", scopes=len(saved), degraded=raised)

    async def readings(
        self, snapshot: Snapshot, load: Rates, budgets: Budgets, policy: Policy, at: Instant
    ) -> tuple[TenantReading, ...]:
        """Every scope's reading of this sample; nothing is kept until `commit`.

        None when no partition is labelled with a tenant this sample (the table is not LIST
        partitioned by the column, or its bounds could not be read under a lock): the scopes
        are left as they were, to go stale (the gate then fails open), never wiped."""
        try:
            return await self._readings(snapshot, load, budgets, policy, at)
        except Exception as exc:  # the collection's sample stands without its tenants
            self.log.exception("tenant_readings_failed", error=f"{type(exc).__name__}: {exc}")
            return ()

    async def _readings(
        self, snapshot: Snapshot, load: Rates, budgets: Budgets, policy: Policy, at: Instant
    ) -> tuple[TenantReading, ...]:
        if not is_multi_tenant(snapshot):
            if not self._said_why:
                self._said_why = True
                self.log.warning(
                    "tenants_not_observed",
                    msg=f"{self.name}: no partition of {self.collection.table} holds a single "
                    f"value of {self.collection.tenant_column} (it must be the LIST partition "
                    "key, one tenant per partition): tenants are not told apart; the "
                    "collection's state covers them all",
                )
            return ()
        self._said_why = False
        loads = smooth(self.loads, tenant_loads(snapshot, load))
        degraded = {t for t, tr in self.trackers.items() if tr.state.degraded}
        tracked = choose(loads, set(self.trackers) - {OTHER}, degraded, self.collection.tenants.top)
        parts = scopes(snapshot, tracked)
        # the graphs and their cuts are CPU work: off the event loop together
        results = await anyio.to_thread.run_sync(
            lambda: {
                scope: evaluate(g, lambda2=False)
                for scope, g in scope_graphs(snapshot, load, budgets, tracked, parts).items()
            }
        )
        names = {p.oid: p.name for p in snapshot.partitions}
        rank = {t: i + 1 for i, t in enumerate(tracked)}
        other_now = sum(load.partition_ops.get(o, 0.0) for o in parts.get(OTHER, ()))
        other = smooth({OTHER: self.other_load}, {OTHER: other_now})[OTHER]
        out = []
        for scope, result in results.items():
            step = observe(self.trackers.get(scope, Tracker()), result.lambda_cut, at, policy)
            out.append(
                TenantReading(
                    tenant=scope,
                    rank=rank.get(scope),
                    load=other if scope == OTHER else loads.get(scope, 0.0),
                    partitions=tuple(sorted(names[o] for o in parts[scope])),
                    result=result,
                    step=step,
                )
            )
        self._pending = (loads, other)
        return tuple(out)

    async def commit(
        self,
        store: TenantStore,
        readings: Sequence[TenantReading],
        at: Instant,
        *,
        write: bool = True,
    ) -> None:
        """Persist the scopes (and sign their transitions), then make them current.

        Only the daemon that records the collection's samples (the acting one) writes them; the
        others keep what they observe in memory and export it, as for the collection."""
        if not readings:
            return
        now = at.wall
        events = [self._event(r, now) for r in readings if r.step.changed]
        records = [
            TenantRecord(
                tenant=r.tenant,
                rank=r.rank,
                load_ops=r.load,
                partitions=r.partitions,
                state=r.state.value,
                lambda_cut=r.lambda_cut,
                lambda_cut_raw=r.result.cut.raw,
                tracker=r.step.tracker.to_json(at),
                witness_edges=r.result.witness_edges,
                decision=f"{r.label}: {_state_text(r.step)}, {r.step.reason}",
                sampled_at=now,
                transitioned=r.step.changed,
            )
            for r in readings
        ]
        try:
            with anyio.fail_after(30):
                if write:
                    throttles = await store.record_tenants(self.collection_id, records, events)
                else:
                    throttles = await store.tenant_throttles(self.collection_id)
        except Exception as exc:  # the collection's sample stands; tenants retry next sample
            self.log.warning(
                "tenant_states_not_saved",
                error=f"{type(exc).__name__}: {exc}",
                msg=f"{self.name}: tenant states not saved ({exc}); kept as they were",
            )
            return
        self.trackers = {r.tenant: r.step.tracker for r in readings}
        self.loads, self.other_load = self._pending
        for r in readings:
            if r.step.changed:
                self.log.warning(
                    "tenant_state_changed",
                    tenant=r.tenant,
                    previous=r.step.previous.value,
                    state=r.state.value,
                    lambda_cut=round(r.lambda_cut, 4),
                    reason=r.step.reason,
                    witness=r.result.witness_edges,
                    recorded=write,
                )
        self._export(readings, throttles)

    def summary(self, readings: Sequence[TenantReading], threshold_high: float) -> str | None:
        """e.g. 'tenants: tenant 3 normal -> stress 0.632; 4 others normal'."""
        if not readings:
            return None
        named = [
            r
            for r in readings
            if r.state.degraded or r.step.changed or r.lambda_cut < threshold_high
        ]
        rest = len(readings) - len(named)
        if not named:
            return f"tenants: {rest} scope{'s' if rest != 1 else ''} normal"
        shown = ", ".join(f"{r.label} {_state_text(r.step)} {r.lambda_cut:.3f}" for r in named)
        return f"tenants: {shown}" + (
            f"; {rest} other{'s' if rest != 1 else ''} normal" if rest else ""
        )

    def _event(self, r: TenantReading, now: datetime) -> dict[str, Any]:
        return {
            "collection": self.name,
            "event_type": "tenant_state_change",
            "previous_state": r.step.previous.value,
            "new_state": r.state.value,
            "lambda_cut": finite(r.lambda_cut),
            "lambda2": None,
            "witness_edges": r.result.witness_edges,
            "metadata": {
                "tenant": r.tenant,
                "rank": r.rank,
                "partitions": list(r.partitions),
                "reason": r.step.reason,
                "lambda_cut_raw": finite(r.result.cut.raw),
                "witness_summary": r.result.summary(),
            },
            "created_at": now,
        }

    def _export(
        self, readings: Sequence[TenantReading], throttles: Sequence[TenantThrottle]
    ) -> None:
        m = self.metrics
        keep: set[str] = set()
        for r in readings:
            m.set_tenant(self.name, r.tenant, r.lambda_cut, r.state.value, r.load)
            keep.add(r.tenant)
        levels: dict[tuple[str, str], int] = {}
        for tenant, op, pct, _ in throttles:  # in force by the database's clock, as the guard
            levels[(tenant, op)] = max(pct, levels.get((tenant, op), 0))
        for tenant in keep | {t for t, _ in levels}:
            for op in OPERATIONS:
                m.set_tenant_throttle(self.name, tenant, op, levels.get((tenant, op), 0))
            keep.add(tenant)
        for gone in m.tenants(self.name) - keep:
            m.forget_tenant(self.name, gone)


def _state_text(step: Step) -> str:
    if step.changed:
        return f"{step.previous.value} -> {step.state.value}"
    return step.state.value
