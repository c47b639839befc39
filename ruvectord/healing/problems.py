"""Problem classes and the classifier: witness edges + snapshot -> what is wrong.

One source of truth for "weak": the classifier reads the capacities the cut used. Each
witness edge is missing `weight x (1 - capacity)` of what it carries when healthy; the
missing capacity across the cut is shared out by cause, and the cause that carries at
least `min_share` of it (default a half) names the class:

    routing, partition_link (a queued or hot partition)  -> HotspotCongestion
    centroid_route to an IVF list                        -> CentroidSkew
    replication                                          -> ReplicationLag
    dependency (a job holding up backends)               -> MaintenanceContention
    centroid_route to a vector index (fragmentation)     -> IndexFragmentation

The share lost to the database-wide error rate (deadlocks, conflicts) has no class. When no
cause carries `min_share`: MemoryPressure if memory use is above `memory_pressure_pct`
(memory is not in the graph), else Unknown, which is never healed automatically. So every
threshold that makes lambda fall makes its class fire: a job on one partition, 12-30 %
fragmentation and skew without latency figures classify like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from ruvectord.config import ClassifierConfig
from ruvectord.integrity.evaluate import IntegrityResult
from ruvectord.integrity.graph import ContractedGraph, Edge, EdgeKind, NodeKind
from ruvectord.integrity.snapshot import Snapshot
from ruvectord.integrity.tenants import tenant_of_partitions


class ProblemKind(StrEnum):
    HOTSPOT_CONGESTION = "HotspotCongestion"
    CENTROID_SKEW = "CentroidSkew"
    REPLICATION_LAG = "ReplicationLag"
    MAINTENANCE_CONTENTION = "MaintenanceContention"
    INDEX_FRAGMENTATION = "IndexFragmentation"
    MEMORY_PRESSURE = "MemoryPressure"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class _Problem:
    def details(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class HotspotCongestion(_Problem):
    kind = ProblemKind.HOTSPOT_CONGESTION
    partition_ids: tuple[int, ...]
    partition_names: tuple[str, ...]
    load_ratio: float  # vs the mean partition
    queue_depth: float = 0.0  # backends queued on it (the worst named)
    # where every named partition holds one tenant: that tenant (integrity/tenants.py; OTHER
    # for shared partitions), so a brake can target it alone; None: the whole collection
    tenant: str | None = None

    def describe(self) -> str:
        text = (
            f"hot partition {', '.join(self.partition_names)} at {self.load_ratio:.1f}x mean load"
        )
        text += f", queue {self.queue_depth:g}" if self.queue_depth else ""
        return text + (f" (tenant {self.tenant})" if self.tenant is not None else "")


@dataclass(frozen=True, slots=True)
class CentroidSkew(_Problem):
    kind = ProblemKind.CENTROID_SKEW
    centroid_ids: tuple[int, ...]
    skew_factor: float
    index_names: tuple[str, ...] = ()  # the IVFFlat indexes, when read from their pages

    def describe(self) -> str:
        where = f" of {', '.join(self.index_names)}" if self.index_names else ""
        return (
            f"{len(self.centroid_ids)} skewed centroid lists{where} (up to {self.skew_factor:.1f}x)"
        )


@dataclass(frozen=True, slots=True)
class ReplicationLag(_Problem):
    kind = ProblemKind.REPLICATION_LAG
    replica_ids: tuple[int, ...]  # walsender pids
    replica_names: tuple[str, ...]
    lag_seconds: float
    lag_bytes: int
    unapplied_bytes: int = 0  # of lag_bytes, what the replica holds but has not replayed

    @property
    def replay_stalled(self) -> bool:
        """Most of the lag is WAL the replica already has: its replay, not the primary's
        write volume, is behind (replay paused, a conflict, a slow standby)."""
        return self.lag_bytes > 0 and self.unapplied_bytes * 2 >= self.lag_bytes

    def describe(self) -> str:
        text = (
            f"replica {', '.join(self.replica_names)} lagging {self.lag_seconds:.1f} s / "
            f"{self.lag_bytes} bytes"
        )
        if self.replay_stalled:
            text += f", {self.unapplied_bytes} of them received but not replayed"
        return text


@dataclass(frozen=True, slots=True)
class MaintenanceContention(_Problem):
    kind = ProblemKind.MAINTENANCE_CONTENTION
    job_types: tuple[str, ...]
    job_pids: tuple[int, ...]
    queue_depth: int  # backends waiting behind the jobs

    def describe(self) -> str:
        return f"{', '.join(self.job_types)} blocking {self.queue_depth} backend(s)"


@dataclass(frozen=True, slots=True)
class IndexFragmentation(_Problem):
    kind = ProblemKind.INDEX_FRAGMENTATION
    index_ids: tuple[int, ...]
    index_names: tuple[str, ...]
    fragmentation_pct: float

    def describe(self) -> str:
        return f"index fragmentation {self.fragmentation_pct:.0f}% on {', '.join(self.index_names)}"


@dataclass(frozen=True, slots=True)
class MemoryPressure(_Problem):
    kind = ProblemKind.MEMORY_PRESSURE
    current_usage_pct: float
    largest_consumers: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        return f"memory at {self.current_usage_pct:.0f}%"


@dataclass(frozen=True, slots=True)
class Unknown(_Problem):
    kind = ProblemKind.UNKNOWN
    witness_summary: str

    def describe(self) -> str:
        return f"unclassified ({self.witness_summary})"


Problem = (
    HotspotCongestion
    | CentroidSkew
    | ReplicationLag
    | MaintenanceContention
    | IndexFragmentation
    | MemoryPressure
    | Unknown
)


# the seed's order: it breaks a tie between causes with equal shares
_ORDER = (
    ProblemKind.HOTSPOT_CONGESTION,
    ProblemKind.CENTROID_SKEW,
    ProblemKind.REPLICATION_LAG,
    ProblemKind.MAINTENANCE_CONTENTION,
    ProblemKind.INDEX_FRAGMENTATION,
)
_ERRORS = "errors"


def cause(graph: ContractedGraph, edge: Edge) -> ProblemKind:
    """The class an edge's missing capacity speaks for."""
    if edge.kind in (EdgeKind.ROUTING, EdgeKind.PARTITION_LINK):
        return ProblemKind.HOTSPOT_CONGESTION
    if edge.kind is EdgeKind.REPLICATION:
        return ProblemKind.REPLICATION_LAG
    if edge.kind is EdgeKind.DEPENDENCY:
        return ProblemKind.MAINTENANCE_CONTENTION
    ends = {graph.nodes[edge.source].kind, graph.nodes[edge.target].kind}
    if NodeKind.CENTROID in ends:
        return ProblemKind.CENTROID_SKEW
    return ProblemKind.INDEX_FRAGMENTATION


@dataclass(frozen=True, slots=True)
class Deficit:
    """The capacity missing across the cut, by cause: what each witness edge lacks."""

    by_edge: Mapping[int, float]  # witness edge index -> weight x (1 - capacity), own cause
    by_cause: Mapping[str, float]  # ProblemKind value or "errors" -> missing capacity
    total: float

    def share(self, key: str) -> float:
        return self.by_cause.get(key, 0.0) / self.total if self.total > 0 else 0.0

    def describe(self) -> str:
        parts = sorted(self.by_cause.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{k} {v / self.total:.0%}" for k, v in parts if v > 0)


def deficit(result: IntegrityResult) -> Deficit:
    graph = result.graph
    keep = 1.0 - float(graph.nodes[0].attrs.get("error_rate") or 0.0) if graph.nodes else 1.0
    by_edge: dict[int, float] = {}
    by_cause: dict[str, float] = {}
    for i in result.witness_indices:
        e = graph.edges[i]
        missing = e.weight * (1.0 - e.capacity)
        if missing <= 0:
            continue
        # capacity = health x (1 - error rate): the part the errors took has no class
        own = e.weight * (1.0 - min(1.0, e.capacity / keep)) if keep > 0 else 0.0
        by_edge[i] = own
        key = cause(graph, e).value
        by_cause[key] = by_cause.get(key, 0.0) + own
        by_cause[_ERRORS] = by_cause.get(_ERRORS, 0.0) + (missing - own)
    total = sum(by_cause.values())
    return Deficit(by_edge, by_cause, total)


def classify(result: IntegrityResult, snapshot: Snapshot, rules: ClassifierConfig) -> Problem:
    graph = result.graph
    d = deficit(result)
    if d.total > 1e-9:
        top = max(_ORDER, key=lambda k: (d.by_cause.get(k.value, 0.0), -_ORDER.index(k)))
        if d.share(top.value) >= rules.min_share and d.by_cause.get(top.value, 0.0) > 0:
            mine = [i for i in d.by_edge if cause(graph, graph.edges[i]) is top]
            return _build(top, result, snapshot, mine, d)

    if snapshot.memory is not None and snapshot.memory.usage_pct > rules.memory_pressure_pct:
        return MemoryPressure(round(snapshot.memory.usage_pct, 2), snapshot.largest_relations)

    summary = result.summary()
    if d.total > 1e-9:
        summary += f"; missing capacity: {d.describe()}"
    return Unknown(summary)


def _build(
    kind: ProblemKind,
    result: IntegrityResult,
    snapshot: Snapshot,
    edges: list[int],
    d: Deficit,
) -> Problem:
    graph = result.graph
    ends = [graph.nodes[n] for i in edges for n in (graph.edges[i].source, graph.edges[i].target)]

    if kind is ProblemKind.HOTSPOT_CONGESTION:
        side = set(result.cut_off)
        parts = {n.index: n for n in ends if n.kind is NodeKind.PARTITION}
        named = {i: n for i, n in parts.items() if i in side} or parts
        # the partitions whose own edges carry the deficit, worst first
        lost: dict[int, float] = dict.fromkeys(named, 0.0)
        for i in edges:
            e = graph.edges[i]
            for end in (e.source, e.target):
                if end in lost:
                    lost[end] += d.by_edge[i]
        worst = max(lost.values())
        hot = sorted((named[i] for i, v in lost.items() if v >= 0.5 * worst), key=lambda n: n.name)
        multi_tenant = any(
            n.kind is NodeKind.PARTITION and n.attrs.get("tenant") is not None for n in graph.nodes
        )
        return HotspotCongestion(
            tuple(int(n.id) for n in hot),
            tuple(n.name for n in hot),
            round(max(float(n.attrs.get("load_ratio") or 0.0) for n in hot), 3),
            round(max(float(n.attrs.get("queue_depth") or 0.0) for n in hot), 3),
            tenant_of_partitions([n.attrs.get("tenant") for n in hot], multi_tenant),
        )

    if kind is ProblemKind.CENTROID_SKEW:
        # name the lists that carry the deficit, not every list with a latency figure
        worst = max(d.by_edge[i] for i in edges)
        lists = [
            graph.nodes[graph.edges[i].target]
            if graph.nodes[graph.edges[i].target].kind is NodeKind.CENTROID
            else graph.nodes[graph.edges[i].source]
            for i in edges
            if d.by_edge[i] >= 0.05 * worst
        ]
        indexes = sorted(
            {str(n.attrs.get("index_name")) for n in lists if n.attrs.get("index_name")}
        )
        return CentroidSkew(
            tuple(sorted(int(n.attrs.get("centroid_id", n.id)) for n in lists)),
            round(max(float(n.attrs.get("skew") or 0.0) for n in lists), 3),
            tuple(indexes),
        )

    if kind is ProblemKind.REPLICATION_LAG:
        names = sorted({n.name for n in ends if n.kind is NodeKind.REPLICA})
        reps = [r for r in snapshot.replicas if r.name in names]
        return ReplicationLag(
            tuple(r.pid for r in reps),
            tuple(names),
            max((r.lag_seconds or 0.0 for r in reps), default=0.0),
            max((r.lag_bytes or 0 for r in reps), default=0),
            max((r.unapplied_bytes or 0 for r in reps), default=0),
        )

    if kind is ProblemKind.MAINTENANCE_CONTENTION:
        jobs = {n.id: n for n in ends if n.kind is NodeKind.MAINTENANCE}
        return MaintenanceContention(
            tuple(sorted({str(n.attrs.get("job")) for n in jobs.values()})),
            tuple(sorted(int(pid) for pid in jobs)),
            sum(int(n.attrs.get("blocking") or 0) for n in jobs.values()),
        )

    fragmented = sorted(
        {n.index: n for n in ends if n.kind is NodeKind.INDEX and n.id.isdigit()}.values(),
        key=lambda n: -float(n.attrs.get("fragmentation_pct") or 0.0),
    )
    return IndexFragmentation(
        tuple(int(n.id) for n in fragmented),
        tuple(n.name for n in fragmented),
        float(fragmented[0].attrs.get("fragmentation_pct") or 0.0) if fragmented else 0.0,
    )


def problem_from_json(kind: str, details: dict[str, Any]) -> Problem:
    """Rebuild a problem from the journal (crash recovery needs it for rollback)."""
    cls: dict[str, type[Any]] = {
        c.kind.value: c
        for c in (
            HotspotCongestion,
            CentroidSkew,
            ReplicationLag,
            MaintenanceContention,
            IndexFragmentation,
            MemoryPressure,
            Unknown,
        )
    }
    target = cls[kind]
    fields = {
        k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
        for k, v in details.items()
    }
    problem: Problem = target(**fields)
    return problem
