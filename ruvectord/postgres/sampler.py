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
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

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


# how often the structure is read even when no change shows (a renamed schema changes no row
# the readings see)
STRUCTURE_SECONDS = 300.0


@dataclass(frozen=True, eq=False)  # one object per structure reading: hashed by identity
class VectorIndex:
    """A vector index's catalog facts, which only DDL changes."""

    oid: int
    leaf: int
    name: str
    method: str
    options: tuple[str, ...]
    vector_type: str | None
    dims: int | None


@dataclass(frozen=True)
class Structure:
    """The collection's relations as the catalog defines them (_STRUCTURE)."""

    root_oid: int
    parents: tuple[int, ...]  # its partitioned tables, the root first; () when plain
    leaves: dict[int, str]  # leaf oid -> qualified name
    index_owner: dict[int, int]  # any index oid on a leaf -> the leaf's oid
    vector_indexes: tuple[VectorIndex, ...]
    tenant_list: bool  # LIST-partitioned by the tenant column alone
    # (oid, xmin) of every leaf and index: any DDL on one of them changes its xmin
    fingerprint: frozenset[tuple[int, int]]
    read_at: datetime


@dataclass(frozen=True)
class Topology:
    """The collection's relations as this sample found them."""

    root_oid: int
    partitions: dict[int, str]  # leaf oid -> qualified name
    index_owner: dict[int, int]  # any index oid on a leaf -> the leaf's oid
    tenant_by_partition: dict[int, str | None]
    collection_id: int | None


# The collection's catalog structure: the table, the tree of its partitions (itself, when
# plain), each leaf's name and vector indexes, and the (oid, xmin) of every leaf and index.
# Read when a sample's readings (_SAMPLE) show a change, and every STRUCTURE_SECONDS: names and
# index metadata change only with DDL, and looking them up was most of a sample's server time.
_STRUCTURE = """
    WITH RECURSIVE root AS MATERIALIZED (
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
    )
    SELECT root.*, m.oid AS member, m.relkind::text AS kind, m.xmin,
           format('%I.%I', n.nspname, m.relname) AS name,
           ARRAY(
               SELECT ROW(i.indexrelid, ic.xmin::text::bigint, am.amname,
                          format('%I.%I', ins.nspname, ic.relname),
                          coalesce(ic.reloptions, '{}'), t.typname::text,
                          nullif(a.atttypmod, -1))
                 FROM pg_index i
                 JOIN pg_class ic ON ic.oid = i.indexrelid
                 JOIN pg_am am ON am.oid = ic.relam
                 JOIN pg_namespace ins ON ins.oid = ic.relnamespace
                 LEFT JOIN pg_attribute a ON a.attrelid = i.indexrelid AND a.attnum = 1
                 LEFT JOIN pg_type t ON t.oid = a.atttypid
                WHERE i.indrelid = m.oid
                ORDER BY i.indexrelid
           ) AS indexes
      FROM root
      LEFT JOIN pg_class m ON m.oid = ANY(ARRAY(SELECT relid FROM tree))
                          AND m.relkind IN ('r', 'm', 'p')
      LEFT JOIN pg_namespace n ON n.oid = m.relnamespace
     ORDER BY m.oid
"""

# Every sample, one statement and one row: the relations, the backends and the server.
#
# - The table by name (it may have been dropped or recreated, or lost a column), the members of
#   the partitioned tables the structure knows ($5; the table itself when plain, $6) and every
#   index on them, with their statistics, sizes and the xmin a DDL statement changes -- VACUUM
#   and ANALYZE update relpages in place, so a new size is not a change. pg_stat_get_numscans
#   is a table's sequential scans and an index's scans.
# - Every backend of this database but this one, with the locks it holds or awaits on those
#   relations: one read of pg_locks and pg_stat_activity serves both the routing queue
#   (_partitions) and the maintenance jobs (_activity).
# - Server-wide: settings, the database's counters, progress of maintenance commands, replicas,
#   whether pg_cron is installed, and (appended where they apply) the running pg_cron jobs and
#   the application's list statistics.
# One round trip instead of three: on a small virtual machine the wake-up of the server process
# at each round trip cost more of the daemon's CPU than decoding the answers. Every catalog
# read is by OID or name through an index, so a sample costs what the collection's size says,
# not the database's (tests/integration/test_sampler.py reads the plan).
_SAMPLE = """
    WITH root AS MATERIALIZED (
        SELECT cl.oid, cl.relkind::text AS relkind,
               (SELECT a.attnum FROM pg_attribute a
                 WHERE a.attrelid = cl.oid AND a.attname = $3 AND NOT a.attisdropped
                   AND a.attnum > 0) AS vector_attnum,
               (SELECT a.attnum FROM pg_attribute a
                 WHERE a.attrelid = cl.oid AND a.attname = $4 AND NOT a.attisdropped
                   AND a.attnum > 0) AS tenant_attnum
          FROM pg_class cl
          JOIN pg_namespace n ON n.oid = cl.relnamespace
         WHERE n.nspname = $1 AND cl.relname = $2
    ), members AS MATERIALIZED (
        SELECT m.oid, NULL::oid AS owner, m.relkind::text AS kind, m.xmin, m.relpages,
               NULL::bool AS valid
          FROM pg_class m
         WHERE m.oid = ANY(ARRAY(
                   SELECT inhrelid FROM pg_inherits WHERE inhparent = ANY($5::oid[])
                   UNION ALL
                   SELECT unnest($6::oid[])))
    ), rels AS MATERIALIZED (
        SELECT * FROM members
        UNION ALL
        SELECT i.indexrelid, i.indrelid, 'i', ic.xmin, ic.relpages, i.indisvalid
          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = ANY(ARRAY(SELECT oid FROM members WHERE kind IN ('r', 'm')))
    ), watched AS (
        SELECT ARRAY(SELECT oid FROM root UNION ALL SELECT oid FROM rels) AS oids
    ), locks AS (
        SELECT pid,
               array_agg(DISTINCT relation) FILTER (WHERE granted AND locktype = 'relation'
                                                   AND relation = ANY(w.oids)) AS held,
               array_agg(DISTINCT relation) FILTER (WHERE NOT granted AND locktype = 'relation'
                                                   AND relation = ANY(w.oids)) AS awaited,
               min(waitstart) FILTER (WHERE NOT granted) AS waitstart
          FROM pg_locks, watched w
         WHERE pid <> pg_backend_pid()
         GROUP BY pid
    )
    SELECT root.oid, root.relkind, root.vector_attnum, root.tenant_attnum,
           ARRAY(
               SELECT ROW(r.oid, r.owner, r.kind, r.xmin::text::bigint,
                          greatest(r.relpages, 0)::bigint, r.valid,
                          pg_stat_get_numscans(r.oid),
                          CASE WHEN r.kind <> 'i' THEN pg_stat_get_live_tuples(r.oid) END,
                          CASE WHEN r.kind <> 'i' THEN pg_stat_get_dead_tuples(r.oid) END,
                          CASE WHEN r.kind <> 'i' THEN pg_stat_get_tuples_inserted(r.oid) END,
                          CASE WHEN r.kind <> 'i' THEN pg_stat_get_tuples_updated(r.oid) END,
                          CASE WHEN r.kind <> 'i' THEN pg_stat_get_tuples_deleted(r.oid) END)
                 FROM rels r
           ) AS relations,
           ARRAY(
               SELECT ROW(a.pid, a.backend_type, a.state, a.application_name, a.wait_event_type,
                          left(a.query, 300),
                          extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))
                              ::float8,
                          CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid)
                               ELSE '{}'::int[] END,
                          greatest(0, extract(epoch FROM clock_timestamp() - l.waitstart))
                              ::float8,
                          coalesce(l.held, '{}'), coalesce(l.awaited, '{}'))
                 FROM pg_stat_activity a
                 LEFT JOIN locks l ON l.pid = a.pid
                WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
           ) AS backends,
           pg_is_in_recovery() AS rec, current_setting('block_size')::int AS bs,
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
           ) AS replicas,
           to_regclass('cron.job_run_details') IS NOT NULL AS has_cron,
           -- asyncpg decodes an anonymous record's fields only with codecs it already has, and
           -- it loads one for each type in a statement's columns: these two are for `backends`
           NULL::int4[] AS int4_array_codec, NULL::oid[] AS oid_array_codec
"""
_FROM_ROOT = """
      FROM (VALUES (1)) one LEFT JOIN root ON true
"""
_CRON = """,
           ARRAY(
               SELECT job_pid FROM cron.job_run_details WHERE status = 'running' AND job_pid > 0
           ) AS cron_pids
"""
_CENTROIDS = """,
           ARRAY(
               SELECT ROW(centroid_id, vector_count, latency_ms) FROM ruvector.centroid_stats
                WHERE collection_id = $7
           ) AS centroids
"""


def sample_statement(*, cron: bool, centroids: bool) -> str:
    """_SAMPLE, with pg_cron's running jobs and the application's list statistics where they
    apply ($7: the collection's id)."""
    return _SAMPLE + (_CRON if cron else "") + (_CENTROIDS if centroids else "") + _FROM_ROOT


class Relation(NamedTuple):
    """A member of the collection (kind r, m or p) or an index on a leaf (kind i), as read."""

    rel: int
    owner: int | None  # an index's table
    kind: str
    xmin: int
    pages: int
    valid: bool | None
    scans: int
    live: int | None
    dead: int | None
    ins: int | None
    upd: int | None
    dele: int | None


class Backend(NamedTuple):
    pid: int
    backend_type: str | None
    state: str | None
    application_name: str | None
    wait_event_type: str | None
    query: str | None
    running_seconds: float | None
    blocked_by: list[int]
    waited_seconds: float | None
    held: list[int]
    awaited: list[int]


# a leaf as this sample read it, with its indexes' scans and pages summed
Leaf = tuple[Relation, tuple[int, int]]


class Sampler:
    def __init__(
        self,
        db: Database,
        collection: CollectionConfig,
        *,
        ivf_refresh_seconds: float = 300.0,
        ivf_max_pages: int = 20_000,
        memory: HostMemory | None = None,
    ) -> None:
        self.db = db
        self.collection = collection
        self.memory = memory or HostMemory()
        self._bounds: dict[int, str | None] = {}
        self._tenant_of: dict[int, str | None] = {}  # list_tenant of each bound, parsed once
        self._structure: Structure | None = None
        self.structure_reads = 0  # how often _STRUCTURE ran: on start, on change, periodically
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
        async with self.db.acquire() as conn:
            topo, readings, vector, row = await self._relations(conn, taken_at, collection_id)
            block_size = row["bs"]
            backends = [Backend(*b) for b in row["backends"]]
            partitions, largest = self._partitions(topo, readings, backends, block_size)
            indexes = self._indexes(vector, block_size)
            cron_pids = set(row.get("cron_pids") or ())  # where pg_cron is installed
            activity, jobs = self._activity(
                topo, backends, row["progress"], cron_pids, row["max_conn"]
            )
            replicas = self._replicas(row["replicas"])
            database = self._database(row["db"])
            centroids, bad_rows = self._centroids(
                row["centroids"] if collection_id is not None else None
            )
            ivf_lists = await self._ivf_lists(conn, indexes, taken_at, block_size)
            centroids = ivf_lists + centroids
        memory = await self.memory.read() if host_memory else None
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
            in_recovery=row["rec"],
            server_version=row["v"],
            block_size=block_size,
            bad_centroid_rows=bad_rows,
        )

    # ------------------------------------------------------------------ relations

    async def _relations(
        self, conn: asyncpg.Connection, taken_at: datetime, collection_id: int | None
    ) -> tuple[Topology, dict[int, Leaf], list[tuple[VectorIndex, bool, int]], asyncpg.Record]:
        """The sample's one statement (_SAMPLE), and _STRUCTURE before it when the catalog
        changed or STRUCTURE_SECONDS passed."""
        structure = self._structure
        if structure is None or abs((taken_at - structure.read_at).total_seconds()) >= (
            STRUCTURE_SECONDS
        ):
            structure = await self._read_structure(conn, taken_at)
        row, rows = await self._read(conn, structure, collection_id)
        if not _matches(structure, row, rows):
            structure = await self._read_structure(conn, taken_at)
            row, rows = await self._read(conn, structure, collection_id)
            # DDL between these two statements is seen next sample; this one counts what
            # both agree on
        leaf_rows = {r.rel: r for r in rows if r.kind in ("r", "m")}
        if leaf_rows.keys() == structure.leaves.keys():
            leaves, owner = structure.leaves, structure.index_owner  # the usual: as read
        else:  # DDL between the two statements: what both agree on
            leaves = {oid: name for oid, name in structure.leaves.items() if oid in leaf_rows}
            owner = {ix: leaf for ix, leaf in structure.index_owner.items() if leaf in leaves}
        if not leaves:
            raise CollectionError(
                self.collection.name,
                f"{self.collection.table} is partitioned but has no partitions",
            )
        # each leaf's indexes summed: (scans, pages); each index's (valid, pages)
        totals: dict[int, tuple[int, int]] = {}
        index_now: dict[int, tuple[bool, int]] = {}
        for r in rows:
            if r.kind == "i" and r.owner is not None:
                scans, pages = totals.get(r.owner, (0, 0))
                totals[r.owner] = (scans + r.scans, pages + r.pages)
                index_now[r.rel] = (bool(r.valid), r.pages)
        vector = [
            (ix, *index_now[ix.oid])
            for ix in structure.vector_indexes
            if ix.leaf in leaves and ix.oid in index_now
        ]
        tenants = await self._tenants(conn, leaves, structure.tenant_list)
        topo = Topology(structure.root_oid, leaves, owner, tenants, collection_id)
        return topo, {oid: (leaf_rows[oid], totals.get(oid, (0, 0))) for oid in leaves}, vector, row

    async def _read(
        self, conn: asyncpg.Connection, structure: Structure, collection_id: int | None
    ) -> tuple[asyncpg.Record, list[Relation]]:
        c = self.collection
        plain = () if structure.parents else (structure.root_oid,)
        args: list[Any] = [
            c.schema_name,
            c.table_name,
            c.vector_attname,
            c.tenant_attname,
            structure.parents,
            plain,
        ]
        if collection_id is not None:
            args.append(collection_id)
        row = None
        for _ in range(3):
            cron = bool(self._has_cron)
            sql = sample_statement(cron=cron, centroids=collection_id is not None)
            try:
                row = await conn.fetchrow(sql, *args)
            except asyncpg.UndefinedTableError:
                if not cron:
                    raise
                self._has_cron = False  # pg_cron was dropped: sample without it
                continue
            assert row is not None
            self._has_cron = row["has_cron"]
            if self._has_cron == cron:
                break  # otherwise pg_cron is new: read again, with its running jobs
        assert row is not None
        self._check_root(row)
        return row, [Relation(*r) for r in row["relations"]]

    async def _read_structure(self, conn: asyncpg.Connection, taken_at: datetime) -> Structure:
        c = self.collection
        self.structure_reads += 1
        rows = await conn.fetch(
            _STRUCTURE, c.schema_name, c.table_name, c.vector_attname, c.tenant_attname
        )
        root = self._check_root(rows[0] if rows else None)
        members = [r for r in rows if r["member"] is not None]
        leaves = [r for r in members if r["kind"] in ("r", "m")]
        parents = [r["member"] for r in members if r["kind"] == "p"]
        if root["oid"] in parents:  # the root first: the readings ask for its members
            parents.remove(root["oid"])
            parents.insert(0, root["oid"])
        vector_indexes = []
        fingerprint = {(r["member"], int(r["xmin"])) for r in leaves}
        owner: dict[int, int] = {}
        for r in leaves:
            for oid, xmin, method, name, options, vector_type, dims in r["indexes"]:
                owner[oid] = r["member"]
                fingerprint.add((oid, xmin))
                if method in VECTOR_METHODS:
                    vector_indexes.append(
                        VectorIndex(
                            oid, r["member"], name, method, tuple(options), vector_type, dims
                        )
                    )
        structure = Structure(
            root_oid=root["oid"],
            parents=tuple(parents),
            leaves={r["member"]: r["name"] for r in leaves},
            index_owner=owner,
            vector_indexes=tuple(vector_indexes),
            tenant_list=(
                c.tenant_column is not None
                and root["partstrat"] == "l"
                and list(root["partattrs"] or []) == [root["tenant_attnum"]]
            ),
            fingerprint=frozenset(fingerprint),
            read_at=taken_at,
        )
        self._structure = structure
        return structure

    def _check_root(self, root: asyncpg.Record | None) -> asyncpg.Record:
        """The table as configured: it exists, is a table and has the configured columns."""
        c = self.collection
        if root is None or root["oid"] is None:
            self._structure = None
            raise CollectionError(c.name, f"table {c.table} does not exist")
        if root["relkind"] not in ("r", "p"):
            raise CollectionError(c.name, f"{c.table} is not a table (relkind {root['relkind']})")
        if root["vector_attnum"] is None:
            raise CollectionError(c.name, f"column {c.vector_column!r} does not exist in {c.table}")
        if c.tenant_column and root["tenant_attnum"] is None:
            raise CollectionError(c.name, f"column {c.tenant_column!r} does not exist in {c.table}")
        return root

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
                self._tenant_of.update({r["oid"]: list_tenant(r["bound"]) for r in rows})
            except (asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError):
                pass
        return {oid: self._tenant_of.get(oid) for oid in leaves}

    # ------------------------------------------------------------------ tables

    def _partitions(
        self,
        topo: Topology,
        readings: dict[int, Leaf],
        backends: list[Backend],
        block_size: int,
    ) -> tuple[list[PartitionStats], list[tuple[str, int]]]:
        active: dict[int, set[int]] = defaultdict(set)
        waiting: dict[int, set[int]] = defaultdict(set)
        running: dict[int, set[int]] = defaultdict(set)  # pid -> partitions it works on
        waiters: set[int] = set()
        for b in backends:
            pid = b.pid
            if b.awaited:
                waiters.add(pid)
            for relation in b.awaited:
                if (part := self._owner(topo, relation)) is not None:
                    waiting[part].add(pid)
                    active[part].add(pid)
            if b.state != "active":
                continue
            for relation in b.held:
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
        out = []
        for oid, name in sorted(topo.partitions.items()):
            r, (idx_scans, idx_pages) = readings[oid]
            out.append(
                PartitionStats(
                    oid=oid,
                    name=name,
                    bound=self._bounds.get(oid),
                    tenant=topo.tenant_by_partition.get(oid),
                    live_tuples=r.live or 0,
                    dead_tuples=r.dead or 0,
                    inserts=r.ins or 0,
                    updates=r.upd or 0,
                    deletes=r.dele or 0,
                    seq_scans=r.scans,
                    idx_scans=idx_scans,
                    table_bytes=r.pages * block_size,
                    index_bytes=idx_pages * block_size,
                    active_backends=len(active.get(oid, ())),
                    waiting_backends=len(waiting.get(oid, ())),
                    queue=round(queue.get(oid, 0.0), 6),
                )
            )
        largest = sorted(
            ((p.name, p.table_bytes + p.index_bytes) for p in out), key=lambda x: -x[1]
        )[:5]
        return out, largest

    @staticmethod
    def _owner(topo: Topology, relation: int) -> int | None:
        if relation in topo.partitions:
            return relation
        return topo.index_owner.get(relation)

    def _indexes(
        self, vector: list[tuple[VectorIndex, bool, int]], block_size: int
    ) -> list[IndexStats]:
        """The vector indexes, each the same (immutable) object as last sample's while it
        reads the same: most samples build none."""
        kept: dict[tuple[Any, ...], IndexStats] = {}
        out = []
        for meta, valid, pages in vector:
            key = (meta, valid, pages, block_size)
            ix = self._index_stats.get(key)
            if ix is None:
                ix = IndexStats(
                    oid=meta.oid,
                    name=meta.name,
                    partition_oid=meta.leaf,
                    method=meta.method,
                    bytes=pages * block_size,
                    valid=valid,
                    options=dict(o.split("=", 1) for o in meta.options if "=" in o),
                    vector_type=meta.vector_type,
                    dims=meta.dims,
                )
            kept[key] = ix
            out.append(ix)
        self._index_stats = kept
        return out

    # ------------------------------------------------------------------ activity

    def _activity(
        self,
        topo: Topology,
        rows: list[Backend],
        progress: list[tuple[int, int, str, str]],
        cron_pids: set[int],
        max_conn: int,
    ) -> tuple[ActivityStats, list[MaintenanceJob]]:
        by_pid = {r.pid: r for r in rows}
        part_set = set(topo.partitions)

        def touched(pid: int, relid: int | None = None) -> set[int]:
            found: set[int] = set()
            r = by_pid.get(pid)
            for rel in (*r.held, *r.awaited) if r else ():
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
            if r.awaited:
                for blocker in r.blocked_by:
                    blocking[blocker] += 1
                    blocked_seconds[blocker] += r.waited_seconds or 0.0

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
                running_seconds=r.running_seconds if r else None,
                blocked_seconds=round(blocked_seconds.get(pid, 0.0), 3),
            )

        for pid, relid, kind, phase in progress:
            add(pid, kind, f"{kind}: {phase}", touched(pid, relid))
        for r in rows:
            pid = r.pid
            query = r.query or ""
            if r.application_name == APPLICATION_NAME:
                continue
            if r.backend_type == "autovacuum worker":
                add(pid, "autovacuum", query or "autovacuum", touched(pid))
            elif pid in cron_pids or r.application_name in MAINTENANCE_APPS:
                kind = "cron" if pid in cron_pids else str(r.application_name)
                add(pid, kind, query, touched(pid))
            elif (m := _MAINTENANCE_SQL.match(query)) is not None:
                kind = "_".join(m.group(1).lower().split()[:2]).replace("analyse", "analyze")
                add(pid, kind, f"{r.state}: {query}", touched(pid))
        # anything else that holds up writers on the collection is a dependency too
        for pid, count in blocking.items():
            if pid not in jobs and pid in by_pid and count:
                r = by_pid[pid]
                add(pid, "blocker", f"{r.state}: {r.query or ''}", touched(pid))

        activity = ActivityStats(
            backends=len(rows),
            active=sum(1 for r in rows if r.state == "active"),
            waiting=sum(1 for r in rows if r.wait_event_type == "Lock"),
            max_connections=max_conn,
        )
        return activity, list(jobs.values())

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


def _matches(structure: Structure, root: asyncpg.Record, rows: list[Relation]) -> bool:
    """Whether this sample's readings show the catalog the structure was read from."""
    if root["oid"] != structure.root_oid:
        return False
    leaves = {r.rel for r in rows if r.kind in ("r", "m")}
    parents = {r.rel for r in rows if r.kind == "p"}
    fingerprint = {(r.rel, r.xmin) for r in rows if r.kind in ("r", "m", "i")}
    return (
        leaves == structure.leaves.keys()
        and parents == set(structure.parents[1:])
        and fingerprint == structure.fingerprint
    )


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


class HostMemory:
    """The host's memory, read at most once every `max_age` seconds for all the collections
    that share this reader: it is one host's, and /proc/meminfo costs the kernel more to
    write than any other file a sample reads."""

    def __init__(
        self,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        meminfo: Path = Path("/proc/meminfo"),
        cgroup_root: Path = Path("/sys/fs/cgroup"),
    ) -> None:
        self.max_age = max_age
        self._clock = clock
        self._paths = (meminfo, cgroup_root)
        self._read: tuple[float, MemoryStats | None] | None = None

    async def read(self) -> MemoryStats | None:
        now = self._clock()
        if self._read is not None and 0.0 <= now - self._read[0] < self.max_age:
            return self._read[1]
        value = await read_memory(*self._paths)
        self._read = (now, value)
        return value


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
