"""rebuild_centroids: replace a skewed IVFFlat index with one whose lists are recomputed.

For CentroidSkew (the design's RebuildCentroids; impact 0.5; reversible). IVFFlat computes its
list centroids once, at build time; rows inserted later from a drifted distribution pile into a
few lists. For the collection's IVFFlat indexes (largest partition first, at most
`max_targets_per_action`, none rebuilt within `min_interval_per_target_seconds`):

1. build `ruvector_rebuild_<oid>` next to the old index with CREATE INDEX CONCURRENTLY and
   `lists` recomputed by pgvector's guidance (rows / 1000 up to a million rows, sqrt(rows)
   above), same column, operator class, tablespace and predicate
   (ruvector.ivfflat_build_statement); free disk must be `disk_headroom_factor` x the old
   index's size;
2. measure the exact k-th distances of the probe set (the recall canary), then in ONE short
   transaction (ruvector.swap_index, lock_timeout `swap_lock_timeout_seconds`) drop the old
   index, give the new one its name, and measure the new index's recall: below `recall_floor`
   the transaction raises and nothing happened: the old index is still there, untouched, and
   the new one is dropped;
3. clear ruvector.centroid_stats: they describe the old index's lists (the application
   reports the new ones).

`rollback` (an unverified action, a crash at any point) keeps or restores the old index, name
and definition exact: a copy that was never swapped in is dropped; after a swap, the saved
definition (pg_get_indexdef) is rebuilt concurrently as `ruvector_restore_<oid>` and swapped
back under the old name; the centroid statistics are put back. So a partition never keeps two
vector indexes after the action or after recovery. A killed daemon's CREATE INDEX CONCURRENTLY
stops by itself (client_connection_check_interval) and leaves an invalid copy, which recovery's
rollback drops.

The canary is required: without read access for the canary (roles.sql -v canary=on) the
strategy does not act, and says so. Like REINDEX, CREATE INDEX CONCURRENTLY cannot run in a
function, so it runs in a session of the daemon, whose role needs the table owner's rights for
it (every PostgreSQL version: CREATE INDEX is not covered by MAINTAIN): roles.sql -v indexes=on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import anyio

from ruvectord.config import Config, RebuildCentroidsConfig
from ruvectord.healing.maintenance import (
    CANARY_GRANT,
    CannotAct,
    canary_kth,
    disk_refusal,
    free_disk,
    open_session,
    recall,
    seconds_setting,
    sqlstate,
    why,
)
from ruvectord.healing.problems import ProblemKind
from ruvectord.healing.strategy import RemediationContext, RemediationResult, Session
from ruvectord.logs import get_logger

log = get_logger("ruvectord.healing.rebuild_centroids")

MAX_LISTS = 32768  # pgvector's limit
RECALL_BELOW_FLOOR = "RV410"
BUILD_GRANT = (
    "CREATE INDEX CONCURRENTLY needs the table owner's rights for the daemon's role on every "
    "PostgreSQL version: psql -v tables=... -v indexes=on -f deploy/sql/roles.sql"
)
SWAP_GRANT = "dropping and renaming an index needs roles.sql -v maintenance=on"

_IVFFLAT = """
WITH RECURSIVE tree(relid) AS (
    SELECT $1::regclass::oid
    UNION ALL
    SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid
)
SELECT format('%I.%I', n.nspname, ic.relname) AS name, ic.relname AS relname,
       quote_ident(n.nspname) AS schema, i.indexrelid::int8 AS oid,
       (SELECT format('%I.%I', tn.nspname, t.relname) FROM pg_class t
         JOIN pg_namespace tn ON tn.oid = t.relnamespace WHERE t.oid = i.indrelid) AS partition,
       pg_get_indexdef(i.indexrelid) AS definition,
       ic.relpages::int8 * current_setting('block_size')::int8 AS bytes,
       greatest(coalesce(s.n_live_tup, 0), tc.reltuples::int8, 0) AS rows,
       (SELECT option_value::int FROM pg_options_to_table(ic.reloptions)
         WHERE option_name = 'lists') AS lists,
       ts.spcname AS tablespace,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.relid = i.indrelid)
           AS building
  FROM tree
  JOIN pg_class tc ON tc.oid = tree.relid AND tc.relkind IN ('r', 'm')
  JOIN pg_index i ON i.indrelid = tc.oid AND i.indisvalid
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'ivfflat'
  JOIN pg_namespace n ON n.oid = ic.relnamespace
  LEFT JOIN pg_tablespace ts ON ts.oid = ic.reltablespace
  LEFT JOIN pg_stat_user_tables s ON s.relid = tc.oid
 ORDER BY rows DESC, name
"""


def lists_for(rows: int) -> int:
    """pgvector's guidance: rows / 1000 up to 1M rows, sqrt(rows) above; 1..32768."""
    value = rows / 1000 if rows <= 1_000_000 else math.sqrt(rows)
    return max(1, min(MAX_LISTS, int(value)))


class RebuildCentroids:
    name = "rebuild_centroids"
    handles = frozenset({ProblemKind.CENTROID_SKEW})
    impact = 0.5  # a full index build's CPU and I/O, and a second copy's disk
    reversible = True
    supports_dry_run = True
    lift_on_recovery = False  # a better index stays
    leased = False

    def __init__(self, config: Callable[[], Config] | None = None) -> None:
        self._config = config

    def settings(self, ctx: RemediationContext | None = None) -> RebuildCentroidsConfig:
        if ctx is not None:
            return ctx.settings.strategies.rebuild_centroids
        if self._config is not None:
            return self._config().healing.strategies.rebuild_centroids
        return RebuildCentroidsConfig()

    @property
    def estimated_duration(self) -> float:
        return self.settings().time_budget_seconds

    # ------------------------------------------------------------------ plan

    async def plan(self, ctx: RemediationContext) -> dict[str, Any]:
        cfg = self.settings(ctx)
        canary = ctx.settings.strategies.recall_canary
        resting: dict[str, float] = ctx.params.get("resting_targets", {})
        chosen: list[dict[str, Any]] = []
        left_alone: list[str] = []
        for r in await ctx.sql.fetch(_IVFFLAT, ctx.table):
            name = r["name"]
            if name in resting:
                left_alone.append(f"{name} rebuilt too recently ({resting[name]:.0f} s to go)")
                continue
            if r["building"]:
                left_alone.append(f"{name}: another index build runs on {r['partition']}")
                continue
            if len(chosen) >= cfg.max_targets_per_action:
                left_alone.append(f"{name}: over max_targets_per_action")
                continue
            disk = await free_disk(ctx.sql, r["tablespace"], cfg.disk_budget_bytes)
            refusal = disk_refusal(disk, r["bytes"], cfg.disk_headroom_factor, name)
            if refusal:
                left_alone.append(refusal)
                continue
            try:  # the canary is required: sample the probes now (once), or say why not
                await canary_kth(ctx.sql, ctx.collection_id, name, canary)
            except Exception as exc:
                left_alone.append(f"{name}: no recall canary: {why(exc, CANARY_GRANT)}")
                continue
            chosen.append(
                {
                    "name": name,
                    "relname": r["relname"],
                    "schema": r["schema"],
                    "oid": r["oid"],
                    "partition": r["partition"],
                    "definition": r["definition"],
                    "rows": r["rows"],
                    "lists_before": r["lists"],
                    "lists_after": lists_for(r["rows"]),
                    "new_name": f"ruvector_rebuild_{r['oid']}",
                    "restore_name": f"ruvector_restore_{r['oid']}",
                }
            )
        if not chosen:
            raise CannotAct(
                "no IVFFlat index to rebuild: "
                + ("; ".join(left_alone) or "the collection has none")
            )
        stats = [
            dict(r)
            for r in await ctx.sql.fetch(
                "SELECT centroid_id, vector_count, latency_ms FROM ruvector.centroid_stats "
                "WHERE collection_id = $1 ORDER BY centroid_id",
                ctx.collection_id,
            )
        ]
        return {
            "targets": [c["name"] for c in chosen],
            "indexes": chosen,
            "left_alone": left_alone,
            "centroid_stats": stats,
        }

    # ------------------------------------------------------------------ execute

    async def execute(self, ctx: RemediationContext) -> RemediationResult:
        cfg = self.settings(ctx)
        canary = ctx.settings.strategies.recall_canary
        data = ctx.rollback_data
        if ctx.dry_run:
            return RemediationResult(True, 0, 0.0, {"dry_run": True, "would_rebuild": data})
        notes: list[str] = list(data.get("left_alone", []))
        done: list[dict[str, Any]] = []
        t0 = time.monotonic()
        for ix in data["indexes"]:
            left = cfg.time_budget_seconds - (time.monotonic() - t0)
            if left <= 1:
                notes.append(f"{ix['name']} not rebuilt: the time budget is spent")
                continue
            before = await recall(ctx.sql, ctx.collection_id, ix["name"], canary)
            statement = await ctx.sql.fetchval(
                "SELECT ruvector.ivfflat_build_statement($1, to_regclass($2), $3, $4)",
                ctx.collection_id,
                ix["name"],
                ix["lists_after"],
                ix["new_name"],
            )
            new = f"{ix['schema']}.{ix['new_name']}"
            session = await _build_session(ctx, left)
            started = time.monotonic()
            try:
                await session.execute(statement)
            except Exception as exc:
                notes.append(f"{ix['name']} not rebuilt: {why(exc, BUILD_GRANT)}")
                await _drop(ctx, new)
                continue
            finally:
                await session.close()
            built = time.monotonic() - started
            try:
                kth = await canary_kth(ctx.sql, ctx.collection_id, ix["name"], canary)
                after: float | None = await ctx.sql.fetchval(
                    "SELECT ruvector.swap_index($1, to_regclass($2), to_regclass($3), $4, $5, "
                    "$6, $7, $8, make_interval(secs => $9))",
                    ctx.collection_id,
                    ix["name"],
                    new,
                    kth,
                    canary.k,
                    cfg.recall_floor,
                    canary.ivfflat_probes,
                    canary.hnsw_ef_search,
                    cfg.swap_lock_timeout_seconds,
                )
            except Exception as exc:
                # the swap is one transaction: nothing of it happened; the old index stands
                what = str(exc) if sqlstate(exc) == RECALL_BELOW_FLOOR else why(exc, SWAP_GRANT)
                notes.append(f"{ix['name']} kept: {what}")
                await _drop(ctx, new)
                continue
            entry = {
                "name": ix["name"],
                "rows": ix["rows"],
                "lists_before": ix["lists_before"],
                "lists_after": ix["lists_after"],
                "build_seconds": round(built, 3),
                "recall_before": before.to_json(),
                "recall_after": round(after, 4) if after is not None else None,
            }
            done.append(entry)
            log.info("ivfflat_rebuilt", collection=ctx.collection, **entry)
        metadata: dict[str, Any] = {
            "targets": data["targets"],
            "rebuilt": done,
            "decision": "; ".join(notes),
        }
        if not done:
            metadata["decision"] = ""  # the error says it all
            return RemediationResult(
                False, 0, 0.0, metadata, "no index rebuilt: " + "; ".join(notes)
            )
        # the statistics described the lists of the index that is gone
        await ctx.sql.execute(
            "DELETE FROM ruvector.centroid_stats WHERE collection_id = $1",
            ctx.collection_id,
            idempotent=True,
        )
        return RemediationResult(True, len(done), 0.0, metadata)

    async def renew(self, ctx: RemediationContext) -> bool:
        return True

    # ------------------------------------------------------------------ rollback

    async def rollback(self, ctx: RemediationContext) -> None:
        data = ctx.rollback_data
        cfg = self.settings(ctx)
        problems: list[str] = []
        for ix in data.get("indexes", []):
            new = f"{ix['schema']}.{ix['new_name']}"
            restore = f"{ix['schema']}.{ix['restore_name']}"
            # a copy never swapped in (or an interrupted build's invalid remains) goes
            await _drop(ctx, new, retries=10)
            holder = await ctx.sql.fetchrow(
                "SELECT c.oid::int8 AS oid, pg_get_indexdef(c.oid) AS definition "
                "FROM pg_class c WHERE c.oid = to_regclass($1)",
                ix["name"],
            )
            if holder is not None and holder["oid"] == ix["oid"]:
                await _drop(ctx, restore, retries=10)
                continue  # the old index was never touched
            # the swap happened: rebuild the saved definition and put it back under its name
            await _drop(ctx, restore, retries=10)
            statement = await ctx.sql.fetchval(
                "SELECT ruvector.index_restore_statement($1, to_regclass($2), $3, $4, $5)",
                ctx.collection_id,
                ix["partition"],
                ix["definition"],
                ix["relname"],
                ix["restore_name"],
            )
            session = await _build_session(ctx, cfg.time_budget_seconds)
            try:
                await session.execute(statement)
            finally:
                await session.close()
            if holder is not None:
                await ctx.sql.fetchval(
                    "SELECT ruvector.replace_index($1, to_regclass($2), to_regclass($3), "
                    "make_interval(secs => $4))",
                    ctx.collection_id,
                    ix["name"],
                    restore,
                    cfg.swap_lock_timeout_seconds,
                )
            else:
                problems.append(f"{ix['name']} was missing; restored as {restore}")
        stats = data.get("centroid_stats")
        if stats is not None:
            await ctx.sql.execute(
                "DELETE FROM ruvector.centroid_stats WHERE collection_id = $1",
                ctx.collection_id,
                idempotent=True,
            )
            for s in stats:
                await ctx.sql.execute(
                    "INSERT INTO ruvector.centroid_stats (collection_id, centroid_id, "
                    "vector_count, latency_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    ctx.collection_id,
                    s["centroid_id"],
                    s["vector_count"],
                    s["latency_ms"],
                    idempotent=True,
                )
        if problems:
            raise RuntimeError("; ".join(problems))


async def _build_session(ctx: RemediationContext, seconds: float) -> Session:
    return await open_session(
        ctx,
        {
            "statement_timeout": seconds_setting(seconds),
            "lock_timeout": seconds_setting(seconds),
            # a killed daemon's build notices within a second and stops
            "client_connection_check_interval": "1000",
        },
    )


async def _drop(ctx: RemediationContext, name: str, *, retries: int = 3) -> None:
    """Drop a leftover copy if it exists; a dying build may hold its lock for a moment."""
    for attempt in range(retries):
        if not await ctx.sql.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
            return
        try:
            await ctx.sql.fetchval(
                "SELECT ruvector.drop_leftover_index($1, to_regclass($2), "
                "make_interval(secs => 2))",
                ctx.collection_id,
                name,
            )
            return
        except Exception as exc:
            if attempt == retries - 1:
                raise
            log.warning("leftover_index_busy", index=name, error=why(exc))
            await anyio.sleep(1.0)
