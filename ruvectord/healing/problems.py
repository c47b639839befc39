"""Problem classes and the classifier: witness edges + snapshot -> what is wrong.

The rules are the self-healing design's, in its order, each threshold configurable; a class
fires when its count is strictly above the threshold:

1. partition_link witness edges > 3      -> HotspotCongestion
2. centroid nodes among the witnesses > 5 -> CentroidSkew
3. any replication witness edge           -> ReplicationLag
4. dependency witness edges > 2           -> MaintenanceContention
5. memory usage > 85 %                    -> MemoryPressure
6. index fragmentation > 30 %             -> IndexFragmentation
7. otherwise                              -> Unknown (needs a human)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from ruvectord.config import ClassifierConfig
from ruvectord.integrity.evaluate import IntegrityResult
from ruvectord.integrity.graph import EdgeKind, NodeKind
from ruvectord.integrity.snapshot import Snapshot


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

    def describe(self) -> str:
        return (
            f"hot partition {', '.join(self.partition_names)} at {self.load_ratio:.1f}x mean load"
        )


@dataclass(frozen=True, slots=True)
class CentroidSkew(_Problem):
    kind = ProblemKind.CENTROID_SKEW
    centroid_ids: tuple[int, ...]
    skew_factor: float

    def describe(self) -> str:
        return f"{len(self.centroid_ids)} skewed centroid lists (up to {self.skew_factor:.1f}x)"


@dataclass(frozen=True, slots=True)
class ReplicationLag(_Problem):
    kind = ProblemKind.REPLICATION_LAG
    replica_ids: tuple[int, ...]  # walsender pids
    replica_names: tuple[str, ...]
    lag_seconds: float
    lag_bytes: int

    def describe(self) -> str:
        return (
            f"replica {', '.join(self.replica_names)} lagging {self.lag_seconds:.1f} s / "
            f"{self.lag_bytes} bytes"
        )


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


def classify(result: IntegrityResult, snapshot: Snapshot, rules: ClassifierConfig) -> Problem:
    graph = result.graph
    # only weak edges say something ("multiple partition links weak -> hotspot"); a healthy
    # graph's min cut still has witnesses, and they explain nothing
    witness = [graph.edges[i] for i in result.witness_indices if graph.edges[i].capacity < 1.0]
    edge_kinds = Counter(e.kind for e in witness)
    ends = {n for e in witness for n in (e.source, e.target)}
    nodes = [graph.nodes[i] for i in sorted(ends)]
    node_kinds = Counter(n.kind for n in nodes)

    if edge_kinds[EdgeKind.PARTITION_LINK] > rules.hotspot_partition_links:
        side = set(result.cut_side)
        linked = [
            graph.nodes[i]
            for e in witness
            if e.kind is EdgeKind.PARTITION_LINK
            for i in (e.source, e.target)
        ]
        candidates = {n.index: n for n in linked if n.index in side} or {n.index: n for n in linked}
        top = max(float(n.attrs.get("load_ratio") or 0.0) for n in candidates.values())
        hot = sorted(
            (n for n in candidates.values() if float(n.attrs.get("load_ratio") or 0.0) >= top),
            key=lambda n: n.name,
        )
        return HotspotCongestion(
            tuple(int(n.id) for n in hot), tuple(n.name for n in hot), round(top, 3)
        )

    if node_kinds[NodeKind.CENTROID] > rules.skew_centroids:
        cents = [n for n in nodes if n.kind is NodeKind.CENTROID]
        skews = {int(n.id): float(n.attrs.get("skew") or 0.0) for n in cents}
        worst = max(skews.values())
        skewed = tuple(sorted(cid for cid, s in skews.items() if s > 1.0)) or tuple(sorted(skews))
        return CentroidSkew(skewed, round(worst, 3))

    if edge_kinds[EdgeKind.REPLICATION] > 0:
        names = sorted(n.name for n in nodes if n.kind is NodeKind.REPLICA)
        reps = [r for r in snapshot.replicas if r.name in names]
        return ReplicationLag(
            tuple(r.pid for r in reps),
            tuple(names),
            max((r.lag_seconds or 0.0 for r in reps), default=0.0),
            max((r.lag_bytes or 0 for r in reps), default=0),
        )

    if edge_kinds[EdgeKind.DEPENDENCY] > rules.contention_dependencies:
        jobs = [n for n in nodes if n.kind is NodeKind.MAINTENANCE]
        return MaintenanceContention(
            tuple(sorted({str(n.attrs.get("job")) for n in jobs})),
            tuple(sorted(int(n.id) for n in jobs)),
            sum(int(n.attrs.get("blocking") or 0) for n in jobs),
        )

    if snapshot.memory is not None and snapshot.memory.usage_pct > rules.memory_pressure_pct:
        return MemoryPressure(round(snapshot.memory.usage_pct, 2), snapshot.largest_relations)

    fragmented = [
        n
        for n in graph.nodes
        if n.kind is NodeKind.INDEX
        and float(n.attrs.get("fragmentation_pct") or 0.0) > rules.fragmentation_pct
    ]
    if fragmented:
        fragmented.sort(key=lambda n: -float(n.attrs["fragmentation_pct"]))
        return IndexFragmentation(
            tuple(int(n.id) for n in fragmented),
            tuple(n.name for n in fragmented),
            float(fragmented[0].attrs["fragmentation_pct"]),
        )

    return Unknown(result.summary())


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
