"""The contracted operational graph: a snapshot becomes ~10..1500 nodes and their edges.

Mincut never runs over vectors or HNSW neighbours, only over operational entities (spec
section 2). Each edge has a *capacity* in [0.01, 1] -- its health, by the spec's formulas --
and a structural *weight*: the share of its endpoint's connectivity it carries when healthy.
The weights make every entity's healthy star cut worth 1.0 (a partition among 256 counts the
same as one among 4; a maintenance job touching 8 partitions the same as one touching 1), so
the normalised lambda_cut = mincut(weight * capacity) / mincut(weight) reads as "the health of
the weakest part of the system", and a transient leaf (an autovacuum worker, a replica) can
neither mask a hot partition nor change the scale.

    gateway --routing (w 1/2)--> partition <--partition_link (w 1/2k)--> k ring neighbours
    gateway --centroid_route (w 1)--> vector index
    gateway --centroid_route (w: its share of vectors)--> centroid --(w 1, membership)--> hub
    gateway --replication (w 1)--> replica
    partition --dependency (w 1/m)--> maintenance job touching m partitions
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ruvectord.config import Budgets
from ruvectord.integrity.snapshot import Rates, Snapshot

MIN_CAPACITY = 0.01


class NodeKind(StrEnum):
    GATEWAY = "gateway"
    PARTITION = "partition"
    CENTROID = "centroid"
    INDEX = "index"
    REPLICA = "replica"
    MAINTENANCE = "maintenance"


class EdgeKind(StrEnum):
    ROUTING = "routing"
    PARTITION_LINK = "partition_link"
    REPLICATION = "replication"
    DEPENDENCY = "dependency"
    CENTROID_ROUTE = "centroid_route"


@dataclass(frozen=True, slots=True)
class Node:
    index: int
    kind: NodeKind
    id: str
    name: str
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def ref(self) -> dict[str, str]:
        return {"kind": self.kind.value, "id": self.id, "name": self.name}


@dataclass(frozen=True, slots=True)
class Edge:
    index: int
    kind: EdgeKind
    source: int
    target: int
    capacity: float  # health in [0.01, 1], error rate applied
    weight: float  # structural weight: what the edge carries when healthy
    reason: str = ""  # why the capacity is what it is, in words

    @property
    def flow(self) -> float:
        return self.capacity * self.weight


@dataclass(frozen=True, slots=True)
class ContractedGraph:
    collection: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return [(e.source, e.target) for e in self.edges]

    @property
    def effective(self) -> list[float]:
        return [e.flow for e in self.edges]

    @property
    def unit(self) -> list[float]:
        return [e.weight for e in self.edges]

    def witness(self, edge_indices: tuple[int, ...]) -> list[dict[str, Any]]:
        """Witness edges as stored and logged: both ends, kind, capacity, flow, reason."""
        out = []
        for i in edge_indices:
            e = self.edges[i]
            out.append(
                {
                    "source": self.nodes[e.source].ref(),
                    "target": self.nodes[e.target].ref(),
                    "kind": e.kind.value,
                    "capacity": round(e.capacity, 6),
                    "flow": round(e.flow, 6),
                    "reason": e.reason,
                }
            )
        return out


def clamp(value: float) -> float:
    return min(1.0, max(MIN_CAPACITY, value))


def partition_health(ops: float, mean_ops: float, budgets: Budgets) -> tuple[float, float]:
    """(health, load ratio) of a partition: 1.0 unless it is both skewed and busy.

    Skew alone is no problem at 3 writes a second, and a busy but even load is the normal
    state of a healthy database, so the penalty needs both: the skew beyond
    `hot_load_ratio`, scaled by how close the partition runs to `hot_ops_per_second`.
    """
    if mean_ops <= 0 or ops <= 0:
        return 1.0, 0.0 if mean_ops <= 0 else ops / mean_ops
    ratio = ops / mean_ops
    excess = max(1.0, ratio / budgets.hot_load_ratio)
    intensity = min(1.0, ops / budgets.hot_ops_per_second)
    return clamp(1.0 / (1.0 + (excess - 1.0) * intensity)), ratio


def ring_pairs(n: int, links: int) -> list[tuple[int, int]]:
    """Each of n partitions linked to its ceil(links/2) nearest neighbours on either side."""
    if n < 2:
        return []
    span = min(-(-links // 2), n // 2)
    pairs: set[tuple[int, int]] = set()
    for i in range(n):
        for off in range(1, span + 1):
            j = (i + off) % n
            if i != j:
                pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


class _Builder:
    def __init__(self, collection: str) -> None:
        self.collection = collection
        self.nodes: list[Node] = []
        self.edges: list[Edge] = []

    def node(self, kind: NodeKind, id_: str, name: str, **attrs: Any) -> int:
        self.nodes.append(Node(len(self.nodes), kind, id_, name, attrs))
        return len(self.nodes) - 1

    def edge(
        self, kind: EdgeKind, a: int, b: int, capacity: float, weight: float, reason: str
    ) -> None:
        self.edges.append(Edge(len(self.edges), kind, a, b, clamp(capacity), weight, reason))

    def done(self) -> ContractedGraph:
        return ContractedGraph(self.collection, tuple(self.nodes), tuple(self.edges))


def build(snapshot: Snapshot, load: Rates, budgets: Budgets) -> ContractedGraph:
    """Snapshot + loads since the previous sample -> contracted graph."""
    b = _Builder(snapshot.collection)
    gateway = b.node(NodeKind.GATEWAY, "primary", "primary", in_recovery=snapshot.in_recovery)
    error = load.error_rate
    mean_ops = load.mean_ops

    partitions = sorted(snapshot.partitions, key=lambda p: p.name)
    p_index: dict[int, int] = {}
    health: dict[int, float] = {}
    for p in partitions:
        ops = load.partition_ops.get(p.oid, 0.0)
        h, ratio = partition_health(ops, mean_ops, budgets)
        health[p.oid] = h
        p_index[p.oid] = b.node(
            NodeKind.PARTITION,
            str(p.oid),
            p.name,
            ops_per_second=round(ops, 3),
            load_ratio=round(ratio, 3),
            queue_depth=p.queue_depth,
            waiting=p.waiting_backends,
            live_tuples=p.live_tuples,
            dead_tuples=p.dead_tuples,
            tenant=p.tenant,
        )

    # routing: gateway -> partition, 1 - queue_depth / max_queue
    for p in partitions:
        queue = p.queue_depth
        cap = (1.0 - queue / budgets.max_queue) * (1.0 - error)
        reason = f"queue {queue}/{budgets.max_queue}"
        if p.waiting_backends:
            reason += f", {p.waiting_backends} waiting for locks"
        if error > 0:
            reason += f", error rate {error:.1%}"
        b.edge(EdgeKind.ROUTING, gateway, p_index[p.oid], cap, 0.5, reason)

    # partition_link: ring neighbours; a hot side lowers the link
    pairs = ring_pairs(len(partitions), budgets.partition_links)
    if pairs:
        degree = max(1, _ring_degree(len(partitions), pairs))
        weight = 1.0 / (2 * degree)
        for i, j in pairs:
            pa, pb = partitions[i], partitions[j]
            ha, hb = health[pa.oid], health[pb.oid]
            hot = pa if ha <= hb else pb
            ratio = b.nodes[p_index[hot.oid]].attrs["load_ratio"]
            reason = f"{hot.name} at {ratio:.1f}x mean load" if min(ha, hb) < 1.0 else "balanced"
            b.edge(
                EdgeKind.PARTITION_LINK,
                p_index[pa.oid],
                p_index[pb.oid],
                min(ha, hb),
                weight,
                reason,
            )

    # vector indexes: gateway -> index, health from the partition's dead-tuple fraction
    by_oid = {p.oid: p for p in partitions}
    for ix in sorted(snapshot.indexes, key=lambda i: i.name):
        part = by_oid.get(ix.partition_oid)
        if part is None:
            continue
        total = part.live_tuples + part.dead_tuples
        frag = part.dead_tuples / total if total else 0.0
        bpt = ix.bytes / part.live_tuples if part.live_tuples else None
        node = b.node(
            NodeKind.INDEX,
            str(ix.oid),
            ix.name,
            method=ix.method,
            bytes=ix.bytes,
            bytes_per_live_tuple=round(bpt, 1) if bpt is not None else None,
            fragmentation_pct=round(100 * frag, 2),
            partition=part.name,
            valid=ix.valid,
        )
        cap = 1.0 - frag / budgets.fragmentation_budget
        reason = f"{frag:.0%} dead tuples not yet vacuumed"
        if not ix.valid:
            cap, reason = MIN_CAPACITY, "index is invalid (failed or in-progress build)"
        b.edge(EdgeKind.CENTROID_ROUTE, gateway, node, cap, 1.0, reason)

    _centroids(b, snapshot, budgets, gateway)

    for r in sorted(snapshot.replicas, key=lambda r: r.name):
        by_time = (r.lag_seconds or 0.0) / budgets.lag_budget_seconds
        by_bytes = (r.lag_bytes or 0) / budgets.lag_budget_bytes
        cap = 1.0 - max(by_time, by_bytes)
        reason = f"lag {r.lag_seconds or 0:.1f} s, {r.lag_bytes or 0} bytes"
        if r.state != "streaming":
            cap, reason = MIN_CAPACITY, f"replica is {r.state}, not streaming"
        node = b.node(
            NodeKind.REPLICA,
            r.name,
            r.name,
            state=r.state,
            sync_state=r.sync_state,
            lag_seconds=r.lag_seconds,
            lag_bytes=r.lag_bytes,
        )
        b.edge(EdgeKind.REPLICATION, gateway, node, cap, 1.0, reason)

    for job in sorted(snapshot.maintenance, key=lambda j: j.pid):
        touched = [p_index[o] for o in job.partitions if o in p_index]
        if not touched:
            continue
        node = b.node(
            NodeKind.MAINTENANCE,
            str(job.pid),
            f"{job.kind} (pid {job.pid})",
            job=job.kind,
            description=job.description,
            blocking=job.blocking,
            running_seconds=job.running_seconds,
        )
        cap = 0.1 if job.blocking else 1.0
        reason = f"blocks {job.blocking} backend(s)" if job.blocking else "not blocking"
        for t in touched:
            b.edge(EdgeKind.DEPENDENCY, t, node, cap, 1.0 / len(touched), reason)

    return b.done()


def _ring_degree(n: int, pairs: list[tuple[int, int]]) -> int:
    deg = [0] * n
    for i, j in pairs:
        deg[i] += 1
        deg[j] += 1
    return max(deg)


def _centroids(b: _Builder, snapshot: Snapshot, budgets: Budgets, gateway: int) -> None:
    """IVF lists / cluster buckets, when the application reports them (centroid_stats)."""
    if not snapshot.centroids or budgets.max_centroids == 0:
        return
    # The busiest are the ones that can be skewed; a cap keeps the graph small.
    chosen = sorted(snapshot.centroids, key=lambda c: (-c.vector_count, c.centroid_id))
    chosen = chosen[: budgets.max_centroids]
    counts = [c.vector_count for c in snapshot.centroids]
    mean = sum(counts) / len(counts) if counts else 0.0
    # A hub of its own: the lists hang together (membership edges of weight 1), so the only
    # cheap cut takes them all. Each list's route is weighted by its share of the vectors --
    # the share of probes that land on it -- so the cut reads "how much of the traffic goes
    # to overloaded lists, and how overloaded they are".
    hub = b.node(NodeKind.INDEX, "centroids", "centroid lists", method="ivf")
    total = sum(c.vector_count for c in chosen)
    for c in chosen:
        share = c.vector_count / total if total else 1.0 / len(chosen)
        skew = c.vector_count / mean if mean > 0 else 0.0
        cap = 1.0 / max(1.0, skew / budgets.hot_load_ratio)
        reason = f"{skew:.1f}x mean list size"
        if c.latency_ms is not None:
            by_latency = 1.0 - c.latency_ms / budgets.latency_budget_ms
            if by_latency < cap:
                cap, reason = by_latency, f"latency {c.latency_ms:.0f} ms"
        node = b.node(
            NodeKind.CENTROID,
            str(c.centroid_id),
            f"centroid {c.centroid_id}",
            vector_count=c.vector_count,
            skew=round(skew, 3),
            latency_ms=c.latency_ms,
        )
        b.edge(EdgeKind.CENTROID_ROUTE, gateway, node, cap, share, reason)
        b.edge(EdgeKind.CENTROID_ROUTE, node, hub, 1.0, 1.0, "list membership")
