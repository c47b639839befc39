"""compact_indexes: rebuild the most fragmented vector indexes without blocking writes.

For IndexFragmentation (the design's CompactFragmentedIndexes; impact 0.5; irreversible, as
the seed says: a compacted index cannot be "un-compacted", and need not be). `REINDEX INDEX
CONCURRENTLY` of the problem's indexes, one at a time, most fragmented first, at most
`max_targets_per_action`, within `time_budget_seconds`; an index compacted within
`min_interval_per_target_seconds` is left alone (selection skips the strategy when all are).
Never while another index build runs on the same table, and never when free disk is below
`disk_headroom_factor` x the index's size (see healing.maintenance.free_disk for what the
daemon can know about free disk).

REINDEX CONCURRENTLY cannot run inside a function, so it runs in a dedicated session of the
daemon (statement_timeout: what is left of the budget; client_connection_check_interval, so a
killed daemon's REINDEX stops within a second). The statement itself comes from
ruvector.reindex_statement, which checks the index belongs to the collection; the daemon's
role needs the privilege for it (PostgreSQL 17+: MAINTAIN on the table; before 17 only the
table's owner may REINDEX: roles.sql -v indexes=on).

An interrupted concurrent reindex leaves an invalid `<name>_ccnew` index behind: `cleanup`
drops those (ruvector.drop_leftover_index drops only invalid indexes), after a failed or
timed-out action and at crash recovery.

With `vacuum_first` (the default) a plain VACUUM of the partition runs first (SHARE UPDATE
EXCLUSIVE: reads and writes go on), so the rebuilt index holds only live rows and the dead
tuples the sensor counts as fragmentation are gone. Verified by the engine (lambda) and
reported here: index size per live tuple before and
after, and the recall canary before and after; a recall below `recall_floor` is flagged and
alerted (an alert event), not undone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ruvectord.config import CompactIndexesConfig, Config
from ruvectord.healing.maintenance import (
    CannotAct,
    disk_refusal,
    free_disk,
    open_session,
    recall,
    seconds_setting,
    why,
)
from ruvectord.healing.problems import IndexFragmentation, Problem, ProblemKind
from ruvectord.healing.strategy import RemediationContext, RemediationResult, Sql
from ruvectord.logs import get_logger

log = get_logger("ruvectord.healing.compact_indexes")

REINDEX_GRANT = (
    "REINDEX needs MAINTAIN on the table (PostgreSQL 17+) or, before 17, the table owner's "
    "rights, for the daemon's role: psql -v tables=... -v indexes=on -f deploy/sql/roles.sql"
)
CLEANUP_GRANT = (
    "dropping an invalid index needs the table owner's rights: roles.sql -v maintenance=on"
)

_INDEX = """
SELECT format('%I.%I', ixn.nspname, ic.relname) AS name, i.indexrelid::int8 AS oid,
       i.indisvalid AS valid, am.amname AS method,
       (SELECT format('%I.%I', tn.nspname, t.relname) FROM pg_class t
         JOIN pg_namespace tn ON tn.oid = t.relnamespace WHERE t.oid = i.indrelid) AS partition,
       ic.relpages::int8 * current_setting('block_size')::int8 AS bytes,
       coalesce(s.n_live_tup, 0)::int8 AS live, coalesce(s.n_dead_tup, 0)::int8 AS dead,
       ts.spcname AS tablespace,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
                WHERE p.relid = i.indrelid) AS building
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_namespace ixn ON ixn.oid = ic.relnamespace
  JOIN pg_am am ON am.oid = ic.relam
  LEFT JOIN pg_tablespace ts ON ts.oid = ic.reltablespace
  LEFT JOIN pg_stat_user_tables s ON s.relid = i.indrelid
 WHERE i.indexrelid = to_regclass($1)
"""


class CompactIndexes:
    name = "compact_indexes"
    handles = frozenset({ProblemKind.INDEX_FRAGMENTATION})
    impact = 0.5  # CPU and I/O heavy while it runs, and it needs a second copy's disk
    reversible = False
    supports_dry_run = True
    lift_on_recovery = False
    leased = False

    def __init__(self, config: Callable[[], Config] | None = None) -> None:
        self._config = config

    def settings(self, ctx: RemediationContext | None = None) -> CompactIndexesConfig:
        if ctx is not None:
            return ctx.settings.strategies.compact_indexes
        if self._config is not None:
            return self._config().healing.strategies.compact_indexes
        return CompactIndexesConfig()

    @property
    def estimated_duration(self) -> float:
        return self.settings().time_budget_seconds

    def targets(self, problem: Problem) -> tuple[str, ...]:
        return problem.index_names if isinstance(problem, IndexFragmentation) else ()

    # ------------------------------------------------------------------ plan

    async def plan(self, ctx: RemediationContext) -> dict[str, Any]:
        cfg = self.settings(ctx)
        resting: dict[str, float] = ctx.params.get("resting_targets", {})
        chosen: list[dict[str, Any]] = []
        left_alone: list[str] = []
        for name in self.targets(ctx.problem):  # the classifier lists most fragmented first
            r = await ctx.sql.fetchrow(_INDEX, name)
            if r is None:
                left_alone.append(f"{name} no longer exists")
                continue
            if name in resting:
                left_alone.append(f"{name} compacted too recently ({resting[name]:.0f} s to go)")
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
            chosen.append(
                {
                    "name": name,
                    "partition": r["partition"],
                    "method": r["method"],
                    "bytes": r["bytes"],
                    "live_tuples": r["live"],
                    "dead_tuples": r["dead"],
                    "valid": r["valid"],
                    "free_disk": disk.free_bytes,
                }
            )
        if not chosen:
            raise CannotAct("no index to compact: " + ("; ".join(left_alone) or "none named"))
        return {
            "targets": [c["name"] for c in chosen],
            "indexes": chosen,
            "left_alone": left_alone,
        }

    # ------------------------------------------------------------------ execute

    async def execute(self, ctx: RemediationContext) -> RemediationResult:
        cfg = self.settings(ctx)
        canary = ctx.settings.strategies.recall_canary
        data = ctx.rollback_data
        if ctx.dry_run:
            return RemediationResult(True, 0, 0.0, {"dry_run": True, "would_reindex": data})
        notes: list[str] = list(data.get("left_alone", []))
        done: list[dict[str, Any]] = []
        alerts: list[str] = []
        t0 = time.monotonic()
        for ix in data["indexes"]:
            left = cfg.time_budget_seconds - (time.monotonic() - t0)
            if left <= 1:
                notes.append(f"{ix['name']} not compacted: the time budget is spent")
                continue
            if await _building(ctx.sql, ix["partition"]):
                notes.append(f"{ix['name']} not compacted: an index build started on its table")
                continue
            before = await recall(ctx.sql, ctx.collection_id, ix["name"], canary)
            statement = await ctx.sql.fetchval(
                "SELECT ruvector.reindex_statement($1, to_regclass($2))",
                ctx.collection_id,
                ix["name"],
            )
            session = await open_session(
                ctx,
                {
                    "statement_timeout": seconds_setting(left),
                    "lock_timeout": seconds_setting(left),
                    "client_connection_check_interval": "1000",
                },
            )
            started = time.monotonic()
            try:
                if cfg.vacuum_first:
                    await session.execute(
                        await ctx.sql.fetchval(
                            "SELECT ruvector.vacuum_statement($1, to_regclass($2))",
                            ctx.collection_id,
                            ix["name"],
                        )
                    )
                await session.execute(statement)
            except Exception as exc:
                notes.append(f"{ix['name']} not compacted: {why(exc, REINDEX_GRANT)}")
                cleaned = await self._drop_leftovers(ctx, [ix["name"]])
                if cleaned:
                    notes.append(cleaned)
                continue
            finally:
                await session.close()
            seconds = time.monotonic() - started
            r = await ctx.sql.fetchrow(_INDEX, ix["name"])
            assert r is not None
            after = await recall(ctx.sql, ctx.collection_id, ix["name"], canary)
            entry = {
                "name": ix["name"],
                "seconds": round(seconds, 3),
                "bytes_before": ix["bytes"],
                "bytes_after": r["bytes"],
                # one denominator for both: the live rows now (the statistics of before may
                # lag the deletes that caused the fragmentation)
                "live_tuples": r["live"],
                "bytes_per_live_tuple_before": _per(ix["bytes"], r["live"]),
                "bytes_per_live_tuple_after": _per(r["bytes"], r["live"]),
                "recall_before": before.to_json(),
                "recall_after": after.to_json(),
            }
            done.append(entry)
            log.info("index_compacted", collection=ctx.collection, **entry)
            if after.value is not None and after.value < cfg.recall_floor:
                alerts.append(
                    f"recall of {ix['name']} is {after.value:.3f} after compaction, below the "
                    f"floor {cfg.recall_floor:g} (before: {before.to_json()})"
                )
        metadata: dict[str, Any] = {
            "targets": [d["name"] for d in done] or data["targets"],
            "compacted": done,
            "decision": "; ".join(notes + alerts),
        }
        if alerts:
            metadata["alert"] = "; ".join(alerts)
        if not done:
            metadata["decision"] = ""  # the error says it all
            return RemediationResult(
                False, 0, 0.0, metadata, "no index compacted: " + "; ".join(notes)
            )
        return RemediationResult(True, len(done), 0.0, metadata)

    async def renew(self, ctx: RemediationContext) -> bool:
        return True

    async def rollback(self, ctx: RemediationContext) -> None:
        raise NotImplementedError("compaction is not reversible")

    async def cleanup(self, ctx: RemediationContext) -> str:
        """Drop the invalid *_ccnew indexes an interrupted REINDEX CONCURRENTLY left."""
        return await self._drop_leftovers(ctx, list(ctx.rollback_data.get("targets", [])))

    async def _drop_leftovers(self, ctx: RemediationContext, names: list[str]) -> str:
        rows = await ctx.sql.fetch(
            """
            SELECT format('%I.%I', n.nspname, c.relname) AS name
              FROM pg_index t
              JOIN pg_index i ON i.indrelid = t.indrelid AND NOT i.indisvalid
              JOIN pg_class c ON c.oid = i.indexrelid
              JOIN pg_class tc ON tc.oid = t.indexrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE t.indexrelid = ANY(SELECT to_regclass(x) FROM unnest($1::text[]) x)
               AND c.relname ~ ('^' || regexp_replace(tc.relname, '([^[:alnum:]_])', '\\\\\\1',
                                                      'g') || '_cc(new|old)[0-9]*$')
            """,
            names,
        )
        dropped, failed = [], []
        for r in rows:
            try:
                await ctx.sql.fetchval(
                    "SELECT ruvector.drop_leftover_index($1, to_regclass($2), "
                    "make_interval(secs => 2))",
                    ctx.collection_id,
                    r["name"],
                )
                dropped.append(r["name"])
            except Exception as exc:
                failed.append(f"{r['name']}: {why(exc, CLEANUP_GRANT)}")
        out = []
        if dropped:
            out.append(f"dropped the invalid {', '.join(dropped)}")
        if failed:
            out.append(f"could not drop {'; '.join(failed)}")
        return "; ".join(out)


async def _building(sql: Sql, partition: str) -> bool:
    return bool(
        await sql.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_progress_create_index "
            "WHERE relid = to_regclass($1))",
            partition,
        )
    )


def _per(size: int, live: int) -> float | None:
    return round(size / live, 1) if live else None
