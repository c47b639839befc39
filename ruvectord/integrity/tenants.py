"""Per-tenant integrity: which partitions are whose, who gets a state, each scope's graph.

What can be observed: the statistics views see partitions, never tenants. So a tenant is
visible where it has partitions of its own -- the collection LIST-partitioned by its tenant
column, one tenant value per partition (the sampler labels those). A DEFAULT partition, one
listing several values, or NULL, is *shared*: the tenants in it cannot be told apart.

Scopes. The `top` busiest tenants (smoothed operations per second over their partitions) each
get a scope of their own; every other partition -- the shared ones and those of the tenants
below the top -- is one aggregate scope, `OTHER`. A tenant that is degraded keeps its place
(its state must be able to recover where it was raised), and a tracked tenant is displaced
only by one clearly busier (`STICKY`), so scopes and their metric series do not flap.

Each scope's contracted graph is the collection's builder over the scope's part of the
snapshot: its partitions, the vector indexes and IVF lists on them, the maintenance jobs'
holds on them, and what every tenant shares -- the replicas and the database-wide error rate.
Loads are measured against the whole collection's mean partition (the collection's `Rates`),
so a tenant's partition reads in its own graph exactly as in the collection's, and the
calibration invariant holds per scope: a healthy scope reads 1.0, one entity at capacity c
reads c. A fault in one tenant's partitions is in no other tenant's graph.

Pure: values in, values out (tests/unit/test_tenants.py).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace

from ruvectord.config import Budgets
from ruvectord.integrity.graph import ContractedGraph, build
from ruvectord.integrity.snapshot import PartitionStats, Rates, Snapshot

OTHER = "(other)"  # the aggregate scope: shared partitions and the tenants below the top
STICKY = 1.25  # a tracked tenant is displaced only by one at least this much busier
SMOOTHING = 0.5  # weight of the newest sample in a tenant's smoothed load


def by_tenant(snapshot: Snapshot) -> dict[str | None, list[PartitionStats]]:
    """Partitions by the tenant they hold alone; None: the shared ones."""
    out: dict[str | None, list[PartitionStats]] = {}
    for p in snapshot.partitions:
        out.setdefault(p.tenant, []).append(p)
    return out


def is_multi_tenant(snapshot: Snapshot) -> bool:
    return any(p.tenant is not None for p in snapshot.partitions)


def tenant_loads(snapshot: Snapshot, load: Rates) -> dict[str, float]:
    """Operations per second of each tenant with partitions of its own, over this sample."""
    out: dict[str, float] = {}
    for p in snapshot.partitions:
        if p.tenant is not None:
            out[p.tenant] = out.get(p.tenant, 0.0) + load.partition_ops.get(p.oid, 0.0)
    return out


def smooth(previous: Mapping[str, float], current: Mapping[str, float]) -> dict[str, float]:
    """Exponentially smoothed loads; a tenant no longer present is dropped."""
    return {t: SMOOTHING * v + (1 - SMOOTHING) * previous.get(t, v) for t, v in current.items()}


def choose(
    loads: Mapping[str, float],
    tracked: Collection[str],
    degraded: Collection[str],
    top: int,
) -> tuple[str, ...]:
    """The tenants with a scope of their own, busiest first.

    Degraded tracked tenants first (a state is never dropped while it is raised, unless more
    than `top` are), then by load with the incumbents' bonus, then by name."""

    def score(t: str) -> float:
        return loads[t] * (STICKY if t in tracked else 1.0)

    ranked = sorted(loads, key=lambda t: (not (t in degraded and t in tracked), -score(t), t))
    return tuple(ranked[: max(0, top)])


def scopes(snapshot: Snapshot, tracked: Collection[str]) -> dict[str, frozenset[int]]:
    """Scope -> its partitions' oids: each tracked tenant present, then OTHER (if any left)."""
    mine: dict[str, set[int]] = {}
    rest: set[int] = set()
    wanted = set(tracked)
    for p in snapshot.partitions:
        if p.tenant is not None and p.tenant in wanted:
            mine.setdefault(p.tenant, set()).add(p.oid)
        else:
            rest.add(p.oid)
    out = {t: frozenset(mine[t]) for t in tracked if t in mine}
    if rest:
        out[OTHER] = frozenset(rest)
    return out


def scope_snapshot(snapshot: Snapshot, partitions: Collection[int]) -> Snapshot:
    """The part of a snapshot one scope owns, plus what every scope shares.

    Kept: the scope's partitions, the indexes on them, the IVF lists read from those indexes,
    maintenance jobs' holds on them; replicas, activity, database counters (the error rate)
    and memory are shared. Lists the application reports in ruvector.centroid_stats belong to
    no partition, so they stay in the collection's graph only.
    """
    keep = set(partitions)
    indexes = tuple(ix for ix in snapshot.indexes if ix.partition_oid in keep)
    index_oids = {ix.oid for ix in indexes}
    jobs = tuple(
        replace(job, partitions=tuple(o for o in job.partitions if o in keep))
        for job in snapshot.maintenance
        if any(o in keep for o in job.partitions)
    )
    return replace(
        snapshot,
        partitions=tuple(p for p in snapshot.partitions if p.oid in keep),
        indexes=indexes,
        maintenance=jobs,
        centroids=tuple(
            c for c in snapshot.centroids if c.index_oid is not None and c.index_oid in index_oids
        ),
        largest_relations=(),
    )


def scope_graphs(
    snapshot: Snapshot,
    load: Rates,
    budgets: Budgets,
    tracked: Collection[str],
    parts: Mapping[str, Collection[int]] | None = None,
) -> dict[str, ContractedGraph]:
    """Each scope's contracted graph, by the collection's builder and the collection's loads
    (`parts`: the scopes' partitions, where the caller has them already)."""
    if parts is None:
        parts = scopes(snapshot, tracked)
    return {
        scope: build(scope_snapshot(snapshot, oids), load, budgets) for scope, oids in parts.items()
    }


def tenant_of_partitions(tenants: Collection[str | None], multi_tenant: bool) -> str | None:
    """The one scope a problem confined to these partitions' tenants belongs to.

    A single tenant: that tenant. Only shared partitions (a DEFAULT partition, one of several
    values) in a collection that has tenants: OTHER. Anything else (several tenants, a
    collection without tenants): None, the whole collection."""
    found = set(tenants)
    if not multi_tenant or len(found) != 1:
        return None
    (only,) = found
    return OTHER if only is None else only
