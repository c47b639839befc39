"""Statistics-view queries -> Snapshot, one per collection per interval.

Reads the catalog and the cumulative statistics views only; never a row of a collection, so
`seq_scan` / `idx_scan` of the watched tables do not move. Relation sizes come from
`pg_class.relpages` rather than pg_relation_size(), and partitions from `pg_inherits` rather
than pg_partition_tree(): both of those take a lock on the relation, and the sampler must keep
working exactly when a maintenance job holds an exclusive lock -- that is what it has to see.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import anyio
import asyncpg

from ruvectord.config import CollectionConfig
from ruvectord.errors import CollectionError
from ruvectord.integrity.snapshot import (
    ActivityStats,
    CentroidStats,
    DatabaseStats,
    IndexStats,
    MaintenanceJob,
    MemoryStats,
    PartitionStats,
    ReplicaStats,
    Snapshot,
)
from ruvectord.postgres import ivf
from ruvectord.postgres.pool import APPLICATION_NAME, Database

VECTOR_METHODS = ("hnsw", "ivfflat")
MAINTENANCE_APPS = ("pg_cron", "pg_repack", "pg_squeeze", "pgagent", "ruvectord-maintenance")
_MAINTENANCE_SQL = re.compile(
    r"^\s*(vacuum|analy[sz]e|reindex|cluster|create\s+(?:unique\s+)?index|alter\s+table|"
    r"alter\s+index|lock|refresh\s+materialized\s+view|truncate)\b",
    re.IGNORECASE,
)
_LIST_BOUND = re.compile(r"^FOR VALUES IN \((.*)\)$", re.DOTALL)
_LITERAL = re.compile(r"'(?:[^']|'')*'|[^,\s]+")


@dataclass(frozen=True)
class Topology:
    """The collection's relations; re-read every sample (catalog only, cheap)."""

    root_oid: int
    partitions: dict[int, str]  # leaf oid -> qualified name
    index_owner: dict[int, int]  # any index oid on a leaf -> the leaf's oid
    tenant_by_partition: dict[int, str | None]
    collection_id: int | None

    @property
    def relation_oids(self) -> list[int]:
        return [self.root_oid, *self.partitions, *self.index_owner]


_ROOT = """
    SELECT cl.oid, cl.relkind::text AS relkind,
           (SELECT a.attnum FROM pg_attribute a
             WHERE a.attrelid = cl.oid AND a.attname = $3 AND NOT a.attisdropped
               AND a.attnum > 0) AS vector_attnum,
           (SELECT a.attnum FROM pg_attribute a
             WHERE a.attrelid = cl.oid AND a.attname = $4 AND NOT a.attisdropped
               AND a.attnum > 0) AS tenant_attnum,
           pt.partstrat::text AS partstrat, pt.partattrs::int2[] AS partattrs
      FROM pg_class cl
      JOIN pg_namespace n ON n.oid = cl.relnamespace
      LEFT JOIN pg_partitioned_table pt ON pt.partrelid = cl.oid
"""


class Sampler:
    def __init__(
        self,
        db: Database,
        collection: CollectionConfig,
        *,
        ivf_refresh_seconds: float = 300.0,
        ivf_max_pages: int = 20_000,
    ) -> None:
        self.db = db
        self.collection = collection
        self._bounds: dict[int, str | None] = {}
        self._has_cron: bool | None = None
        # IVFFlat list sizes from the index pages: read rarely, kept between readings
        self.ivf_refresh_seconds = ivf_refresh_seconds
        self.ivf_max_pages = ivf_max_pages
        self._ivf_readable: bool | None = None
        self._ivf: dict[int, tuple[datetime, tuple[int, ...]]] = {}
        self._ivf_tried: dict[int, datetime] = {}
        self.ivf_errors: dict[int, str] = {}  # index oid -> why its pages were not read

    async def sample(
        self, taken_at: datetime, collection_id: int | None, *, host_memory: bool = True
    ) -> Snapshot:
        async with self.db.acquire() as conn, conn.transaction(readonly=True):
            topo = await self._topology(conn, collection_id)
            partitions, largest = await self._partitions(conn, topo)
            indexes = await self._indexes(conn, topo)
            activity, jobs = await self._activity(conn, topo, partitions)
            replicas = await self._replicas(conn)
            database = await self._database(conn)
            meta = await conn.fetchrow(
                "SELECT pg_is_in_recovery() AS rec, current_setting('block_size')::int AS bs,"
                " current_setting('server_version_num')::int AS v"
            )
            assert meta is not None
            centroids, bad_rows = await self._centroids(conn, collection_id)
            ivf_lists = await self._ivf_lists(conn, indexes, taken_at, meta["bs"])
            centroids = ivf_lists + centroids
        memory = await read_memory() if host_memory else None
        return Snapshot(
            collection=self.collection.name,
            taken_at=taken_at,
            partitions=tuple(partitions),
            indexes=tuple(indexes),
            maintenance=tuple(jobs),
            replicas=tuple(replicas),
            centroids=tuple(centroids),
            activity=activity,
            database=database,
            memory=memory,
            largest_relations=tuple(largest),
            in_recovery=meta["rec"],
            server_version=meta["v"],
            block_size=meta["bs"],
            bad_centroid_rows=bad_rows,
        )

    # ------------------------------------------------------------------ topology

    async def _topology(self, conn: asyncpg.Connection, collection_id: int | None) -> Topology:
        c = self.collection
        # the catalog's exact spelling, from PostgreSQL's identifier rules (identifiers.py), the
        # same the SQL side uses (ruvector.collection_table); OIDs from here on
        root = await conn.fetchrow(
            _ROOT + "WHERE n.nspname = $1 AND cl.relname = $2",
            c.schema_name,
            c.table_name,
            c.vector_attname,
            c.tenant_attname,
        )
        if root is None:
            raise CollectionError(c.name, f"table {c.table} does not exist")
        if root["relkind"] not in ("r", "p"):
            raise CollectionError(c.name, f"{c.table} is not a table (relkind {root['relkind']})")
        if root["vector_attnum"] is None:
            raise CollectionError(c.name, f"column {c.vector_column!r} does not exist in {c.table}")
        if c.tenant_column and root["tenant_attnum"] is None:
            raise CollectionError(c.name, f"column {c.tenant_column!r} does not exist in {c.table}")
        rows = await conn.fetch(
            """
            WITH RECURSIVE tree(relid) AS (
                SELECT $1::oid
                UNION ALL
                SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid
            )
            SELECT cl.oid, format('%I.%I', n.nspname, cl.relname) AS name,
                   cl.relkind::text AS relkind
              FROM tree JOIN pg_class cl ON cl.oid = tree.relid
              JOIN pg_namespace n ON n.oid = cl.relnamespace
            """,
            root["oid"],
        )
        leaves = {r["oid"]: r["name"] for r in rows if r["relkind"] in ("r", "m")}
        if not leaves:
            raise CollectionError(c.name, f"{c.table} is partitioned but has no partitions")
        ix = await conn.fetch(
            "SELECT indexrelid, indrelid FROM pg_index WHERE indrelid = ANY($1::oid[])",
            list(leaves),
        )
        tenant_list = (
            c.tenant_column is not None
            and root["partstrat"] == "l"
            and list(root["partattrs"] or []) == [root["tenant_attnum"]]
        )
        tenants = await self._tenants(conn, leaves, tenant_list)
        return Topology(
            root["oid"],
            leaves,
            {r["indexrelid"]: r["indrelid"] for r in ix},
            tenants,
            collection_id,
        )

    async def _tenants(
        self, conn: asyncpg.Connection, leaves: dict[int, str], tenant_list: bool
    ) -> dict[int, str | None]:
        if not tenant_list:
            return dict.fromkeys(leaves)
        missing = [oid for oid in leaves if oid not in self._bounds]
        if missing:
            # pg_get_expr may lock the relation: read bounds once per new partition, and
            # tolerate a lock timeout (the label is cosmetic; it is retried next sample).
            try:
                async with conn.transaction():
                    rows = await conn.fetch(
                        "SELECT oid, pg_get_expr(relpartbound, oid) AS bound FROM pg_class "
                        "WHERE oid = ANY($1::oid[])",
                        missing,
                    )
                self._bounds.update({r["oid"]: r["bound"] for r in rows})
            except (asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError):
                pass
        return {oid: list_tenant(self._bounds.get(oid)) for oid in leaves}

    # ------------------------------------------------------------------ tables

    async def _partitions(
        self, conn: asyncpg.Connection, topo: Topology
    ) -> tuple[list[PartitionStats], list[tuple[str, int]]]:
        rows = await conn.fetch(
            """
            SELECT cl.oid,
                   coalesce(s.n_live_tup, 0) AS live, coalesce(s.n_dead_tup, 0) AS dead,
                   coalesce(s.n_tup_ins, 0) AS ins, coalesce(s.n_tup_upd, 0) AS upd,
                   coalesce(s.n_tup_del, 0) AS del, coalesce(s.seq_scan, 0) AS seq,
                   coalesce(s.idx_scan, 0) AS idx,
                   greatest(cl.relpages, 0)::bigint
                       * current_setting('block_size')::bigint AS tbytes,
                   coalesce((SELECT sum(greatest(ic.relpages, 0))::bigint
                               FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                              WHERE i.indrelid = cl.oid), 0)
                       * current_setting('block_size')::bigint AS ibytes
              FROM pg_class cl
              LEFT JOIN pg_stat_user_tables s ON s.relid = cl.oid
             WHERE cl.oid = ANY($1::oid[])
            """,
            list(topo.partitions),
        )
        locks = await conn.fetch(
            """
            SELECT l.pid, l.relation, l.granted, a.state
              FROM pg_locks l
              JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'relation' AND l.relation = ANY($1::oid[])
               AND l.pid <> pg_backend_pid()
            """,
            topo.relation_oids,
        )
        active: dict[int, set[int]] = defaultdict(set)
        waiting: dict[int, set[int]] = defaultdict(set)
        running: dict[int, set[int]] = defaultdict(set)  # pid -> partitions it works on
        waiters: set[int] = set()
        for lk in locks:
            part = self._owner(topo, lk["relation"])
            if not lk["granted"]:
                waiters.add(lk["pid"])
            if part is None:
                continue
            if not lk["granted"]:
                waiting[part].add(lk["pid"])
                active[part].add(lk["pid"])
            elif lk["state"] == "active":
                active[part].add(lk["pid"])
                running[lk["pid"]].add(part)
        # The routing queue: a statement working on k partitions at once (a search over the
        # whole collection) is one statement, 1/k on each; one waiting for a lock is queued
        # behind its blocker, whose dependency edge carries it.
        queue: dict[int, float] = defaultdict(float)
        for pid, parts in running.items():
            if pid in waiters:
                continue
            for part in parts:
                queue[part] += 1.0 / len(parts)
        out = [
            PartitionStats(
                oid=r["oid"],
                name=topo.partitions[r["oid"]],
                bound=self._bounds.get(r["oid"]),
                tenant=topo.tenant_by_partition.get(r["oid"]),
                live_tuples=r["live"],
                dead_tuples=r["dead"],
                inserts=r["ins"],
                updates=r["upd"],
                deletes=r["del"],
                seq_scans=r["seq"],
                idx_scans=r["idx"],
                table_bytes=r["tbytes"],
                index_bytes=r["ibytes"],
                active_backends=len(active.get(r["oid"], ())),
                waiting_backends=len(waiting.get(r["oid"], ())),
                queue=round(queue.get(r["oid"], 0.0), 6),
            )
            for r in rows
        ]
        largest = sorted(
            ((p.name, p.table_bytes + p.index_bytes) for p in out), key=lambda x: -x[1]
        )[:5]
        return out, largest

    @staticmethod
    def _owner(topo: Topology, relation: int) -> int | None:
        if relation in topo.partitions:
            return relation
        return topo.index_owner.get(relation)

    async def _indexes(self, conn: asyncpg.Connection, topo: Topology) -> list[IndexStats]:
        rows = await conn.fetch(
            """
            SELECT i.indexrelid AS oid, format('%I.%I', n.nspname, ic.relname) AS name,
                   i.indrelid AS part, am.amname AS method, i.indisvalid AS valid,
                   greatest(ic.relpages, 0)::bigint * current_setting('block_size')::bigint
                       AS bytes,
                   coalesce(ic.reloptions, '{}') AS options,
                   t.typname AS vector_type, nullif(a.atttypmod, -1) AS dims
              FROM pg_index i
              JOIN pg_class ic ON ic.oid = i.indexrelid
              JOIN pg_am am ON am.oid = ic.relam
              JOIN pg_namespace n ON n.oid = ic.relnamespace
              LEFT JOIN pg_attribute a ON a.attrelid = i.indexrelid AND a.attnum = 1
              LEFT JOIN pg_type t ON t.oid = a.atttypid
             WHERE i.indrelid = ANY($1::oid[]) AND am.amname = ANY($2::text[])
            """,
            list(topo.partitions),
            list(VECTOR_METHODS),
        )
        return [
            IndexStats(
                oid=r["oid"],
                name=r["name"],
                partition_oid=r["part"],
                method=r["method"],
                bytes=r["bytes"],
                valid=r["valid"],
                options=dict(o.split("=", 1) for o in r["options"] if "=" in o),
                vector_type=r["vector_type"],
                dims=r["dims"],
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ activity

    async def _activity(
        self, conn: asyncpg.Connection, topo: Topology, partitions: list[PartitionStats]
    ) -> tuple[ActivityStats, list[MaintenanceJob]]:
        rows = await conn.fetch(
            """
            SELECT a.pid, a.backend_type, a.state, a.application_name, a.wait_event_type,
                   left(a.query, 300) AS query,
                   extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::float8
                       AS running_seconds,
                   CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid)
                        ELSE '{}'::int[] END AS blocked_by,
                   (SELECT greatest(0, extract(epoch FROM clock_timestamp() - min(l.waitstart)))
                      FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)::float8
                       AS waited_seconds,
                   coalesce((SELECT array_agg(DISTINCT l.relation) FROM pg_locks l
                              WHERE l.pid = a.pid AND l.locktype = 'relation'
                                AND l.relation = ANY($1::oid[])), '{}') AS relations,
                   coalesce((SELECT bool_or(NOT l.granted) FROM pg_locks l
                              WHERE l.pid = a.pid AND l.locktype = 'relation'
                                AND l.relation = ANY($1::oid[])), false) AS waits_on_collection
              FROM pg_stat_activity a
             WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
            """,
            topo.relation_oids,
        )
        progress = await conn.fetch(
            """
            SELECT pid, relid, 'vacuum' AS kind, phase FROM pg_stat_progress_vacuum
            UNION ALL
            SELECT pid, relid, CASE WHEN command LIKE 'REINDEX%' THEN 'reindex'
                                    ELSE 'create_index' END, phase
              FROM pg_stat_progress_create_index
            UNION ALL
            SELECT pid, relid, lower(command), phase FROM pg_stat_progress_cluster
            UNION ALL
            SELECT pid, relid, 'analyze', phase FROM pg_stat_progress_analyze
            """
        )
        cron_pids = await self._cron_pids(conn)
        max_conn = await conn.fetchval("SELECT current_setting('max_connections')::int")

        by_pid = {r["pid"]: r for r in rows}
        part_set = set(topo.partitions)

        def touched(pid: int, relid: int | None = None) -> set[int]:
            found: set[int] = set()
            r = by_pid.get(pid)
            for rel in r["relations"] if r else []:
                owner = self._owner(topo, rel)
                if owner is not None:
                    found.add(owner)
            if relid is not None:
                if relid == topo.root_oid:
                    found |= part_set
                elif (owner := self._owner(topo, relid)) is not None:
                    found.add(owner)
            return found

        # who blocks whom, among backends waiting on the collection, and for how long
        blocking: dict[int, int] = defaultdict(int)
        blocked_seconds: dict[int, float] = defaultdict(float)
        for r in rows:
            if r["waits_on_collection"]:
                for blocker in r["blocked_by"]:
                    blocking[blocker] += 1
                    blocked_seconds[blocker] += r["waited_seconds"] or 0.0

        jobs: dict[int, MaintenanceJob] = {}

        def add(pid: int, kind: str, desc: str, parts: set[int]) -> None:
            if not parts or pid in jobs:
                return
            r = by_pid.get(pid)
            jobs[pid] = MaintenanceJob(
                pid=pid,
                kind=kind,
                description=desc[:200],
                partitions=tuple(sorted(parts)),
                blocking=blocking.get(pid, 0),
                running_seconds=r["running_seconds"] if r else None,
                blocked_seconds=round(blocked_seconds.get(pid, 0.0), 3),
            )

        for p in progress:
            add(p["pid"], p["kind"], f"{p['kind']}: {p['phase']}", touched(p["pid"], p["relid"]))
        for r in rows:
            pid = r["pid"]
            query = r["query"] or ""
            if r["application_name"] == APPLICATION_NAME:
                continue
            if r["backend_type"] == "autovacuum worker":
                add(pid, "autovacuum", query or "autovacuum", touched(pid))
            elif pid in cron_pids or r["application_name"] in MAINTENANCE_APPS:
                add(pid, "cron" if pid in cron_pids else r["application_name"], query, touched(pid))
            elif (m := _MAINTENANCE_SQL.match(query)) is not None:
                kind = "_".join(m.group(1).lower().split()[:2]).replace("analyse", "analyze")
                add(pid, kind, f"{r['state']}: {query}", touched(pid))
        # anything else that holds up writers on the collection is a dependency too
        for pid, count in blocking.items():
            if pid not in jobs and pid in by_pid and count:
                r = by_pid[pid]
                add(pid, "blocker", f"{r['state']}: {r['query'] or ''}", touched(pid))

        activity = ActivityStats(
            backends=len(rows),
            active=sum(1 for r in rows if r["state"] == "active"),
            waiting=sum(1 for r in rows if r["wait_event_type"] == "Lock"),
            max_connections=max_conn,
        )
        return activity, list(jobs.values())

    async def _cron_pids(self, conn: asyncpg.Connection) -> set[int]:
        if self._has_cron is None:
            self._has_cron = bool(
                await conn.fetchval("SELECT to_regclass('cron.job_run_details') IS NOT NULL")
            )
        if not self._has_cron:
            return set()
        rows = await conn.fetch(
            "SELECT job_pid FROM cron.job_run_details WHERE status = 'running' AND job_pid > 0"
        )
        return {r["job_pid"] for r in rows}

    # ------------------------------------------------------------------ server-wide

    async def _replicas(self, conn: asyncpg.Connection) -> list[ReplicaStats]:
        rows = await conn.fetch(
            """
            SELECT pid,
                   coalesce(nullif(application_name, ''), host(client_addr), 'pid ' || pid) AS name,
                   coalesce(state, 'unknown') AS state, coalesce(sync_state, 'async') AS sync,
                   extract(epoch FROM greatest(write_lag, flush_lag, replay_lag))::float8 AS lag_s,
                   CASE WHEN pg_is_in_recovery() OR replay_lsn IS NULL THEN NULL
                        ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END AS lag_b,
                   pg_wal_lsn_diff(flush_lsn, replay_lsn)::bigint AS unapplied_b
              FROM pg_stat_replication
            """
        )
        return [
            ReplicaStats(
                r["name"],
                r["pid"],
                r["state"],
                r["sync"],
                r["lag_s"],
                r["lag_b"],
                unapplied_bytes=r["unapplied_b"],
            )
            for r in rows
        ]

    async def _database(self, conn: asyncpg.Connection) -> DatabaseStats:
        r = await conn.fetchrow(
            """
            SELECT xact_commit, xact_rollback, deadlocks, conflicts, temp_files, temp_bytes
              FROM pg_stat_database WHERE datname = current_database()
            """
        )
        if r is None:
            return DatabaseStats(0, 0, 0, 0, 0, 0)
        return DatabaseStats(*(int(v or 0) for v in r.values()))

    async def _centroids(
        self, conn: asyncpg.Connection, collection_id: int | None
    ) -> tuple[list[CentroidStats], int]:
        """The application's list statistics, and how many of its rows were unusable.

        One bad row (a NaN, an infinite or negative figure) must not fail every sample:
        it is skipped and counted, and the monitor says so once.
        """
        if collection_id is None:
            return [], 0
        rows = await conn.fetch(
            "SELECT centroid_id, vector_count, latency_ms FROM ruvector.centroid_stats "
            "WHERE collection_id = $1",
            collection_id,
        )
        out, bad = [], 0
        for r in rows:
            count, latency = r["vector_count"], r["latency_ms"]
            if (
                count is None
                or count < 0
                or (latency is not None and (not math.isfinite(latency) or latency < 0))
            ):
                bad += 1
                continue
            out.append(CentroidStats(r["centroid_id"], count, latency))
        return out, bad

    async def _ivf_lists(
        self,
        conn: asyncpg.Connection,
        indexes: list[IndexStats],
        taken_at: datetime,
        block_size: int,
    ) -> list[CentroidStats]:
        """IVFFlat list sizes from the index pages, where this role may read them, rarely."""
        ivfs = [ix for ix in indexes if ix.method == "ivfflat" and ix.valid]
        if not ivfs:
            return []
        if self._ivf_readable is None:
            self._ivf_readable = await ivf.readable(conn)
        out: list[CentroidStats] = []
        live = {ix.oid for ix in ivfs}
        self._ivf = {oid: v for oid, v in self._ivf.items() if oid in live}
        self._ivf_tried = {oid: v for oid, v in self._ivf_tried.items() if oid in live}
        for ix in ivfs:
            cached = self._ivf.get(ix.oid)
            tried = self._ivf_tried.get(ix.oid)
            # a failed reading (pages not written out yet) is retried sooner than a good one
            wait = self.ivf_refresh_seconds if ix.oid not in self.ivf_errors else 30.0
            due = tried is None or (taken_at - tried).total_seconds() >= min(
                wait, self.ivf_refresh_seconds
            )
            if self._ivf_readable and due and ix.bytes <= self.ivf_max_pages * block_size:
                self._ivf_tried[ix.oid] = taken_at
                try:
                    async with conn.transaction():  # a savepoint: a failure spoils nothing
                        read = await ivf.read_lists(conn, ix.oid, self.ivf_max_pages)
                    cached = (taken_at, read.counts)
                    self._ivf[ix.oid] = cached
                    self.ivf_errors.pop(ix.oid, None)
                except asyncpg.InsufficientPrivilegeError as exc:
                    self._ivf_readable = False
                    self.ivf_errors[ix.oid] = str(exc)
                except (asyncpg.PostgresError, ivf.IvfReadError) as exc:
                    self.ivf_errors[ix.oid] = str(exc)
            if cached is not None:
                out += [CentroidStats(i, n, None, ix.oid) for i, n in enumerate(cached[1])]
        return out


def list_tenant(bound: str | None) -> str | None:
    """The one tenant a LIST partition holds, as text; None for a shared partition.

    `FOR VALUES IN ('acme')` -> acme, `IN (7)` -> 7. A DEFAULT partition, one listing several
    values (`IN ('a', 'b')`) or NULL holds tenants the statistics cannot tell apart: shared,
    counted in the aggregate of small tenants (integrity/tenants.py).
    """
    m = _LIST_BOUND.match(bound or "")
    if m is None:
        return None
    values: list[str] = _LITERAL.findall(m.group(1))
    if len(values) != 1 or values[0].upper() == "NULL":
        return None
    value = values[0]
    return value[1:-1].replace("''", "'") if value.startswith("'") else value


# --------------------------------------------------------------------------- host memory


async def read_memory(
    meminfo: Path = Path("/proc/meminfo"), cgroup_root: Path = Path("/sys/fs/cgroup")
) -> MemoryStats | None:
    """Host memory from /proc/meminfo, and cgroup v2 limits of this machine where present."""
    try:
        text = await anyio.Path(meminfo).read_text()
    except OSError:
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * 1024
    total = values.get("MemTotal", 0)
    available = values.get("MemAvailable", values.get("MemFree", 0))
    current = maximum = None
    try:
        current = int((await anyio.Path(cgroup_root / "memory.current").read_text()).strip())
        raw_max = (await anyio.Path(cgroup_root / "memory.max").read_text()).strip()
        maximum = None if raw_max == "max" else int(raw_max)
    except (OSError, ValueError):
        pass
    if not total:
        return None
    return MemoryStats(total, available, current, maximum)
