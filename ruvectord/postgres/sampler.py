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
from typing import Any

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


# One statement for the collection's relations: the table, its leaves (itself, when plain)
# with their statistics, every index's OID on each leaf (to attribute locks) and its vector
# indexes. Statistics through the pg_stat_get_* functions pg_stat_user_tables is built on,
# without the view's other thirty columns and its join of every table's indexes.
_RELATIONS = """
    WITH RECURSIVE root AS (
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
         WHERE n.nspname = $1 AND cl.relname = $2
    ), tree(relid) AS (
        SELECT oid FROM root
        UNION ALL
        SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid
    ), leaves AS (
        SELECT cl.oid, format('%I.%I', n.nspname, cl.relname) AS name, cl.relpages
          FROM tree JOIN pg_class cl ON cl.oid = tree.relid
          JOIN pg_namespace n ON n.oid = cl.relnamespace
         WHERE cl.relkind IN ('r', 'm')
    )
    SELECT root.*, l.oid AS leaf, l.name,
           pg_stat_get_live_tuples(l.oid) AS live, pg_stat_get_dead_tuples(l.oid) AS dead,
           pg_stat_get_tuples_inserted(l.oid) AS ins, pg_stat_get_tuples_updated(l.oid) AS upd,
           pg_stat_get_tuples_deleted(l.oid) AS del, pg_stat_get_numscans(l.oid) AS seq,
           greatest(l.relpages, 0)::bigint * current_setting('block_size')::bigint AS tbytes,
           ix.idx, ix.pages * current_setting('block_size')::bigint AS ibytes, ix.oids,
           ARRAY(
               SELECT ROW(i.indexrelid, format('%I.%I', n.nspname, ic.relname), am.amname,
                          i.indisvalid,
                          greatest(ic.relpages, 0)::bigint
                              * current_setting('block_size')::bigint,
                          coalesce(ic.reloptions, '{}'), t.typname::text,
                          nullif(a.atttypmod, -1))
                 FROM pg_index i
                 JOIN pg_class ic ON ic.oid = i.indexrelid
                 JOIN pg_am am ON am.oid = ic.relam
                 JOIN pg_namespace n ON n.oid = ic.relnamespace
                 LEFT JOIN pg_attribute a ON a.attrelid = i.indexrelid AND a.attnum = 1
                 LEFT JOIN pg_type t ON t.oid = a.atttypid
                WHERE i.indrelid = l.oid AND am.amname IN ('hnsw', 'ivfflat')
                ORDER BY i.indexrelid
           ) AS vector_indexes
      FROM root
      LEFT JOIN leaves l ON true
      LEFT JOIN LATERAL (
          SELECT coalesce(sum(pg_stat_get_numscans(i.indexrelid)), 0)::bigint AS idx,
                 coalesce(sum(greatest(ic.relpages, 0)), 0)::bigint AS pages,
                 array_agg(i.indexrelid) FILTER (WHERE i.indexrelid IS NOT NULL) AS oids
            FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
           WHERE i.indrelid = l.oid
      ) ix ON true
     ORDER BY l.oid
"""

# Every backend of this database but this one, with the locks it holds or awaits on the
# collection's relations: one read of pg_locks and pg_stat_activity serves both the routing
# queue (_partitions) and the maintenance jobs (_activity).
_ACTIVITY = """
    WITH l AS (
        SELECT pid,
               array_agg(DISTINCT relation) FILTER (WHERE granted AND locktype = 'relation'
                                                   AND relation = ANY($1::oid[])) AS held,
               array_agg(DISTINCT relation) FILTER (WHERE NOT granted AND locktype = 'relation'
                                                   AND relation = ANY($1::oid[])) AS awaited,
               min(waitstart) FILTER (WHERE NOT granted) AS waitstart
          FROM pg_locks
         WHERE pid <> pg_backend_pid()
         GROUP BY pid
    )
    SELECT a.pid, a.backend_type, a.state, a.application_name, a.wait_event_type,
           left(a.query, 300) AS query,
           extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::float8
               AS running_seconds,
           CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid)
                ELSE '{}'::int[] END AS blocked_by,
           greatest(0, extract(epoch FROM clock_timestamp() - l.waitstart))::float8
               AS waited_seconds,
           coalesce(l.held, '{}') AS held, coalesce(l.awaited, '{}') AS awaited
      FROM pg_stat_activity a
      LEFT JOIN l ON l.pid = a.pid
     WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
"""

# Server-wide, one row: settings, the database's counters, progress of maintenance commands,
# replicas, and (with a collection id) the application's list statistics.
_SERVER = """
    SELECT pg_is_in_recovery() AS rec, current_setting('block_size')::int AS bs,
           current_setting('server_version_num')::int AS v,
           current_setting('max_connections')::int AS max_conn,
           (SELECT ROW(xact_commit, xact_rollback, deadlocks, conflicts, temp_files, temp_bytes)
              FROM pg_stat_database WHERE datname = current_database()) AS db,
           ARRAY(
               SELECT ROW(pid, relid, kind, phase) FROM (
                   SELECT pid, relid, 'vacuum' AS kind, phase FROM pg_stat_progress_vacuum
                   UNION ALL
                   SELECT pid, relid, CASE WHEN command LIKE 'REINDEX%' THEN 'reindex'
                                           ELSE 'create_index' END, phase
                     FROM pg_stat_progress_create_index
                   UNION ALL
                   SELECT pid, relid, lower(command), phase FROM pg_stat_progress_cluster
                   UNION ALL
                   SELECT pid, relid, 'analyze', phase FROM pg_stat_progress_analyze
               ) p
           ) AS progress,
           ARRAY(
               SELECT ROW(pid,
                          coalesce(nullif(application_name, ''), host(client_addr),
                                   'pid ' || pid),
                          coalesce(state, 'unknown'), coalesce(sync_state, 'async'),
                          extract(epoch FROM greatest(write_lag, flush_lag, replay_lag))::float8,
                          CASE WHEN pg_is_in_recovery() OR replay_lsn IS NULL THEN NULL
                               ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint
                          END,
                          pg_wal_lsn_diff(flush_lsn, replay_lsn)::bigint)
                 FROM pg_stat_replication
           ) AS replicas
"""
_CENTROIDS = """,
           ARRAY(
               SELECT ROW(centroid_id, vector_count, latency_ms) FROM ruvector.centroid_stats
                WHERE collection_id = $1
           ) AS centroids
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
        self._index_stats: dict[tuple[Any, ...], IndexStats] = {}
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
        # No transaction around the statements: each is consistent in itself (one statement
        # reads the relations and all their statistics, one pg_locks with pg_stat_activity),
        # and BEGIN and COMMIT would be two more round trips than the three a sample needs.
        async with self.db.acquire() as conn:
            topo, relations = await self._topology(conn, collection_id)
            backends = await conn.fetch(_ACTIVITY, topo.relation_oids)
            partitions, largest = self._partitions(topo, relations, backends)
            indexes = self._indexes(relations)
            server = await conn.fetchrow(
                _SERVER + (_CENTROIDS if collection_id is not None else ""),
                *(() if collection_id is None else (collection_id,)),
            )
            assert server is not None
            cron_pids = await self._cron_pids(conn)
            activity, jobs = self._activity(
                topo, backends, server["progress"], cron_pids, server["max_conn"]
            )
            replicas = self._replicas(server["replicas"])
            database = self._database(server["db"])
            centroids, bad_rows = self._centroids(
                server["centroids"] if collection_id is not None else None
            )
            ivf_lists = await self._ivf_lists(conn, indexes, taken_at, server["bs"])
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
            in_recovery=server["rec"],
            server_version=server["v"],
            block_size=server["bs"],
            bad_centroid_rows=bad_rows,
        )

    # ------------------------------------------------------------------ topology

    async def _topology(
        self, conn: asyncpg.Connection, collection_id: int | None
    ) -> tuple[Topology, list[asyncpg.Record]]:
        """The collection's relations and their statistics, in one statement (_RELATIONS)."""
        c = self.collection
        # the catalog's exact spelling, from PostgreSQL's identifier rules (identifiers.py), the
        # same the SQL side uses (ruvector.collection_table); OIDs from here on
        rows = await conn.fetch(
            _RELATIONS, c.schema_name, c.table_name, c.vector_attname, c.tenant_attname
        )
        if not rows:
            raise CollectionError(c.name, f"table {c.table} does not exist")
        root = rows[0]
        if root["relkind"] not in ("r", "p"):
            raise CollectionError(c.name, f"{c.table} is not a table (relkind {root['relkind']})")
        if root["vector_attnum"] is None:
            raise CollectionError(c.name, f"column {c.vector_column!r} does not exist in {c.table}")
        if c.tenant_column and root["tenant_attnum"] is None:
            raise CollectionError(c.name, f"column {c.tenant_column!r} does not exist in {c.table}")
        rows = [r for r in rows if r["leaf"] is not None]
        leaves = {r["leaf"]: r["name"] for r in rows}
        if not leaves:
            raise CollectionError(c.name, f"{c.table} is partitioned but has no partitions")
        tenant_list = (
            c.tenant_column is not None
            and root["partstrat"] == "l"
            and list(root["partattrs"] or []) == [root["tenant_attnum"]]
        )
        tenants = await self._tenants(conn, leaves, tenant_list)
        topo = Topology(
            root["oid"],
            leaves,
            {ix: r["leaf"] for r in rows for ix in r["oids"] or ()},
            tenants,
            collection_id,
        )
        return topo, rows

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

    def _partitions(
        self, topo: Topology, rows: list[asyncpg.Record], backends: list[asyncpg.Record]
    ) -> tuple[list[PartitionStats], list[tuple[str, int]]]:
        active: dict[int, set[int]] = defaultdict(set)
        waiting: dict[int, set[int]] = defaultdict(set)
        running: dict[int, set[int]] = defaultdict(set)  # pid -> partitions it works on
        waiters: set[int] = set()
        for b in backends:
            pid = b["pid"]
            if b["awaited"]:
                waiters.add(pid)
            for relation in b["awaited"]:
                if (part := self._owner(topo, relation)) is not None:
                    waiting[part].add(pid)
                    active[part].add(pid)
            if b["state"] != "active":
                continue
            for relation in b["held"]:
                if (part := self._owner(topo, relation)) is not None:
                    active[part].add(pid)
                    running[pid].add(part)
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
                oid=r["leaf"],
                name=r["name"],
                bound=self._bounds.get(r["leaf"]),
                tenant=topo.tenant_by_partition.get(r["leaf"]),
                live_tuples=r["live"],
                dead_tuples=r["dead"],
                inserts=r["ins"],
                updates=r["upd"],
                deletes=r["del"],
                seq_scans=r["seq"],
                idx_scans=r["idx"],
                table_bytes=r["tbytes"],
                index_bytes=r["ibytes"],
                active_backends=len(active.get(r["leaf"], ())),
                waiting_backends=len(waiting.get(r["leaf"], ())),
                queue=round(queue.get(r["leaf"], 0.0), 6),
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

    def _indexes(self, rows: list[asyncpg.Record]) -> list[IndexStats]:
        """The vector indexes, each the same (immutable) object as last sample's while its
        catalog row reads the same: most samples build none."""
        kept: dict[tuple[Any, ...], IndexStats] = {}
        out = []
        for r in rows:
            for oid, name, method, valid, size, options, vector_type, dims in r["vector_indexes"]:
                key = (r["leaf"], oid, name, method, valid, size, tuple(options), vector_type, dims)
                ix = self._index_stats.get(key)
                if ix is None:
                    ix = IndexStats(
                        oid=oid,
                        name=name,
                        partition_oid=r["leaf"],
                        method=method,
                        bytes=size,
                        valid=valid,
                        options=dict(o.split("=", 1) for o in options if "=" in o),
                        vector_type=vector_type,
                        dims=dims,
                    )
                kept[key] = ix
                out.append(ix)
        self._index_stats = kept
        return out

    # ------------------------------------------------------------------ activity

    def _activity(
        self,
        topo: Topology,
        rows: list[asyncpg.Record],
        progress: list[tuple[int, int, str, str]],
        cron_pids: set[int],
        max_conn: int,
    ) -> tuple[ActivityStats, list[MaintenanceJob]]:
        by_pid = {r["pid"]: r for r in rows}
        part_set = set(topo.partitions)

        def touched(pid: int, relid: int | None = None) -> set[int]:
            found: set[int] = set()
            r = by_pid.get(pid)
            for rel in (*r["held"], *r["awaited"]) if r else ():
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
            if r["awaited"]:
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

        for pid, relid, kind, phase in progress:
            add(pid, kind, f"{kind}: {phase}", touched(pid, relid))
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

    @staticmethod
    def _replicas(rows: list[tuple[Any, ...]]) -> list[ReplicaStats]:
        return [
            ReplicaStats(name, pid, state, sync, lag_s, lag_b, unapplied_bytes=unapplied_b)
            for pid, name, state, sync, lag_s, lag_b, unapplied_b in rows
        ]

    @staticmethod
    def _database(row: tuple[Any, ...] | None) -> DatabaseStats:
        if row is None:
            return DatabaseStats(0, 0, 0, 0, 0, 0)
        return DatabaseStats(*(int(v or 0) for v in row))

    @staticmethod
    def _centroids(rows: list[tuple[Any, ...]] | None) -> tuple[list[CentroidStats], int]:
        """The application's list statistics, and how many of its rows were unusable.

        One bad row (a NaN, an infinite or negative figure) must not fail every sample:
        it is skipped and counted, and the monitor says so once.
        """
        if rows is None:
            return [], 0
        out, bad = [], 0
        for centroid_id, count, latency in rows:
            if (
                count is None
                or count < 0
                or (latency is not None and (not math.isfinite(latency) or latency < 0))
            ):
                bad += 1
                continue
            out.append(CentroidStats(centroid_id, count, latency))
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
                    async with conn.transaction():  # a failure spoils nothing
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
    # one worker-thread hop for the three small files, not one for each
    return await anyio.to_thread.run_sync(_read_memory, meminfo, cgroup_root)


def _read_memory(meminfo: Path, cgroup_root: Path) -> MemoryStats | None:
    try:
        text = meminfo.read_text()
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
        current = int((cgroup_root / "memory.current").read_text().strip())
        raw_max = (cgroup_root / "memory.max").read_text().strip()
        maximum = None if raw_max == "max" else int(raw_max)
    except (OSError, ValueError):
        pass
    if not total:
        return None
    return MemoryStats(total, available, current, maximum)
