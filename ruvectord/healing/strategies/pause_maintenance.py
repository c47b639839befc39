"""pause_maintenance: hold back maintenance that contends with the collection's workload.

For MaintenanceContention (the design's PauseMaintenanceJobs; impact 0.1; reversible). What
it may pause, each found from the problem's jobs (the witness edges' maintenance nodes) and
the statistics views, each restored exactly by `rollback`:

- autovacuum on the partitions the contending jobs touch: their `autovacuum_enabled`
  reloption (set to false; rollback puts back exactly what `plan` read: true, false, or
  absent), and a running autovacuum worker there is cancelled;
- pg_cron jobs of this database whose command names the collection's tables
  (`cron.alter_job(active := false)`, re-activated by rollback) and their running runs;
- application jobs registered in ruvector.maintenance_jobs (priority below high) by holding
  their advisory lock on a session of its own (the job waits between batches);
- a person's manual VACUUM / REINDEX / CREATE INDEX / CLUSTER only when
  `cancel_manual_sessions` allows it (default: never; the decision line says so).

Never an anti-wraparound vacuum, nor any vacuum of a relation whose age(relfrozenxid) (or
multixact age) is above 80 % of its freeze max age: such a partition is left alone, and the
decision line says why. Every change goes through one of migration 0006's functions.

How it ends. It is lifted on recovery (holds.py rolls it back once the collection is normal)
and after `max_pause_seconds`, whichever comes first: it is `leased`, and `renew` refuses once
the pause is older than that, so the engine lifts it. A reloption and a cron job's `active`
flag cannot lapse inside the database by themselves, so a daemon killed mid-pause leaves them
until a daemon starts again: recovery (journal.recover) rolls back an action still in
flight, and a paused one that had succeeded is lifted at the next cycle (normal: released;
degraded: its pause is older than its lease, so renew refuses). Anti-wraparound vacuums run
whatever the reloption says, so the worst a dead daemon leaves is bloat, never wraparound.
The application jobs' pause is a true lease: the advisory lock goes with the session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio

from ruvectord.config import Config, PauseMaintenanceConfig
from ruvectord.healing.maintenance import (
    CannotAct,
    open_session,
    seconds_setting,
    sqlstate,
    why,
)
from ruvectord.healing.problems import MaintenanceContention, ProblemKind
from ruvectord.healing.strategy import RemediationContext, RemediationResult, Session
from ruvectord.logs import get_logger

log = get_logger("ruvectord.healing.pause_maintenance")

FREEZE_SHARE_LIMIT = 0.8
# a reloption change waits this long at most; longer than deadlock_timeout (1 s by default),
# after which PostgreSQL itself cancels an autovacuum (never an anti-wraparound one) in its way
LOCK_WAIT_SECONDS = 3.0
OWNER_GRANT = (
    "ALTER TABLE ... SET (autovacuum_enabled) needs the table owner's rights on every "
    "PostgreSQL version: psql -v tables=... -v maintenance=on -f deploy/sql/roles.sql"
)
CRON_GRANT = "psql -v tables=... -v cron=on -f deploy/sql/roles.sql (pg_cron's alter_job)"
SIGNAL_GRANT = (
    "cancelling another role's backend needs pg_signal_backend (and, on PostgreSQL 18, "
    "pg_signal_autovacuum_worker for autovacuum) for ruvector_owner: roles.sql -v maintenance=on"
)

# the partitions the contending jobs touch, what rollback needs of each, and how close each
# is to a forced vacuum; no lock is taken (pg_inherits, pg_locks, pg_class only)
_PARTITIONS = """
WITH RECURSIVE tree(relid) AS (
    SELECT $2::regclass::oid
    UNION ALL
    SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid
), touched AS (
    SELECT coalesce(ix.indrelid, l.relation) AS rel, l.pid
      FROM pg_locks l LEFT JOIN pg_index ix ON ix.indexrelid = l.relation
     WHERE l.locktype = 'relation' AND l.pid = ANY($1::int[])
    UNION
    SELECT relid, pid FROM pg_stat_progress_vacuum WHERE pid = ANY($1::int[])
    UNION
    SELECT relid, pid FROM pg_stat_progress_create_index WHERE pid = ANY($1::int[])
    UNION
    SELECT relid, pid FROM pg_stat_progress_cluster WHERE pid = ANY($1::int[])
)
SELECT format('%I.%I', n.nspname, c.relname) AS name,
       (SELECT option_value FROM pg_options_to_table(c.reloptions)
         WHERE option_name = 'autovacuum_enabled') AS autovacuum_enabled,
       -- as ruvector.freeze_age_share: the table's own freeze max ages where it sets them
       greatest(age(c.relfrozenxid)::float8 / coalesce(
                    (SELECT option_value::float8 FROM pg_options_to_table(c.reloptions)
                      WHERE option_name = 'autovacuum_freeze_max_age'),
                    current_setting('autovacuum_freeze_max_age')::float8),
                mxid_age(c.relminmxid)::float8 / coalesce(
                    (SELECT option_value::float8 FROM pg_options_to_table(c.reloptions)
                      WHERE option_name = 'autovacuum_multixact_freeze_max_age'),
                    current_setting('autovacuum_multixact_freeze_max_age')::float8))
           AS freeze_share,
       array_agg(DISTINCT t.pid ORDER BY t.pid) AS pids,
       coalesce(s.n_live_tup, 0) + coalesce(s.n_dead_tup, 0) AS tuples
  FROM tree
  JOIN pg_class c ON c.oid = tree.relid AND c.relkind IN ('r', 'm')
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN touched t ON t.rel = c.oid
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 GROUP BY 1, 2, 3, 5
 ORDER BY 5 DESC, 1
"""

# the problem's jobs, and every other maintenance session on the same partitions: the min
# cut may name only the long reader a VACUUM FULL waits for, not the VACUUM FULL behind it
_JOBS = """
SELECT a.pid, a.backend_type, coalesce(a.query, '') AS query,
       coalesce(a.application_name, '') AS app, a.state,
       p.relid::regclass::text AS vacuuming
  FROM pg_stat_activity a LEFT JOIN pg_stat_progress_vacuum p ON p.pid = a.pid
 WHERE a.pid = ANY($1::int[])
    OR (a.pid <> pg_backend_pid()
        AND (a.backend_type = 'autovacuum worker'
             OR a.query ~* '^\\s*(vacuum|reindex|create\\s+(unique\\s+)?index|cluster)\\M')
        AND EXISTS (SELECT 1 FROM pg_locks l LEFT JOIN pg_index ix ON ix.indexrelid = l.relation
                     WHERE l.pid = a.pid AND l.locktype = 'relation'
                       AND coalesce(ix.indrelid, l.relation) = ANY($2::regclass[])))
 ORDER BY a.pid
"""

_MANUAL = ("vacuum", "reindex", "create index", "create unique index", "cluster")


class PauseMaintenance:
    name = "pause_maintenance"
    handles = frozenset({ProblemKind.MAINTENANCE_CONTENTION})
    impact = 0.1  # low: it only holds work back, and never the work that prevents wraparound
    reversible = True
    supports_dry_run = True
    lift_on_recovery = True
    leased = True

    def __init__(self, config: Callable[[], Config] | None = None) -> None:
        self._config = config
        # advisory-lock sessions that hold application jobs, per action
        self._holders: dict[int, Session] = {}

    def settings(self, ctx: RemediationContext | None = None) -> PauseMaintenanceConfig:
        if ctx is not None:
            return ctx.settings.strategies.pause_maintenance
        if self._config is not None:
            return self._config().healing.strategies.pause_maintenance
        return PauseMaintenanceConfig()

    @property
    def estimated_duration(self) -> float:
        # draining the application jobs' batches, and a few seconds per lock_timeout
        return self.settings().drain_seconds + 30.0

    # ------------------------------------------------------------------ plan

    async def plan(self, ctx: RemediationContext) -> dict[str, Any]:
        cfg = self.settings(ctx)
        problem = ctx.problem
        pids = list(problem.job_pids) if isinstance(problem, MaintenanceContention) else []
        resting = ctx.params.get("resting_targets", {})
        partitions: list[dict[str, Any]] = []
        left_alone: list[str] = []
        for r in await ctx.sql.fetch(_PARTITIONS, pids, ctx.table):
            name = r["name"]
            if r["freeze_share"] > FREEZE_SHARE_LIMIT:
                left_alone.append(
                    f"{name} left alone: age(relfrozenxid) at {r['freeze_share']:.0%} of "
                    f"autovacuum_freeze_max_age (above {FREEZE_SHARE_LIMIT:.0%}), its vacuum "
                    "must run"
                )
            elif name in resting:
                left_alone.append(f"{name} paused {resting[name]:.0f} s too recently")
            elif len(partitions) >= cfg.max_targets_per_action:
                left_alone.append(f"{name}: over max_targets_per_action")
            else:
                partitions.append(
                    {
                        "name": name,
                        "autovacuum_enabled": r["autovacuum_enabled"],  # None: not set
                        "pids": list(r["pids"]),
                    }
                )
        touched = [p["name"] for p in partitions]
        jobs = [dict(r) for r in await ctx.sql.fetch(_JOBS, pids, touched)]
        cron: list[dict[str, Any]] = []
        if cfg.pause_cron_jobs:
            try:
                rows = await ctx.sql.fetch(
                    "SELECT jobid, jobname, active, username FROM ruvector.cron_jobs($1) "
                    "WHERE active",
                    ctx.collection_id,
                )
            except Exception as exc:
                left_alone.append(f"pg_cron jobs not read: {why(exc, CRON_GRANT)}")
                rows = []
            for r in rows[: cfg.max_targets_per_action]:
                cron.append({**dict(r), "target": f"cron:{r['jobid']}"})
        app = [
            dict(r)
            for r in await ctx.sql.fetch(
                "SELECT name, lock_key, priority FROM ruvector.maintenance_jobs "
                "WHERE (collection_id = $1 OR collection_id IS NULL) AND pausable "
                "AND priority <> 'high' AND NOT paused ORDER BY priority, name LIMIT $2",
                ctx.collection_id,
                cfg.max_targets_per_action,
            )
        ]
        now = await ctx.sql.fetchval("SELECT extract(epoch FROM now())::float8")
        targets = (
            [p["name"] for p in partitions]
            + [c["target"] for c in cron]
            + [f"job:{a['name']}" for a in app]
        )
        if not targets and not jobs:
            raise CannotAct("no maintenance to pause: " + ("; ".join(left_alone) or "none found"))
        return {
            "targets": targets,
            "partitions": partitions,
            "jobs": jobs,
            "cron_jobs": cron,
            "app_jobs": app,
            "left_alone": left_alone,
            "paused_at_epoch": now,
            "max_pause_seconds": cfg.max_pause_seconds,
        }

    # ------------------------------------------------------------------ execute

    async def execute(self, ctx: RemediationContext) -> RemediationResult:
        cfg = self.settings(ctx)
        data = ctx.rollback_data
        if ctx.dry_run:
            return RemediationResult(True, 0, 0.0, {"dry_run": True, "would_pause": data})
        done: list[str] = []
        notes: list[str] = list(data.get("left_alone", []))
        ours = {p["name"] for p in data["partitions"]}
        cid = ctx.collection_id

        for job in data["jobs"]:
            pid, query = job["pid"], job["query"].strip()
            if job["backend_type"] == "autovacuum worker":
                if not cfg.cancel_autovacuum:
                    notes.append(f"autovacuum pid {pid} left running (cancel_autovacuum: false)")
                    continue
                try:
                    said = await ctx.sql.fetchval(
                        "SELECT ruvector.cancel_autovacuum($1, $2)", cid, pid
                    )
                except Exception as exc:
                    said = f"not cancelled: {why(exc, SIGNAL_GRANT)}"
                (done if said == "cancelled" else notes).append(f"autovacuum pid {pid}: {said}")
            elif query.lower().startswith(_MANUAL):
                what = f"manual {query.split()[0].upper()} (pid {pid})"
                if not cfg.cancel_manual_sessions:
                    notes.append(
                        f"{what} left alone: never cancel a person's session "
                        "(cancel_manual_sessions: false)"
                    )
                    continue
                try:
                    said = await ctx.sql.fetchval(
                        "SELECT ruvector.cancel_manual_maintenance($1, $2)", cid, pid
                    )
                except Exception as exc:
                    said = f"not cancelled: {why(exc, SIGNAL_GRANT)}"
                (done if said == "cancelled" else notes).append(f"{what}: {said}")

        for part in data["partitions"]:
            try:
                await ctx.sql.fetchval(
                    "SELECT ruvector.set_autovacuum($1, $2::regclass, 'false', "
                    "make_interval(secs => $3))",
                    cid,
                    part["name"],
                    LOCK_WAIT_SECONDS,
                )
                done.append(f"autovacuum off on {part['name']}")
            except Exception as exc:
                notes.append(f"autovacuum not paused on {part['name']}: {why(exc, OWNER_GRANT)}")
                ours.discard(part["name"])

        for job in data["cron_jobs"]:
            try:
                await ctx.sql.fetchval(
                    "SELECT ruvector.cron_set_active($1, $2, false)", cid, job["jobid"]
                )
                runs = await ctx.sql.fetchval(
                    "SELECT ruvector.cron_cancel_runs($1, $2)", cid, job["jobid"]
                )
                done.append(
                    f"pg_cron job {job['jobid']} ({job['jobname'] or 'unnamed'}) paused"
                    + (f", {runs} run(s) cancelled" if runs else "")
                )
            except Exception as exc:
                notes.append(f"pg_cron job {job['jobid']} not paused: {why(exc, CRON_GRANT)}")

        if data["app_jobs"]:
            held = await self._hold_app_jobs(ctx, cfg)
            done += [f"job {n} paused" for n in held[0]]
            notes += held[1]

        metadata: dict[str, Any] = {
            "targets": data["targets"],
            "paused": done,
            "decision": "; ".join(notes) if notes else "",
            "max_pause_seconds": data["max_pause_seconds"],
        }
        if not done:
            metadata["decision"] = ""  # the error says it all
            return RemediationResult(
                False, 0, 0.0, metadata, "nothing could be paused: " + "; ".join(notes)
            )
        return RemediationResult(True, len(done), 0.0, metadata)

    async def _hold_app_jobs(
        self, ctx: RemediationContext, cfg: PauseMaintenanceConfig
    ) -> tuple[list[str], list[str]]:
        held: list[str] = []
        notes: list[str] = []
        session = await open_session(
            ctx, {"lock_timeout": seconds_setting(max(0.001, cfg.drain_seconds))}
        )
        for job in ctx.rollback_data["app_jobs"]:
            try:
                # waits for the job's current batch (its shared lock) up to drain_seconds
                await session.fetchval("SELECT pg_advisory_lock($1)", job["lock_key"])
                held.append(job["name"])
            except Exception as exc:
                if sqlstate(exc) == "55P03":
                    notes.append(f"job {job['name']} still busy after {cfg.drain_seconds:g} s")
                else:
                    notes.append(f"job {job['name']} not paused: {why(exc)}")
        if not held:
            await session.close()
            return held, notes
        assert ctx.action_id is not None
        self._holders[ctx.action_id] = session
        await ctx.sql.execute(
            "UPDATE ruvector.maintenance_jobs SET paused = true, paused_by = $2, "
            "updated_at = now() WHERE name = ANY($1::text[])",
            held,
            ctx.action_id,
            idempotent=True,
        )
        return held, notes

    # ------------------------------------------------------------------ lease

    async def renew(self, ctx: RemediationContext) -> bool:
        """False once the pause is older than max_pause_seconds: the engine then lifts it."""
        started = float(ctx.rollback_data.get("paused_at_epoch", 0.0))
        limit = float(
            ctx.rollback_data.get("max_pause_seconds", self.settings(ctx).max_pause_seconds)
        )
        now = await ctx.sql.fetchval("SELECT extract(epoch FROM now())::float8")
        return bool(now - started < limit)

    # ------------------------------------------------------------------ rollback

    async def rollback(self, ctx: RemediationContext) -> None:
        data = ctx.rollback_data
        cid = ctx.collection_id
        failures: list[str] = []
        # the application jobs first: they are waiting right now
        session = self._holders.pop(ctx.action_id or -1, None)
        if session is not None:
            await session.close()  # the advisory locks go with the session
        if ctx.action_id is not None:
            await ctx.sql.execute(
                "UPDATE ruvector.maintenance_jobs SET paused = false, paused_by = NULL, "
                "updated_at = now() WHERE paused_by = $1",
                ctx.action_id,
                idempotent=True,
            )
        for job in data.get("cron_jobs", []):
            try:
                await ctx.sql.fetchval(
                    "SELECT ruvector.cron_set_active($1, $2, true)", cid, job["jobid"]
                )
            except Exception as exc:
                failures.append(f"pg_cron job {job['jobid']}: {why(exc, CRON_GRANT)}")
        for part in data.get("partitions", []):
            value = part.get("autovacuum_enabled")  # the exact text, or None: not set
            now = await ctx.sql.fetchval(
                "SELECT (SELECT option_value FROM pg_options_to_table(c.reloptions) "
                "WHERE option_name = 'autovacuum_enabled') FROM pg_class c "
                "WHERE c.oid = $1::regclass",
                part["name"],
            )
            if now == value:
                continue  # never changed (or already restored): take no lock for nothing
            for attempt in range(3):
                try:
                    await ctx.sql.fetchval(
                        "SELECT ruvector.set_autovacuum($1, $2::regclass, $3, "
                        "make_interval(secs => $4))",
                        cid,
                        part["name"],
                        value,
                        LOCK_WAIT_SECONDS,
                    )
                    break
                except Exception as exc:
                    if sqlstate(exc) == "55P03" and attempt < 2:  # lock_not_available
                        await anyio.sleep(0.5)
                        continue
                    failures.append(f"autovacuum on {part['name']}: {why(exc, OWNER_GRANT)}")
                    break
        if failures:
            raise RuntimeError("could not restore " + "; ".join(failures))
        log.info("maintenance_resumed", action_id=ctx.action_id, at=time.time())
