"""What one sample of a collection holds: values read from catalog and statistics views.

The sampler (postgres/sampler.py) fills these; everything downstream is pure. Counters are
cumulative as PostgreSQL reports them; `rates` turns two snapshots into per-second loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PartitionStats:
    oid: int
    name: str  # schema-qualified, quoted only where needed
    bound: str | None  # partition bound expression; None for a plain table
    tenant: str | None  # tenant value when the collection is partitioned by its tenant column
    live_tuples: int
    dead_tuples: int
    inserts: int  # cumulative pg_stat_user_tables counters from here on
    updates: int
    deletes: int
    seq_scans: int
    idx_scans: int
    table_bytes: int
    index_bytes: int
    active_backends: int  # backends running a statement that holds or awaits a lock on it
    waiting_backends: int  # of those, waiting for a lock
    # The routing queue as the sampler measured it: running backends, one that holds locks on
    # k partitions at once (a collection-wide search) counting 1/k on each, and backends
    # waiting for a lock left out (their blocker's dependency edge carries them). None when
    # not measured (synthetic snapshots): then every active backend counts.
    queue: float | None = None

    @property
    def queue_depth(self) -> float:
        return self.active_backends if self.queue is None else self.queue

    @property
    def operations(self) -> int:
        return self.inserts + self.updates + self.deletes + self.seq_scans + self.idx_scans


@dataclass(frozen=True, slots=True)
class IndexStats:
    oid: int
    name: str
    partition_oid: int
    method: str  # hnsw | ivfflat
    bytes: int  # pg_class.relpages x block size: as of the last VACUUM, ANALYZE or build
    valid: bool
    options: Mapping[str, str] = field(default_factory=dict)
    vector_type: str | None = None  # the indexed column's type: vector, halfvec, ...
    dims: int | None = None  # its declared dimensions; None when the type has no typmod


@dataclass(frozen=True, slots=True)
class MaintenanceJob:
    pid: int
    kind: str  # autovacuum, vacuum, analyze, create_index, reindex, cluster, lock, cron, blocker
    description: str  # a short human description (command, phase)
    partitions: tuple[int, ...]  # oids of the collection's partitions it touches
    blocking: int  # backends waiting on a lock it holds
    running_seconds: float | None = None
    blocked_seconds: float = 0.0  # summed over those backends: how long each has waited


@dataclass(frozen=True, slots=True)
class ReplicaStats:
    name: str  # application_name, or the client address
    pid: int
    state: str  # streaming, catchup, backup, startup, stopping
    sync_state: str
    lag_seconds: float | None
    lag_bytes: int | None  # WAL the replica has not replayed (current position - replay)
    # of which the replica already holds (flushed - replayed): the replica has the WAL but
    # does not apply it, so slowing the primary's writes would not help
    unapplied_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class CentroidStats:
    centroid_id: int  # the list number within its index, or the application's id
    vector_count: int
    latency_ms: float | None
    # the IVFFlat index the list belongs to when read from its pages; None for lists the
    # application reported in ruvector.centroid_stats
    index_oid: int | None = None


@dataclass(frozen=True, slots=True)
class ActivityStats:
    backends: int
    active: int
    waiting: int  # any backend waiting for a heavyweight lock
    max_connections: int


@dataclass(frozen=True, slots=True)
class DatabaseStats:
    xact_commit: int
    xact_rollback: int
    deadlocks: int
    conflicts: int
    temp_files: int
    temp_bytes: int


@dataclass(frozen=True, slots=True)
class MemoryStats:
    total_bytes: int
    available_bytes: int
    cgroup_current: int | None = None
    cgroup_max: int | None = None

    @property
    def usage_pct(self) -> float:
        host = 100.0 * (1 - self.available_bytes / self.total_bytes) if self.total_bytes else 0.0
        if self.cgroup_current is not None and self.cgroup_max:
            return max(host, 100.0 * self.cgroup_current / self.cgroup_max)
        return host


@dataclass(frozen=True, slots=True)
class Snapshot:
    collection: str
    taken_at: datetime  # from the injected clock
    partitions: tuple[PartitionStats, ...]
    indexes: tuple[IndexStats, ...] = ()
    maintenance: tuple[MaintenanceJob, ...] = ()
    replicas: tuple[ReplicaStats, ...] = ()
    centroids: tuple[CentroidStats, ...] = ()
    activity: ActivityStats = ActivityStats(0, 0, 0, 100)
    database: DatabaseStats = DatabaseStats(0, 0, 0, 0, 0, 0)
    memory: MemoryStats | None = None
    largest_relations: tuple[tuple[str, int], ...] = ()  # (name, bytes), largest first
    in_recovery: bool = False
    server_version: int = 0
    block_size: int = 8192
    bad_centroid_rows: int = 0  # centroid_stats rows skipped: NaN, infinite or negative values


@dataclass(frozen=True, slots=True)
class Rates:
    """Per-second activity between two snapshots of the same collection."""

    seconds: float
    partition_ops: Mapping[int, float]  # oid -> operations per second
    error_rate: float  # (deadlocks + conflicts) / transactions, database-wide
    temp_bytes_per_second: float
    # oid -> operations counted between the two samples (>= 0): what partition_ops is
    # divided from, kept so a replay frame stores exact integers instead of floats
    operations: Mapping[int, int] = field(default_factory=dict)

    @classmethod
    def over(
        cls, seconds: float, operations: Mapping[int, int], error_rate: float, temp: float
    ) -> Rates:
        """Loads from operation counts over `seconds` (none when no time passed)."""
        if seconds <= 0:
            return cls(0.0, dict.fromkeys(operations, 0.0), 0.0, 0.0, dict.fromkeys(operations, 0))
        ops = {oid: n / seconds for oid, n in operations.items()}
        return cls(seconds, ops, error_rate, temp, dict(operations))

    @property
    def mean_ops(self) -> float:
        values = list(self.partition_ops.values())
        return sum(values) / len(values) if values else 0.0


def rates(previous: Snapshot | None, current: Snapshot) -> Rates:
    """Loads between two samples; the first sample (no previous) has no load yet."""
    none = {p.oid: 0 for p in current.partitions}
    if previous is None:
        return Rates.over(0.0, none, 0.0, 0.0)
    seconds = (current.taken_at - previous.taken_at).total_seconds()
    if seconds <= 0:
        return Rates.over(0.0, none, 0.0, 0.0)
    before = {p.oid: p.operations for p in previous.partitions}
    counts = {}
    for p in current.partitions:
        # a partition that is new, or whose counters were reset, starts from zero
        counts[p.oid] = max(0, p.operations - before.get(p.oid, p.operations))
    db0, db1 = previous.database, current.database
    xacts = (db1.xact_commit + db1.xact_rollback) - (db0.xact_commit + db0.xact_rollback)
    errors = (db1.deadlocks + db1.conflicts) - (db0.deadlocks + db0.conflicts)
    error_rate = min(1.0, max(0.0, errors / xacts)) if xacts > 0 else 0.0
    temp = max(0, db1.temp_bytes - db0.temp_bytes) / seconds
    return Rates.over(seconds, counts, error_rate, temp)
