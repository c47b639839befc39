"""Per-tenant integrity, pure: each scope's graph is calibrated, and isolated from the others.

The collection's invariant (tests/unit/test_calibration.py) holds per scope: a healthy scope
reads 1.0 and one entity at capacity c reads c, in its own tenant's graph exactly as in the
collection's; a fault in one tenant's partitions reads 1.0 in every other scope; a fault that
every tenant shares (a lagging replica) reads c in all of them. Hypothesis generates the
tenancies: tenants of 1 to 4 partitions, shared partitions, replicas, indexes, healthy jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ruvectord.config import Budgets, ClassifierConfig, CollectionConfig
from ruvectord.healing.problems import HotspotCongestion, classify
from ruvectord.integrity.evaluate import evaluate
from ruvectord.integrity.graph import ContractedGraph, EdgeKind, build, partition_health
from ruvectord.integrity.snapshot import (
    IndexStats,
    MaintenanceJob,
    PartitionStats,
    ReplicaStats,
    Snapshot,
    rates,
)
from ruvectord.integrity.tenants import (
    OTHER,
    choose,
    scope_graphs,
    scopes,
    smooth,
    tenant_loads,
    tenant_of_partitions,
)
from ruvectord.metrics import Metrics
from ruvectord.postgres.sampler import list_tenant

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BUDGETS = Budgets()


@dataclass(frozen=True)
class Tenancy:
    """A LIST-by-tenant collection: partitions per tenant, shared ones, what hangs off them."""

    tenants: tuple[int, ...]  # partitions of tenant "t0", "t1", ...
    shared: int = 0  # a DEFAULT partition and multi-value ones: no tenant label
    replicas: int = 0
    indexes: bool = False  # an HNSW index on every partition
    jobs: tuple[tuple[int, ...], ...] = ()  # healthy jobs: the partition positions each touches
    links: int = 4

    @property
    def owners(self) -> list[str | None]:
        """The tenant of each partition, in order: tenants' partitions, then the shared."""
        out: list[str | None] = []
        for t, n in enumerate(self.tenants):
            out += [f"t{t}"] * n
        return out + [None] * self.shared

    def budgets(self) -> Budgets:
        return BUDGETS.model_copy(update={"partition_links": self.links})


def _partition(i: int, tenant: str | None, ops: int, **extra: object) -> PartitionStats:
    p = PartitionStats(
        oid=1000 + i,
        name=f"public.items_p{i:03d}",
        bound=None,
        tenant=tenant,
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


def snapshots(shape: Tenancy, ops: dict[int, int] | None = None) -> tuple[Snapshot, Snapshot]:
    """Healthy snapshots one second apart, an even 100 ops/s on every partition."""
    ops = ops or {}
    owners = shape.owners
    n = len(owners)
    indexes = tuple(
        IndexStats(5000 + i, f"public.items_p{i:03d}_idx", 1000 + i, "hnsw", 0, True)
        for i in range(n)
        if shape.indexes
    )
    jobs = tuple(
        MaintenanceJob(100 + j, "autovacuum", "autovacuum", tuple(1000 + p for p in parts), 0)
        for j, parts in enumerate(shape.jobs)
    )
    replicas = tuple(
        ReplicaStats(f"standby{r}", 50 + r, "streaming", "async", 0.0, 0)
        for r in range(shape.replicas)
    )
    before = Snapshot("items", T0, tuple(_partition(i, owners[i], 0) for i in range(n)))
    after = Snapshot(
        "items",
        T0 + timedelta(seconds=1),
        tuple(_partition(i, owners[i], ops.get(i, 100)) for i in range(n)),
        indexes=indexes,
        maintenance=jobs,
        replicas=replicas,
    )
    return before, after


def read(graph: ContractedGraph) -> float:
    return evaluate(graph, lambda2=False).lambda_cut


def readings(
    shape: Tenancy, before: Snapshot, after: Snapshot, tracked: list[str]
) -> tuple[float, dict[str, float]]:
    """The collection's lambda and each scope's."""
    load = rates(before, after)
    collection = read(build(after, load, shape.budgets()))
    graphs = scope_graphs(after, load, shape.budgets(), tracked)
    return collection, {scope: read(g) for scope, g in graphs.items()}


@st.composite
def tenancies(draw: st.DrawFn) -> Tenancy:
    tenants = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=6)))
    shared = draw(st.integers(0, 3))
    n = sum(tenants) + shared
    job_parts = st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True)
    return Tenancy(
        tenants=tenants,
        shared=shared,
        replicas=draw(st.integers(0, 2)),
        indexes=draw(st.booleans()),
        jobs=tuple(tuple(sorted(j)) for j in draw(st.lists(job_parts, max_size=2))),
        links=draw(st.integers(1, 8)),
    )


@st.composite
def tracked_sets(draw: st.DrawFn, shape: Tenancy) -> list[str]:
    names = [f"t{t}" for t in range(len(shape.tenants))]
    return draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))


# --------------------------------------------------------------------------- faults
# (shape, position of the faulty partition, severity) -> snapshots with exactly that
# partition's entity degraded, and the lambda its own formula gives.

Fault = Callable[[Tenancy, int, float], tuple[Snapshot, Snapshot, float]]


def queued(shape: Tenancy, at: int, severity: float) -> tuple[Snapshot, Snapshot, float]:
    before, after = snapshots(shape)
    queue = round(0.99 * severity * BUDGETS.max_queue)
    parts = list(after.partitions)
    parts[at] = replace(parts[at], active_backends=queue)
    return before, replace(after, partitions=tuple(parts)), max(0.01, 1 - queue / 32)


def hot(shape: Tenancy, at: int, severity: float) -> tuple[Snapshot, Snapshot, float]:
    """A write burst on one partition: up to 40x the others' load, well past hot_ops."""
    ops = round(100 * (1 + 39 * severity))
    before, after = snapshots(shape, {at: ops})
    health, _ = partition_health(ops, rates(before, after).mean_ops, BUDGETS)
    return before, after, 0.5 + 0.5 * health  # half a partition's cut is its links


def fragmented(shape: Tenancy, at: int, severity: float) -> tuple[Snapshot, Snapshot, float]:
    before, after = snapshots(shape)
    live = 10_000
    dead = round(live * 0.59 * severity / (1 - 0.59 * severity))
    parts = list(after.partitions)
    parts[at] = replace(parts[at], dead_tuples=dead)
    ix = IndexStats(7777, "public.items_frag_idx", parts[at].oid, "hnsw", 0, True)
    after = replace(after, partitions=tuple(parts), indexes=(*after.indexes, ix))
    return before, after, 1 - dead / (live + dead) / BUDGETS.fragmentation_budget


def blocking(shape: Tenancy, at: int, severity: float) -> tuple[Snapshot, Snapshot, float]:
    before, after = snapshots(shape)
    waited = 200.0 * severity
    job = MaintenanceJob(4242, "reindex", "REINDEX", (1000 + at,), 4, 12.0, waited)
    after = replace(after, maintenance=(*after.maintenance, job))
    return before, after, 1 / (1 + waited / BUDGETS.lock_wait_budget_seconds)


FAULTS: dict[str, Fault] = {
    "queued partition": queued,
    "hot partition": hot,
    "fragmented index": fragmented,
    "blocking job": blocking,
}


# --------------------------------------------------------------------------- calibration


@settings(max_examples=120, deadline=None)
@given(data=st.data(), shape=tenancies())
def test_every_scope_of_a_healthy_collection_reads_one(data: st.DataObject, shape: Tenancy) -> None:
    tracked = data.draw(tracked_sets(shape))
    before, after = snapshots(shape)
    collection, scoped = readings(shape, before, after, tracked)
    assert collection == pytest.approx(1.0, abs=1e-9)
    assert set(scoped) == set(tracked) | ({OTHER} if _has_rest(shape, tracked) else set())
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in scoped.values()), scoped


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    shape=tenancies(),
    fault=st.sampled_from(sorted(FAULTS)),
    severity=st.floats(0.0, 1.0),
)
def test_a_fault_reads_its_capacity_in_its_scope_and_one_in_every_other(
    data: st.DataObject, shape: Tenancy, fault: str, severity: float
) -> None:
    tracked = data.draw(tracked_sets(shape))
    owners = shape.owners
    at = data.draw(st.integers(0, len(owners) - 1))
    before, after, expected = FAULTS[fault](shape, at, severity)
    collection, scoped = readings(shape, before, after, tracked)
    label = owners[at]
    owner = label if label is not None and label in tracked else OTHER
    assert collection == pytest.approx(expected, abs=1e-6)
    assert scoped[owner] == pytest.approx(expected, abs=1e-6), (owner, scoped)
    for scope, value in scoped.items():
        if scope != owner:
            assert value == pytest.approx(1.0, abs=1e-9), (scope, scoped)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), shape=tenancies(), severity=st.floats(0.0, 1.0))
def test_a_fault_every_tenant_shares_reads_its_capacity_in_every_scope(
    data: st.DataObject, shape: Tenancy, severity: float
) -> None:
    tracked = data.draw(tracked_sets(shape))
    before, after = snapshots(shape)
    lag = 0.99 * severity * BUDGETS.lag_budget_seconds
    after = replace(
        after, replicas=(*after.replicas, ReplicaStats("lagging", 7, "streaming", "async", lag, 0))
    )
    expected = max(0.01, 1 - lag / BUDGETS.lag_budget_seconds)
    collection, scoped = readings(shape, before, after, tracked)
    assert collection == pytest.approx(expected, abs=1e-6)
    assert all(v == pytest.approx(expected, abs=1e-6) for v in scoped.values()), scoped


@pytest.mark.parametrize("partitions", [1, 2, 5])
def test_a_burst_reads_the_same_whether_its_tenant_has_one_partition_or_several(
    partitions: int,
) -> None:
    """A lone partition's routing edge carries what its links would: (queue + side) / 2."""
    shape = Tenancy(tenants=(partitions, 1, 1, 1), shared=1)
    before, after, expected = hot(shape, 0, 0.8)
    load = rates(before, after)
    graphs = scope_graphs(after, load, BUDGETS, ["t0", "t1", "t2", "t3"])
    result = evaluate(graphs["t0"], lambda2=False)
    assert result.lambda_cut == pytest.approx(expected, abs=1e-9)
    assert expected < 0.8
    kinds = {graphs["t0"].edges[i].kind for i in result.witness_indices}
    assert kinds == (
        {EdgeKind.ROUTING} if partitions == 1 else {EdgeKind.ROUTING, EdgeKind.PARTITION_LINK}
    )


def test_a_plain_table_is_its_own_mean_and_never_hot() -> None:
    """The lone-partition rule changes nothing where there is no tenant: one partition."""
    before, after = snapshots(Tenancy(tenants=(), shared=1), {0: 100_000})
    assert read(build(after, rates(before, after), BUDGETS)) == 1.0


def _has_rest(shape: Tenancy, tracked: list[str]) -> bool:
    return any(o is None or o not in tracked for o in shape.owners)


# --------------------------------------------------------------------------- scopes


@settings(max_examples=100, deadline=None)
@given(data=st.data(), shape=tenancies())
def test_every_partition_is_in_exactly_one_scope(data: st.DataObject, shape: Tenancy) -> None:
    tracked = data.draw(tracked_sets(shape))
    _, after = snapshots(shape)
    found = scopes(after, tracked)
    oids = [o for part in found.values() for o in part]
    assert sorted(oids) == sorted(p.oid for p in after.partitions)
    for scope, part in found.items():
        labels = {p.tenant for p in after.partitions if p.oid in part}
        if scope != OTHER:
            assert labels == {scope}
        else:
            assert not labels & set(tracked)


def test_the_busiest_tenants_are_tracked_and_the_incumbents_are_sticky() -> None:
    loads = {"a": 100.0, "b": 90.0, "c": 50.0, "d": 10.0}
    assert choose(loads, (), (), 2) == ("a", "b")
    # c is tracked: b must be a quarter busier to displace it
    assert choose(loads | {"b": 60.0}, ("a", "c"), (), 2) == ("a", "c")
    assert choose(loads | {"b": 63.0}, ("a", "c"), (), 2) == ("a", "b")
    # a degraded tenant keeps its place however quiet it gets
    assert choose(loads, ("a", "d"), ("d",), 2) == ("d", "a")
    # degraded but not tracked (never had a state): no privilege
    assert choose(loads, ("a", "b"), ("d",), 2) == ("a", "b")
    assert choose(loads, (), (), 10) == ("a", "b", "c", "d")
    assert choose({}, (), (), 3) == ()


def test_loads_are_smoothed_per_tenant_and_shared_partitions_are_nobodys() -> None:
    shape = Tenancy(tenants=(2, 1), shared=1)
    before, after = snapshots(shape, {0: 100, 1: 300, 2: 50, 3: 1000})
    loads = tenant_loads(after, rates(before, after))
    assert loads == {"t0": 400.0, "t1": 50.0}
    assert smooth({"t0": 0.0, "gone": 5.0}, loads) == {"t0": 200.0, "t1": 50.0}


def test_a_problem_belongs_to_one_tenant_only_when_every_partition_does() -> None:
    assert tenant_of_partitions(["t1"], True) == "t1"
    assert tenant_of_partitions(["t1", "t1"], True) == "t1"
    assert tenant_of_partitions(["t1", "t2"], True) is None
    assert tenant_of_partitions([None], True) == OTHER
    assert tenant_of_partitions([None, "t1"], True) is None
    assert tenant_of_partitions([None], False) is None
    assert tenant_of_partitions([], True) is None


def test_the_classifier_names_the_tenant_of_a_hot_partition() -> None:
    shape = Tenancy(tenants=(1, 1, 1, 1), shared=2)
    for at, tenant in ((2, "t2"), (5, OTHER)):
        before, after, _ = hot(shape, at, 1.0)
        result = evaluate(build(after, rates(before, after), BUDGETS), lambda2=False)
        problem = classify(result, after, ClassifierConfig())
        assert isinstance(problem, HotspotCongestion)
        assert problem.tenant == tenant, problem
        assert f"(tenant {tenant})" in problem.describe()


@pytest.mark.parametrize(
    ("bound", "tenant"),
    [
        ("FOR VALUES IN ('acme')", "acme"),
        ("FOR VALUES IN ('it''s')", "it's"),
        ("FOR VALUES IN ('b,c')", "b,c"),
        ("FOR VALUES IN (7)", "7"),
        ("FOR VALUES IN ('-1')", "-1"),
        ("FOR VALUES IN ('x\\y')", "x\\y"),
        ("FOR VALUES IN ('a', 'b')", None),
        ("FOR VALUES IN (NULL)", None),
        ("DEFAULT", None),
        ("FOR VALUES FROM (0) TO (10)", None),
        (None, None),
    ],
)
def test_a_partition_holds_a_tenant_alone_only_with_one_list_value(
    bound: str | None, tenant: str | None
) -> None:
    assert list_tenant(bound) == tenant


# --------------------------------------------------------------------------- metrics, config


def test_a_tenants_series_go_when_it_leaves_and_all_go_with_the_collection() -> None:
    m = Metrics()
    m.declare_collection("items", [])
    for tenant in ("a", "b", OTHER):
        m.set_tenant("items", tenant, 0.9, "normal", 12.0)
        m.set_tenant_throttle("items", tenant, "insert", 0)
    m.set_tenant("other-collection", "a", 1.0, "stress", 1.0)
    m.forget_tenant("items", "a")
    text = m.render().decode()
    assert 'collection="items",tenant="a"' not in text
    assert 'ruvector_integrity_tenant_state{collection="items",tenant="b"} 0.0' in text
    assert 'ruvector_integrity_tenant_state{collection="items",tenant="(other)"} 0.0' in text
    m.forget_collection("items", [])
    text = m.render().decode()
    assert 'collection="items"' not in text.replace("ruvectord_info", "")
    assert 'ruvector_integrity_tenant_state{collection="other-collection",tenant="a"} 1.0' in text


def test_tenants_needs_a_tenant_column() -> None:
    base = {"name": "items", "table": "public.items", "vector_column": "v"}
    assert CollectionConfig.model_validate(base).tenants.top == 10
    ok = CollectionConfig.model_validate({**base, "tenant_column": "t", "tenants": {"top": 3}})
    assert ok.tenants.top == 3
    with pytest.raises(ValidationError, match="tenants needs tenant_column"):
        CollectionConfig.model_validate({**base, "tenants": {"top": 3}})
    for top in (0, 101):
        with pytest.raises(ValidationError, match="top"):
            CollectionConfig.model_validate({**base, "tenant_column": "t", "tenants": {"top": top}})


def test_placement_never_moves_rows_between_tenants() -> None:
    base = {"name": "items", "table": "public.items", "vector_column": "v", "tenant_column": "t"}
    with pytest.raises(ValidationError, match="would move rows between tenants"):
        CollectionConfig.model_validate({**base, "placement": {"column": "t"}})
    ok = CollectionConfig.model_validate({**base, "placement": {"column": "shard"}})
    assert ok.placement is not None
