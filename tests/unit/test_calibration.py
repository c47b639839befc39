"""lambda_cut is calibrated by construction: the same fault reads the same on every shape.

The invariant (integrity/graph.py, README "The contracted graph"): every entity's own cut
weighs exactly 1 and no cut of the healthy graph weighs less, so a healthy graph reads 1.0
and a fault that leaves one entity at capacity c reads c -- on a plain table, on 2, 8 or 256
partitions, with or without indexes, IVF lists, replicas and maintenance jobs beside it.
Hypothesis generates the shapes; each property is checked against the entity's own formula.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruvectord.config import Budgets
from ruvectord.integrity.evaluate import evaluate
from ruvectord.integrity.graph import EdgeKind, build, partition_health
from ruvectord.integrity.snapshot import (
    CentroidStats,
    IndexStats,
    MaintenanceJob,
    PartitionStats,
    ReplicaStats,
    Snapshot,
    rates,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BUDGETS = Budgets()
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Shape:
    """A collection's topology: how many partitions and what hangs off them."""

    partitions: int  # 1 = a plain table
    replicas: int = 0
    indexes_per_partition: int = 0  # HNSW indexes on every partition
    ivf_lists: tuple[int, ...] = ()  # list count of an IVFFlat index on each of the first ones
    app_lists: int = 0  # lists the application reports in centroid_stats
    jobs: tuple[tuple[int, ...], ...] = ()  # healthy maintenance jobs: the partitions each touches
    links: int = 4


def _partition(i: int, ops: int, **extra: object) -> PartitionStats:
    p = PartitionStats(
        oid=1000 + i,
        name=f"public.items_p{i:03d}",
        bound=None,
        tenant=None,
        live_tuples=10_000,
        dead_tuples=0,
        inserts=ops,
        updates=0,
        deletes=0,
        seq_scans=0,
        idx_scans=0,
        table_bytes=8192 * 100,
        index_bytes=8192 * 50,
        active_backends=0,
        waiting_backends=0,
    )
    return replace(p, **extra)  # type: ignore[arg-type]


def snapshots(shape: Shape, ops: dict[int, int] | None = None) -> tuple[Snapshot, Snapshot]:
    """Healthy snapshots one second apart (even load of 100 ops/s), with the shape's entities."""
    n = shape.partitions
    ops = ops or {}
    indexes = [
        IndexStats(5000 + 10 * i + k, f"public.items_p{i:03d}_idx{k}", 1000 + i, "hnsw", 0, True)
        for i in range(n)
        for k in range(shape.indexes_per_partition)
    ]
    centroids: list[CentroidStats] = []
    for j, lists in enumerate(shape.ivf_lists):
        oid = 9000 + j
        indexes.append(IndexStats(oid, f"public.items_ivf{j}", 1000 + j % n, "ivfflat", 0, True))
        centroids += [CentroidStats(c, 500, None, oid) for c in range(lists)]
    centroids += [CentroidStats(c, 500, None) for c in range(shape.app_lists)]
    jobs = tuple(
        MaintenanceJob(100 + j, "autovacuum", "autovacuum", tuple(1000 + p for p in parts), 0)
        for j, parts in enumerate(shape.jobs)
    )
    replicas = tuple(
        ReplicaStats(f"standby{r}", 50 + r, "streaming", "async", 0.0, 0)
        for r in range(shape.replicas)
    )
    before = Snapshot("items", T0, tuple(_partition(i, 0) for i in range(n)))
    after = Snapshot(
        "items",
        T0 + timedelta(seconds=1),
        tuple(_partition(i, ops.get(i, 100)) for i in range(n)),
        indexes=tuple(indexes),
        maintenance=jobs,
        replicas=replicas,
        centroids=tuple(centroids),
    )
    return before, after


def lam(before: Snapshot, after: Snapshot, budgets: Budgets = BUDGETS) -> float:
    return evaluate(build(after, rates(before, after), budgets), lambda2=False).lambda_cut


@st.composite
def shapes(draw: st.DrawFn, max_partitions: int = 24) -> Shape:
    n = draw(st.integers(1, max_partitions))
    job_parts = st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True)
    return Shape(
        partitions=n,
        replicas=draw(st.integers(0, 3)),
        indexes_per_partition=draw(st.integers(0, 2)),
        ivf_lists=tuple(draw(st.lists(st.integers(1, 12), max_size=3))),
        app_lists=draw(st.sampled_from([0, 0, 1, 7])),
        jobs=tuple(tuple(sorted(j)) for j in draw(st.lists(job_parts, max_size=3))),
        links=draw(st.integers(1, 8)),
    )


# --------------------------------------------------------------------------- faults
# Each fault: (shape, severity in [0, 1]) -> snapshots with exactly one entity degraded,
# and the lambda its own formula gives. Every shape gets the entity the fault needs.

Fault = Callable[[Shape, float], tuple[Snapshot, Snapshot, float]]


def fragmented_index(shape: Shape, severity: float) -> tuple[Snapshot, Snapshot, float]:
    """One HNSW index, `severity` of its partition's row versions dead (up to 59 %)."""
    before, after = snapshots(shape)
    dead_share = 0.59 * severity
    live = 10_000
    dead = round(live * dead_share / (1 - dead_share))
    parts = list(after.partitions)
    parts[0] = replace(parts[0], live_tuples=live, dead_tuples=dead)
    ix = IndexStats(7777, "public.items_fragmented_idx", parts[0].oid, "hnsw", 0, True)
    after = replace(after, partitions=tuple(parts), indexes=(*after.indexes, ix))
    frag = dead / (live + dead)
    return before, after, 1 - frag / BUDGETS.fragmentation_budget


def lagging_replica(shape: Shape, severity: float) -> tuple[Snapshot, Snapshot, float]:
    before, after = snapshots(shape)
    lag = 0.99 * severity * BUDGETS.lag_budget_seconds
    rep = ReplicaStats("lagging", 77, "streaming", "async", lag, 0)
    after = replace(after, replicas=(*after.replicas, rep))
    return before, after, max(0.01, 1 - lag / BUDGETS.lag_budget_seconds)


def blocking_job(shape: Shape, severity: float) -> tuple[Snapshot, Snapshot, float]:
    """A job on the first partitions (as many as exist, up to 3) that holds up 4 writers."""
    before, after = snapshots(shape)
    waited = 200.0 * severity
    touched = tuple(1000 + i for i in range(min(3, shape.partitions)))
    job = MaintenanceJob(4242, "reindex", "REINDEX", touched, 4, 12.0, waited)
    after = replace(after, maintenance=(*after.maintenance, job))
    return before, after, 1 / (1 + waited / BUDGETS.lock_wait_budget_seconds)


def queued_partition(shape: Shape, severity: float) -> tuple[Snapshot, Snapshot, float]:
    before, after = snapshots(shape)
    queue = round(0.99 * severity * BUDGETS.max_queue)
    parts = list(after.partitions)
    parts[0] = replace(parts[0], active_backends=queue)
    after = replace(after, partitions=tuple(parts))
    return before, after, max(0.01, 1 - queue / BUDGETS.max_queue)


def skewed_lists(shape: Shape, severity: float) -> tuple[Snapshot, Snapshot, float]:
    """An IVFFlat index of 10 lists, 3 of them holding (1 + 20 * severity) x the others."""
    before, after = snapshots(shape)
    big = round(100 * (1 + 20 * severity))
    counts = [big] * 3 + [100] * 7
    lists = tuple(CentroidStats(c, n, None, 8888) for c, n in enumerate(counts))
    ix = IndexStats(8888, "public.items_skewed_ivf", after.partitions[0].oid, "ivfflat", 0, True)
    after = replace(after, indexes=(*after.indexes, ix), centroids=(*after.centroids, *lists))
    mean = sum(counts) / len(counts)
    expected = sum(n / sum(counts) / max(1.0, n / mean / BUDGETS.hot_load_ratio) for n in counts)
    return before, after, expected


FAULTS: dict[str, Fault] = {
    "fragmented index": fragmented_index,
    "lagging replica": lagging_replica,
    "blocking job": blocking_job,
    "queued partition": queued_partition,
    "skewed IVF lists": skewed_lists,
}


@settings(max_examples=150, deadline=None)
@given(shape=shapes())
def test_a_healthy_graph_reads_one_on_every_shape(shape: Shape) -> None:
    before, after = snapshots(shape)
    g = build(
        after, rates(before, after), BUDGETS.model_copy(update={"partition_links": shape.links})
    )
    assert all(e.capacity == 1.0 for e in g.edges)
    result = evaluate(g, lambda2=False)
    assert result.cut.unit == pytest.approx(1.0, abs=TOLERANCE)
    assert result.lambda_cut == pytest.approx(1.0, abs=TOLERANCE)


@settings(max_examples=60, deadline=None)
@given(
    shape=shapes(),
    fault=st.sampled_from(sorted(FAULTS)),
    severity=st.floats(0.0, 1.0),
)
def test_one_entity_at_capacity_c_reads_c_on_every_shape(
    shape: Shape, fault: str, severity: float
) -> None:
    before, after, expected = FAULTS[fault](shape, severity)
    budgets = BUDGETS.model_copy(update={"partition_links": shape.links})
    assert lam(before, after, budgets) == pytest.approx(expected, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    shape=shapes(),
    fault=st.sampled_from(sorted(FAULTS)),
    severities=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=5),
)
def test_lambda_is_monotone_in_the_faults_severity(
    shape: Shape, fault: str, severities: list[float]
) -> None:
    readings = [lam(*FAULTS[fault](shape, s)[:2]) for s in sorted(severities)]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(readings)), readings


PLAIN, EIGHT, WIDE = Shape(1), Shape(8, indexes_per_partition=1), Shape(256)
WITH_EVERYTHING = Shape(8, replicas=2, indexes_per_partition=1, ivf_lists=(10,), jobs=((0, 1),))


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_the_issues_shapes_agree(fault: str) -> None:
    """The issue's measurement, repeated: plain, 8 and 256 partitions, with and without
    replicas; e.g. a third of the rows dead read CRITICAL partitioned but 0.88 plain."""
    for severity in (0.1, 0.33, 0.6, 0.9):
        readings = [lam(*FAULTS[fault](s, severity)[:2]) for s in (PLAIN, EIGHT, WIDE)]
        readings.append(lam(*FAULTS[fault](WITH_EVERYTHING, severity)[:2]))
        assert max(readings) - min(readings) < 1e-6, (fault, severity, readings)


@pytest.mark.parametrize("n", [9, 16, 64, 256])
def test_a_hot_partition_reads_the_same_with_8_or_256_neighbours(n: int) -> None:
    """Same skew (8x the mean) at the same intensity: half its cut is its links."""
    background = 20
    ratio = 8.0
    hot_ops = round(ratio * (n - 1) * background / (n - ratio))
    before, after = snapshots(Shape(n), ops={i: background for i in range(1, n)} | {0: hot_ops})
    load = rates(before, after)
    health, measured = partition_health(hot_ops, load.mean_ops, BUDGETS)
    assert measured == pytest.approx(ratio, rel=0.02)
    g = build(after, load, BUDGETS)
    result = evaluate(g, lambda2=False)
    assert result.lambda_cut == pytest.approx(0.5 + 0.5 * health, abs=1e-9)
    kinds = {g.edges[i].kind for i in result.witness_indices}
    assert kinds == {EdgeKind.PARTITION_LINK, EdgeKind.ROUTING}


def test_collection_wide_searches_count_once() -> None:
    """Twenty searches that each lock all 8 partitions: 20/8 on each, not 20 on each."""
    before, after = snapshots(Shape(8))
    spread = tuple(replace(p, active_backends=20, queue=20 / 8) for p in after.partitions)
    assert lam(before, replace(after, partitions=spread)) == pytest.approx(1 - 2.5 / 32)
    counted_everywhere = tuple(replace(p, active_backends=20) for p in after.partitions)
    assert lam(before, replace(after, partitions=counted_everywhere)) == pytest.approx(1 - 20 / 32)
