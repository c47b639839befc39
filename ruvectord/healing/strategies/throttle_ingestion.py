"""throttle_ingestion: turn away a share of inserts while integrity is degraded.

Levels follow the design: 50 % of inserts in stress, 90 % in critical, bulk inserts 10 points
more. They live in ruvector.throttles, where `ruvector_integrity_gate` (throttle_factor) and
the optional guard trigger on the collection's table (SQLSTATE RV429, "retry after N s") read
them. Rollback restores exactly the levels `plan` saw, rows that did not exist included.

A problem confined to one tenant's partitions (HotspotCongestion naming a tenant: see
integrity/tenants.py) throttles that tenant only: its rows carry the tenant, and the guard
turns away only rows whose tenant column holds it ("(other)": every tenant without a scope of
its own). Anything else throttles the whole collection (tenant '').

A throttle is a lease: each row carries `expires_at`, which the acting daemon renews every
cycle while the collection is degraded (`renew`). The trigger and the gate ignore an expired
row, so a throttle whose daemon died, was paused or lost its database lapses by itself.

It is let go in steps once integrity is normal again (`step`, healing/brake.py), and verified
over twice the retry hint, so that writers told to come back have come back. For
ReplicationLag it acts only when the primary's write volume outruns the replica: throttling
cannot make a stalled replay apply WAL the replica already holds.

The guard trigger is DDL on a busy table, so it is installed ahead of time (when the actor
starts and the collection is normal); `execute` only installs it itself with a very short lock
timeout, and carries on with gate-only throttling if the table is too busy for that.
"""

from __future__ import annotations

import math
from typing import Any

from ruvectord.healing.problems import HotspotCongestion, Problem, ProblemKind, ReplicationLag
from ruvectord.healing.strategy import RemediationContext, RemediationResult, Sql
from ruvectord.integrity.hysteresis import State

OPERATIONS = ("insert", "bulk_insert")


class ThrottleIngestion:
    name = "throttle_ingestion"
    handles = frozenset(
        {ProblemKind.HOTSPOT_CONGESTION, ProblemKind.MEMORY_PRESSURE, ProblemKind.REPLICATION_LAG}
    )
    impact = 0.4  # medium-high: it affects writes
    estimated_duration = 5.0
    reversible = True
    supports_dry_run = True
    lift_on_recovery = True
    leased = True

    async def plan(self, ctx: RemediationContext) -> dict[str, Any]:
        tenant = target(ctx.problem)
        rows = await ctx.sql.fetch(
            "SELECT operation, throttle_pct, retry_after_seconds, action_id, "
            "extract(epoch FROM expires_at)::float8 AS expires_epoch "
            "FROM ruvector.throttles WHERE collection_id = $1 AND operation = ANY($2::text[]) "
            "AND tenant = $3",
            ctx.collection_id,
            list(OPERATIONS),
            tenant,
        )
        previous = {
            r["operation"]: {
                "throttle_pct": r["throttle_pct"],
                # rows written before CHECK constraints existed may hold NaN: never carry it on
                "retry_after_seconds": _finite_or(r["retry_after_seconds"], 5.0),
                "action_id": r["action_id"],
                "expires_epoch": _finite_or(r["expires_epoch"], 0.0),
            }
            for r in rows
        }
        # None: the row did not exist, and rollback deletes it again
        scope = {"tenant": tenant} if tenant else {}  # none: the whole collection
        return {"previous": {op: previous.get(op) for op in OPERATIONS}, **scope}

    def levels(self, ctx: RemediationContext) -> dict[str, int]:
        t = ctx.settings.throttle
        pct = t.critical_pct if ctx.state is State.CRITICAL else t.stress_pct
        return {"insert": pct, "bulk_insert": min(100, pct + t.bulk_extra_pct)}

    async def execute(self, ctx: RemediationContext) -> RemediationResult:
        if ctx.state is State.NORMAL:
            return RemediationResult.noop("integrity is normal")
        levels = self.levels(ctx)
        tenant = ctx.rollback_data.get("tenant", target(ctx.problem))
        scope = {"tenant": tenant} if tenant else {}
        if ctx.dry_run:
            return RemediationResult(True, 0, 0.0, {"dry_run": True, "would_set": levels, **scope})
        retry = ctx.settings.throttle.retry_after_seconds
        for op, pct in levels.items():
            await _set_level(
                ctx.sql, ctx.collection_id, op, pct, retry, ctx.action_id, ctx.lease_seconds, tenant
            )
        guard = "disabled by healing.throttle.install_trigger"
        if ctx.settings.throttle.install_trigger:
            guard = await ensure_guard(ctx.sql, ctx.collection_id, lock_timeout_ms=200)
        return RemediationResult(
            True,
            len(levels),
            0.0,
            {
                "throttle_pct": levels,
                "retry_after_seconds": retry,
                "lease_seconds": ctx.lease_seconds,
                "guard": guard,
                **scope,
            },
        )

    def cannot_act(self, problem: Problem) -> str | None:
        if isinstance(problem, ReplicationLag) and problem.replay_stalled:
            return (
                "the replica holds the WAL but does not replay it; throttling writes cannot "
                "make it replay"
            )
        return None

    def verify_seconds(self, ctx: RemediationContext) -> float:
        return 2 * ctx.settings.throttle.retry_after_seconds

    async def step(self, ctx: RemediationContext, fraction: float) -> bool:
        """`fraction` of the action's levels, in force for another lease; only on rows this
        action still holds (a lapsed or lifted throttle is never brought back)."""
        levels = {op: math.ceil(pct * fraction) for op, pct in self.levels(ctx).items()}
        changed = await ctx.sql.fetch(
            "UPDATE ruvector.throttles AS t SET throttle_pct = l.pct, "
            "expires_at = now() + make_interval(secs => $3), updated_at = now() "
            "FROM unnest($4::text[], $5::int[]) AS l(operation, pct) "
            "WHERE t.collection_id = $1 AND t.action_id = $2 AND t.operation = l.operation "
            "AND t.expires_at > statement_timestamp() RETURNING t.operation",
            ctx.collection_id,
            ctx.action_id,
            ctx.lease_seconds,
            list(levels),
            list(levels.values()),
        )
        return bool(changed)

    async def renew(self, ctx: RemediationContext) -> bool:
        # only rows still in force: a lease that lapsed, or that an operator lifted (expired
        # it), is never brought back
        renewed = await ctx.sql.fetch(
            "UPDATE ruvector.throttles SET expires_at = now() + make_interval(secs => $3), "
            "updated_at = now() WHERE collection_id = $1 AND action_id = $2 "
            "AND expires_at > statement_timestamp() RETURNING operation",
            ctx.collection_id,
            ctx.action_id,
            ctx.lease_seconds,
        )
        return bool(renewed)

    async def rollback(self, ctx: RemediationContext) -> None:
        previous: dict[str, Any] = ctx.rollback_data.get("previous", {})
        tenant: str = ctx.rollback_data.get("tenant", "")  # journals before tenants: ''
        for op in OPERATIONS:
            before = previous.get(op)
            if before is None:
                await ctx.sql.execute(
                    "DELETE FROM ruvector.throttles "
                    "WHERE collection_id = $1 AND operation = $2 AND tenant = $3",
                    ctx.collection_id,
                    op,
                    tenant,
                    idempotent=True,
                )
            else:
                await _set_level(
                    ctx.sql,
                    ctx.collection_id,
                    op,
                    before["throttle_pct"],
                    before["retry_after_seconds"],
                    before["action_id"],
                    None,
                    tenant,
                    expires_epoch=before.get("expires_epoch", 0.0),
                )


async def _set_level(
    sql: Sql,
    collection_id: int,
    op: str,
    pct: int,
    retry: float,
    action_id: int | None,
    lease_seconds: float | None,
    tenant: str,
    *,
    expires_epoch: float = 0.0,
) -> None:
    """Upsert one level; it expires `lease_seconds` from now, or at `expires_epoch`."""
    await sql.execute(
        """
        INSERT INTO ruvector.throttles
               (collection_id, operation, throttle_pct, retry_after_seconds, action_id,
                expires_at, updated_at, tenant)
        VALUES ($1, $2, $3, $4, $5,
                CASE WHEN $6::float8 IS NULL THEN to_timestamp($7::float8)
                     ELSE now() + make_interval(secs => $6::float8) END, now(), $8)
        ON CONFLICT (collection_id, operation, tenant) DO UPDATE SET
            throttle_pct = EXCLUDED.throttle_pct,
            retry_after_seconds = EXCLUDED.retry_after_seconds,
            action_id = EXCLUDED.action_id, expires_at = EXCLUDED.expires_at, updated_at = now()
        """,
        collection_id,
        op,
        pct,
        retry,
        action_id,
        lease_seconds,
        expires_epoch,
        tenant,
        idempotent=True,
    )


def target(problem: Problem) -> str:
    """The tenant a throttle for this problem holds back; '' for the whole collection."""
    if isinstance(problem, HotspotCongestion) and problem.tenant is not None:
        return problem.tenant
    return ""


def _finite_or(value: float | None, default: float) -> float:
    return value if value is not None and math.isfinite(value) else default


async def ensure_guard(sql: Sql, collection_id: int, *, lock_timeout_ms: int) -> str:
    """Install the guard trigger unless present; never wait long for the table's lock.

    Only through ruvector.install_throttle_guard (owned by ruvector_owner): the daemon's own
    role holds no TRIGGER privilege, so it cannot attach anything else to a collection table.
    """
    try:
        state: str = await sql.fetchval(
            "SELECT ruvector.install_throttle_guard($1, make_interval(secs => $2))",
            collection_id,
            lock_timeout_ms / 1000.0,
        )
    except Exception as exc:  # the table is busy (lock_timeout) or the owner lacks TRIGGER
        why = f"{type(exc).__name__}: {exc}"
        if getattr(exc, "sqlstate", None) == "42501":
            why += (
                " (ruvector_owner needs TRIGGER on the collection's table and partitions: "
                "psql -v tables=... -f deploy/sql/roles.sql)"
            )
        return f"not installed ({why}); throttling through the gate only"
    return state
