"""The contracted operational graph: a snapshot becomes ~10..1500 nodes and their edges.

Mincut never runs over vectors or HNSW neighbours, only over operational entities (spec
section 2). Each edge has a *capacity* in [0.01, 1] -- its health, by the spec's formulas --
and a structural *weight*: the share of its entity's connectivity it carries when healthy.

The invariant the weights keep, on every shape (a plain table, 2 or 256 partitions, with or
without indexes, IVF lists, replicas, jobs): **every entity's own cut -- the edges that say
how healthy it is -- weighs exactly 1, and no cut of the healthy graph weighs less.** A
partition's own edges are its routing edge and its ring links (1/2 + k * 1/(2k), or the
routing edge alone, weight 1, when it has no neighbours: a plain table); an index, a replica
or a job's hold on a partition is a leaf of weight 1 whatever it hangs from; an IVF index's lists
are cut off together, their routes weighted by their shares of its vectors. So the healthy
graph's minimum cut is 1, lambda_cut = mincut(weight * capacity) / mincut(weight) reads as
"the health of the weakest entity", and the same fault on one entity (capacity c) reads the
same lambda whatever the shape: how many neighbours an entity has changes how its weight is
spread, never its total. tests/unit/test_calibration.py checks this over generated shapes.

    gateway --routing (w 1/2, or 1 alone)--> partition <--link (w 1/2k)--> k ring neighbours
    gateway --centroid_route (w 1)--> vector index
    gateway --centroid_route (w: share of the index's vectors)--> list --(w 1)--> lists hub
    gateway --replication (w 1)--> replica
    partition --dependency (w 1)--> maintenance job (one leaf per partition it touches)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from ruvectord.config import Budgets
from ruvectord.integrity.snapshot import (
    CentroidStats,
    IndexStats,
    MaintenanceJob,
    Rates,
    Snapshot,
)

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


# Node and Edge are named tuples rather than frozen dataclasses: as immutable, and a graph of
# 64 partitions builds ~400 of them every sample at a third of the cost.
class Node(NamedTuple):
    index: int  # type: ignore[assignment]  # its place in the graph; shadows tuple.index()
    kind: NodeKind
    id: str
    name: str
    attrs: Mapping[str, Any] = MappingProxyType({})

    def ref(self) -> dict[str, str]:
        return {"kind": self.kind.value, "id": self.id, "name": self.name}


class Edge(NamedTuple):
    index: int  # type: ignore[assignment]  # its place in the graph; shadows tuple.index()
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


@functools.lru_cache(maxsize=64)
def ring_pairs(n: int, links: int) -> tuple[tuple[int, int], ...]:
    """Each of n partitions linked to its ceil(links/2) nearest neighbours on either side."""
    if n < 2:
        return ()
    span = min(-(-links // 2), n // 2)
    pairs: set[tuple[int, int]] = set()
    for i in range(n):
        for off in range(1, span + 1):
            j = (i + off) % n
            if i != j:
                pairs.add((min(i, j), max(i, j)))
    return tuple(sorted(pairs))


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
    gateway = b.node(
        NodeKind.GATEWAY,
        "primary",
        "primary",
        in_recovery=snapshot.in_recovery,
        error_rate=round(load.error_rate, 6),
    )
    # deadlocks and conflicts are database-wide: they scale every edge alike, so they lower
    # lambda by the same factor on every shape (spec: effective = capacity x (1 - errors))
    keep = 1.0 - load.error_rate
    errors = f", error rate {load.error_rate:.1%}" if load.error_rate > 0 else ""
    mean_ops = load.mean_ops

    partitions = sorted(snapshot.partitions, key=lambda p: p.name)
    p_index: dict[int, int] = {}
    queue_health: dict[int, float] = {}
    side: dict[int, tuple[float, str]] = {}  # a partition's health as its links see it
    for p in partitions:
        ops = load.partition_ops.get(p.oid, 0.0)
        hot, ratio = partition_health(ops, mean_ops, budgets)
        queue = p.queue_depth
        q = clamp(1.0 - queue / budgets.max_queue)
        queue_health[p.oid] = q
        if hot < q:
            side[p.oid] = (hot, f"{p.name} at {ratio:.1f}x mean load")
        elif q < 1.0:
            side[p.oid] = (q, f"{p.name} queue {_num(queue)}/{budgets.max_queue}")
        else:
            side[p.oid] = (1.0, "balanced")
        p_index[p.oid] = b.node(
            NodeKind.PARTITION,
            str(p.oid),
            p.name,
            ops_per_second=round(ops, 3),
            load_ratio=round(ratio, 3),
            queue_depth=round(queue, 3),
            waiting=p.waiting_backends,
            live_tuples=p.live_tuples,
            dead_tuples=p.dead_tuples,
            tenant=p.tenant,
        )

    pairs = ring_pairs(len(partitions), budgets.partition_links)
    # a partition's own cut is its routing edge plus its links: 1/2 + 1/2 with neighbours,
    # the routing edge alone (weight 1) without (a plain table)
    routing_weight = 0.5 if pairs else 1.0

    # routing: gateway -> partition, 1 - queue_depth / max_queue
    for p in partitions:
        queue = p.queue_depth
        reason = f"queue {_num(queue)}/{budgets.max_queue}"
        if p.waiting_backends:
            reason += f", {p.waiting_backends} waiting for locks"
        cap = queue_health[p.oid]
        if not pairs and side[p.oid][0] < cap:
            # alone, its routing edge is its whole cut, so it carries what its links would:
            # (queue + side) / 2, as with neighbours. Only a tenant's lone partition can be
            # hot here (its load is measured against the whole collection's mean); a plain
            # table is its own mean and never is.
            cap = (cap + side[p.oid][0]) / 2
            reason += f", {side[p.oid][1]}"
        b.edge(
            EdgeKind.ROUTING,
            gateway,
            p_index[p.oid],
            cap * keep,
            routing_weight,
            reason + errors,
        )

    # partition_link: ring neighbours; the weaker side (hot, or queued) lowers the link, so a
    # queue reads the same with neighbours as without
    if pairs:
        degree = max(1, _ring_degree(len(partitions), pairs))
        weight = 1.0 / (2 * degree)
        for i, j in pairs:
            pa, pb = partitions[i], partitions[j]
            (ha, ra), (hb, rb) = side[pa.oid], side[pb.oid]
            cap, reason = (ha, ra) if ha <= hb else (hb, rb)
            b.edge(
                EdgeKind.PARTITION_LINK,
                p_index[pa.oid],
                p_index[pb.oid],
                cap * keep,
                weight,
                reason + errors,
            )

    # vector indexes: gateway -> index, health from the share of its entries not live
    by_oid = {p.oid: p for p in partitions}
    index_nodes: dict[int, int] = {}
    for ix in sorted(snapshot.indexes, key=lambda i: i.name):
        part = by_oid.get(ix.partition_oid)
        if part is None:
            continue
        total = part.live_tuples + part.dead_tuples
        dead = part.dead_tuples / total if total else 0.0
        bloat = index_bloat(ix, part.live_tuples, snapshot.block_size)
        frag = max(dead, bloat or 0.0)
        bpt = ix.bytes / part.live_tuples if part.live_tuples else None
        node = b.node(
            NodeKind.INDEX,
            str(ix.oid),
            ix.name,
            method=ix.method,
            bytes=ix.bytes,
            bytes_per_live_tuple=round(bpt, 1) if bpt is not None else None,
            dead_tuple_pct=round(100 * dead, 2),
            bloat_pct=None if bloat is None else round(100 * bloat, 2),
            fragmentation_pct=round(100 * frag, 2),
            partition=part.name,
            valid=ix.valid,
        )
        index_nodes[ix.oid] = node
        cap = 1.0 - frag / budgets.fragmentation_budget
        if bloat is not None and bloat > dead:
            reason = f"{bloat:.0%} of the index holds no live row (size for {part.live_tuples})"
        else:
            reason = f"{dead:.0%} dead tuples not yet vacuumed"
        if not ix.valid:
            cap, reason = MIN_CAPACITY, "index is invalid (failed or in-progress build)"
        b.edge(EdgeKind.CENTROID_ROUTE, gateway, node, cap * keep, 1.0, reason + errors)

    _centroids(b, snapshot, budgets, gateway, keep, errors)

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
        b.edge(EdgeKind.REPLICATION, gateway, node, cap * keep, 1.0, reason + errors)

    # maintenance: one leaf per (job, partition it touches), weight 1 each. A single node
    # tied to m partitions would be a back road between them, and would make a queued
    # partition's cut depend on which jobs happen to touch it.
    for job in sorted(snapshot.maintenance, key=lambda j: j.pid):
        touched = [o for o in job.partitions if o in p_index]
        cap = job_health(job, budgets)
        if job.blocking:
            reason = f"blocks {job.blocking} backend(s), {job.blocked_seconds:.1f} s waited"
        else:
            reason = "not blocking"
        for oid in touched:
            node = b.node(
                NodeKind.MAINTENANCE,
                str(job.pid),
                f"{job.kind} (pid {job.pid})",
                job=job.kind,
                description=job.description,
                partition=by_oid[oid].name,
                partitions_touched=len(touched),
                blocking=job.blocking,
                blocked_seconds=round(job.blocked_seconds, 3),
                running_seconds=job.running_seconds,
            )
            b.edge(EdgeKind.DEPENDENCY, p_index[oid], node, cap * keep, 1.0, reason + errors)

    return b.done()


def job_health(job: MaintenanceJob, budgets: Budgets) -> float:
    """1 / (1 + backend-seconds waited on the job / lock_wait_budget_seconds).

    Graded by how many backends it holds up and for how long: one writer that waited a
    whole budget halves it, three that waited a budget each quarter it; a job that blocks
    nobody, or has only just started to, is healthy.
    """
    if not job.blocking:
        return 1.0
    return clamp(1.0 / (1.0 + max(0.0, job.blocked_seconds) / budgets.lock_wait_budget_seconds))


# --------------------------------------------------------------------------- index bloat

_MAXALIGN = 8
_PAGE_HEADER = 24  # MAXALIGN(SizeOfPageHeaderData)
_ITEM_ID = 4
_TID = 6
_HNSW_HEAPTIDS = 10
# the tightest a healthy index packs its pages; kept on the generous side so that a
# healthy index never reads as bloated (measured: HNSW and IVFFlat builds pack 97-99 %)
_FILL = 0.95


def _align(n: float) -> int:
    return int(-(-n // _MAXALIGN) * _MAXALIGN)


def vector_datum_bytes(vector_type: str | None, dims: int | None) -> int | None:
    """The on-disk size of one vector of this type (varlena header + dim + unused + data)."""
    if dims is None or dims <= 0:
        return None
    if vector_type == "vector":
        return 8 + 4 * dims
    if vector_type == "halfvec":
        return 8 + 2 * dims
    return None  # bit and sparsevec sizes depend on the data


def expected_index_bytes(ix: IndexStats, live: int, block_size: int = 8192) -> float | None:
    """How large a freshly built index of `live` rows would be, at most (pgvector 0.5+).

    HNSW (src/hnsw.h): per element one element tuple (72 bytes + the vector) and one
    neighbour tuple (4 + 6 * (level + 2) * m bytes, level geometric with P(level >= l) =
    m^-l), two line pointers; a meta page. IVFFlat (src/ivfflat.h): one index tuple (8 bytes
    + the vector) per row, a partly filled page per list, the list pages and a meta page.
    """
    datum = vector_datum_bytes(ix.vector_type, ix.dims)
    if datum is None or live < 0:
        return None
    usable = block_size - _PAGE_HEADER - _MAXALIGN  # minus the special space (8 bytes)
    if ix.method == "hnsw":
        m = _int_option(ix.options, "m", 16)
        if m < 2:
            return None
        pages = 1 + live / _hnsw_entries_per_page(m, datum, usable) + 1  # meta, last page
    elif ix.method == "ivfflat":
        lists = _int_option(ix.options, "lists", 100)
        tuple_bytes = _align(8 + datum) + _ITEM_ID
        per_page = max(1, int(usable / tuple_bytes))
        list_pages = -(-lists * (_align(8 + datum) + _ITEM_ID) // usable)
        pages = 1 + list_pages + live / per_page + lists  # each list may end half empty
    else:
        return None
    return pages * block_size


@functools.lru_cache(maxsize=256)
def _hnsw_entries_per_page(m: int, datum: int, usable: int) -> float:
    """HNSW entries a page holds; the same for every sample of an index, so kept."""
    element = _align(4 + _HNSW_HEAPTIDS * _TID + _TID + 2 + datum)
    neighbours = 0.0
    for level in range(12):
        p_level = m ** (-level) * (1 - 1 / m)
        neighbours += p_level * _align(4 + _TID * (level + 2) * m)
    per_entry = element + neighbours + 2 * _ITEM_ID
    # small entries pack to about _FILL; large ones lose what does not fit whole, about
    # half an entry per page (measured within 3 % for 16..1536 dimensions, m 8..32)
    return min(usable * _FILL / per_entry, max(1.0, usable / per_entry - 0.5))


def index_bloat(ix: IndexStats, live: int, block_size: int = 8192) -> float | None:
    """The share of the index that holds no live row: 1 - expected size / size.

    Unlike n_dead_tup, this survives page pruning (which frees dead heap tuples but leaves
    their index entries) and counts entries vacuum has freed but not given back. The size
    is pg_class.relpages, refreshed by VACUUM, ANALYZE and builds: an index only grows
    between those, so a stale size can only under-state bloat. None when unknown (no live
    rows counted, e.g. after a statistics reset; an unsupported type or method).
    """
    if live <= 0 or ix.bytes <= 0:
        return None
    expected = expected_index_bytes(ix, live, block_size)
    if expected is None:
        return None
    return max(0.0, 1.0 - expected / ix.bytes)


def _int_option(options: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(options.get(key, default))
    except ValueError:
        return default


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


@functools.lru_cache(maxsize=64)
def _ring_degree(n: int, pairs: tuple[tuple[int, int], ...]) -> int:
    deg = [0] * n
    for i, j in pairs:
        deg[i] += 1
        deg[j] += 1
    return max(deg)


def _centroids(
    b: _Builder, snapshot: Snapshot, budgets: Budgets, gateway: int, keep: float, errors: str
) -> None:
    """IVF lists: read from an IVFFlat index's pages, or reported by the application.

    The lists of one index (or the application's lists) hang together from a hub of their
    own (membership edges of weight 1), so the only cheap cut takes them all. Each list's
    route is weighted by its share of the group's vectors -- the share of probes that land
    on it -- so the group's cut weighs 1 and reads "how much of the traffic goes to
    overloaded lists, and how overloaded they are".
    """
    if not snapshot.centroids or budgets.max_centroids == 0:
        return
    # The busiest are the ones that can be skewed; a cap keeps the graph small.
    chosen = sorted(snapshot.centroids, key=lambda c: (-c.vector_count, c.centroid_id))
    chosen = chosen[: budgets.max_centroids]
    groups: dict[int | None, list[CentroidStats]] = {}
    for c in chosen:
        groups.setdefault(c.index_oid, []).append(c)
    every: dict[int | None, list[int]] = {}
    for c in snapshot.centroids:
        every.setdefault(c.index_oid, []).append(c.vector_count)
    names = {ix.oid: ix.name for ix in snapshot.indexes}
    for oid in sorted(groups, key=lambda o: (o is not None, o or 0)):
        members = groups[oid]
        counts = every[oid]
        mean = sum(counts) / len(counts) if counts else 0.0
        total = sum(c.vector_count for c in members)
        label = f"{names.get(oid, oid)} lists" if oid is not None else "centroid lists"
        hub = b.node(
            NodeKind.INDEX,
            f"lists:{oid}" if oid is not None else "centroids",
            label,
            method="ivf",
            source="index pages" if oid is not None else "centroid_stats",
        )
        for c in members:
            share = c.vector_count / total if total else 1.0 / len(members)
            skew = c.vector_count / mean if mean > 0 else 0.0
            cap = 1.0 / max(1.0, skew / budgets.hot_load_ratio)
            reason = f"{skew:.1f}x mean list size"
            if c.latency_ms is not None:
                by_latency = 1.0 - c.latency_ms / budgets.latency_budget_ms
                if by_latency < cap:
                    cap, reason = by_latency, f"latency {c.latency_ms:.0f} ms"
            node = b.node(
                NodeKind.CENTROID,
                f"{oid}:{c.centroid_id}" if oid is not None else str(c.centroid_id),
                f"list {c.centroid_id} of {names.get(oid, oid)}"
                if oid is not None
                else f"centroid {c.centroid_id}",
                centroid_id=c.centroid_id,
                index_oid=oid,
                index_name=names.get(oid) if oid is not None else None,
                vector_count=c.vector_count,
                skew=round(skew, 3),
                latency_ms=c.latency_ms,
            )
            b.edge(EdgeKind.CENTROID_ROUTE, gateway, node, cap * keep, share, reason + errors)
            b.edge(EdgeKind.CENTROID_ROUTE, node, hub, 1.0, 1.0, "list membership")
