"""The healing journal, outcomes and weights in Postgres (healing.journal.HealingJournal).

Status changes are conditional: a row that reached a final status never changes again, so a
former actor finishing its rollback and a new actor recovering the same row cannot undo each
other's journal entry. The partial unique index `healing_actions_one_in_flight` makes a second
in-flight action impossible, whatever any daemon believes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from ruvectord.healing.journal import (
    IN_FLIGHT,
    ActionDraft,
    ActionRow,
    InFlightError,
    OutcomeRecord,
    PastRow,
    Request,
    TouchedRow,
)
from ruvectord.healing.learning import OutcomeRow, StrategyStats
from ruvectord.postgres.pool import Database

FINAL = (
    "succeeded",
    "unverified",
    "rolled_back",
    "rollback_failed",
    "failed",
    "interrupted",
    "expired",
    "rejected",
    "aborted",
)
_ACTION_COLUMNS = """
    a.id, a.collection_id, c.name AS collection,
    format('%I.%I', c.table_schema, c.table_name) AS table_name,
    a.problem_class, a.problem_details, a.strategy_name, a.strategy_params, a.status,
    a.reversible, a.integrity_state, a.initial_lambda, a.rollback_data, a.created_at
"""


def _row(r: asyncpg.Record) -> ActionRow:
    return ActionRow(
        id=r["id"],
        collection_id=r["collection_id"],
        collection=r["collection"],
        table=r["table_name"],
        problem_class=r["problem_class"],
        problem_details=r["problem_details"],
        strategy_name=r["strategy_name"],
        strategy_params=r["strategy_params"],
        status=r["status"],
        reversible=r["reversible"],
        integrity_state=r["integrity_state"],
        initial_lambda=r["initial_lambda"],
        rollback_data=r["rollback_data"],
        created_at=r["created_at"],
    )


class HealingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ actions

    async def open_action(self, draft: ActionDraft) -> int:
        try:
            action_id: int = await self.db.fetchval(
                """
                INSERT INTO ruvector.healing_actions
                       (collection_id, problem_class, problem_details, strategy_name,
                        strategy_params, status, dry_run, reversible, integrity_state,
                        initial_lambda, rollback_data, actor, created_at, started_at,
                        expires_at, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                        CASE WHEN $6::text = 'running' THEN $13::timestamptz END, $14, now())
                RETURNING id
                """,
                draft.collection_id,
                draft.problem_class,
                dict(draft.problem_details),
                draft.strategy_name,
                dict(draft.strategy_params),
                draft.status,
                draft.dry_run,
                draft.reversible,
                draft.integrity_state,
                draft.initial_lambda,
                dict(draft.rollback_data),
                draft.actor,
                draft.created_at,
                draft.expires_at,
            )
        except asyncpg.UniqueViolationError:
            busy = await self.db.fetchval(
                "SELECT id FROM ruvector.healing_actions WHERE status = ANY($1::text[])",
                list(IN_FLIGHT),
            )
            raise InFlightError(f"action {busy} is already in flight on this database") from None
        return action_id

    async def update_action(self, action_id: int, status: str, **fields: Any) -> bool:
        unknown = set(fields) - {
            "rollback_data",
            "result",
            "error_message",
            "final_lambda",
            "started_at",
            "completed_at",
        }
        if unknown:
            raise ValueError(f"cannot journal {sorted(unknown)}")
        status_row = await self.db.fetchval(
            """
            UPDATE ruvector.healing_actions SET
                status = $2,
                rollback_data = coalesce($3, rollback_data),
                result = coalesce($4, result),
                error_message = coalesce($5, error_message),
                final_lambda = coalesce($6, final_lambda),
                started_at = coalesce($7, started_at),
                completed_at = coalesce($8, completed_at),
                updated_at = now()
             WHERE id = $1 AND NOT (status = ANY($9::text[]))
            RETURNING status
            """,
            action_id,
            status,
            fields.get("rollback_data"),
            fields.get("result"),
            fields.get("error_message"),
            fields.get("final_lambda"),
            fields.get("started_at"),
            fields.get("completed_at"),
            list(FINAL),
        )
        return status_row is not None

    async def claim_approved(
        self, action_id: int, now: datetime, rollback_data: Mapping[str, Any]
    ) -> bool:
        try:
            claimed = await self.db.fetchval(
                "UPDATE ruvector.healing_actions SET status = 'running', started_at = $2, "
                "rollback_data = $3, updated_at = now() "
                "WHERE id = $1 AND status = 'approved' RETURNING id",
                action_id,
                now,
                dict(rollback_data),
            )
        except asyncpg.UniqueViolationError:
            return False
        return claimed is not None

    async def approved_actions(self, collection_id: int) -> list[ActionRow]:
        rows = await self.db.fetch(
            f"SELECT {_ACTION_COLUMNS} FROM ruvector.healing_actions a "
            "JOIN ruvector.collections c ON c.id = a.collection_id "
            "WHERE a.collection_id = $1 AND a.status = 'approved' ORDER BY a.id",
            collection_id,
        )
        return [_row(r) for r in rows]

    async def pending_action(self, collection_id: int, strategy: str) -> ActionRow | None:
        r = await self.db.fetchrow(
            f"SELECT {_ACTION_COLUMNS} FROM ruvector.healing_actions a "
            "JOIN ruvector.collections c ON c.id = a.collection_id "
            "WHERE a.collection_id = $1 AND a.strategy_name = $2 "
            "AND a.status IN ('pending_approval', 'approved') ORDER BY a.id LIMIT 1",
            collection_id,
            strategy,
        )
        return _row(r) if r else None

    async def in_flight(self) -> list[ActionRow]:
        rows = await self.db.fetch(
            f"SELECT {_ACTION_COLUMNS} FROM ruvector.healing_actions a "
            "JOIN ruvector.collections c ON c.id = a.collection_id "
            "WHERE a.status = ANY($1::text[]) ORDER BY a.id",
            list(IN_FLIGHT),
        )
        return [_row(r) for r in rows]

    async def in_force(self, collection_id: int | None, strategies: list[str]) -> list[ActionRow]:
        rows = await self.db.fetch(
            f"SELECT {_ACTION_COLUMNS} FROM ruvector.healing_actions a "
            "JOIN ruvector.collections c ON c.id = a.collection_id "
            "WHERE ($1::int IS NULL OR a.collection_id = $1) AND a.status = 'succeeded' "
            "AND a.strategy_name = ANY($2::text[]) ORDER BY a.id DESC",
            collection_id,
            strategies,
        )
        return [_row(r) for r in rows]

    async def mark_lifted(
        self, action_id: int, now: datetime, why: str, by: str | None = None
    ) -> bool:
        done = await self.db.fetchval(
            "UPDATE ruvector.healing_actions SET status = 'lifted', updated_at = now(), "
            "error_message = coalesce(error_message || '; ', '') || 'lifted at ' || $2::text "
            "|| ': ' || $3, decided_by = coalesce($4, decided_by), "
            "decided_at = CASE WHEN $4::text IS NULL THEN decided_at ELSE $5 END "
            "WHERE id = $1 AND status = 'succeeded' RETURNING id",
            action_id,
            now.isoformat(timespec="seconds"),
            why,
            by,
            now,
        )
        return done is not None

    async def expire_pending(self, now: datetime) -> list[int]:
        rows = await self.db.fetch(
            "UPDATE ruvector.healing_actions SET status = 'expired', completed_at = $1, "
            "error_message = 'approval not given before expires_at', updated_at = now() "
            "WHERE status IN ('pending_approval', 'approved') AND expires_at < $1 RETURNING id",
            now,
        )
        return [r["id"] for r in rows]

    async def list_actions(self, limit: int = 20) -> list[asyncpg.Record]:
        return await self.db.fetch(
            "SELECT a.id, c.name AS collection, a.strategy_name, a.problem_class, a.status, "
            "a.initial_lambda, a.final_lambda, a.created_at, a.expires_at, a.error_message "
            "FROM ruvector.healing_actions a JOIN ruvector.collections c "
            "ON c.id = a.collection_id ORDER BY a.id DESC LIMIT $1",
            limit,
        )

    # ------------------------------------------------------------------ history

    async def undo_succeeded(self, action_id: int, status: str, now: datetime, why: str) -> bool:
        assert status in ("rolled_back", "rollback_failed")
        done = await self.db.fetchval(
            "UPDATE ruvector.healing_actions SET status = $2, completed_at = $3, "
            "updated_at = now(), error_message = coalesce(error_message || '; ', '') || $4 "
            "WHERE id = $1 AND status = 'succeeded' RETURNING id",
            action_id,
            status,
            now,
            why,
        )
        return done is not None

    async def history(self, collection_id: int, limit: int) -> list[PastRow]:
        # an action an operator lifted was both an attempt and a human's no
        rows = await self.db.fetch(
            """
            SELECT id, strategy_name, 'attempt' AS kind, coalesce(started_at, created_at) AS at
              FROM ruvector.healing_actions
             WHERE collection_id = $1
               AND status NOT IN ('pending_approval', 'approved', 'expired', 'rejected')
            UNION ALL
            SELECT id, strategy_name, 'rejection', coalesce(decided_at, updated_at)
              FROM ruvector.healing_actions
             WHERE collection_id = $1
               AND (status = 'rejected' OR (status = 'lifted' AND decided_by IS NOT NULL))
             ORDER BY id DESC LIMIT $2
            """,
            collection_id,
            limit,
        )
        return [PastRow(r["id"], r["kind"], r["strategy_name"], r["at"]) for r in rows]

    async def touched_since(self, collection_id: int, since: datetime) -> list[TouchedRow]:
        # an action names its targets in its result (what it did) or, if it never got that
        # far (a crash, a failure), in its rollback data (what it planned): both count
        rows = await self.db.fetch(
            """
            SELECT a.strategy_name, t.target, coalesce(a.started_at, a.created_at) AS at
              FROM ruvector.healing_actions a
             CROSS JOIN LATERAL (
                   SELECT CASE WHEN jsonb_typeof(a.result -> 'targets') = 'array'
                               THEN a.result -> 'targets'
                               WHEN jsonb_typeof(a.rollback_data -> 'targets') = 'array'
                               THEN a.rollback_data -> 'targets'
                               ELSE '[]'::jsonb END AS targets) j
             CROSS JOIN LATERAL jsonb_array_elements_text(j.targets) AS t(target)
             WHERE a.collection_id = $1 AND coalesce(a.started_at, a.created_at) >= $2
               AND a.status NOT IN ('pending_approval', 'approved', 'expired', 'rejected')
            """,
            collection_id,
            since,
        )
        return [TouchedRow(r["strategy_name"], r["target"], r["at"]) for r in rows]

    async def pending_requests(self) -> list[Request]:
        rows = await self.db.fetch(
            "SELECT id, kind, collection, action_id, payload, requested_by, requested_at "
            "FROM ruvector.healing_requests WHERE processed_at IS NULL ORDER BY id LIMIT 100"
        )
        return [
            Request(
                r["id"],
                r["kind"],
                r["collection"],
                r["action_id"],
                r["payload"],
                r["requested_by"],
                r["requested_at"],
            )
            for r in rows
        ]

    async def finish_request(
        self, request_id: int, status: str, result: Mapping[str, Any], by: str
    ) -> bool:
        done = await self.db.fetchval(
            "UPDATE ruvector.healing_requests SET processed_at = now(), status = $2, "
            "result = $3, processed_by = $4 WHERE id = $1 AND processed_at IS NULL RETURNING id",
            request_id,
            status,
            dict(result),
            by,
        )
        return done is not None

    async def lambdas_since(
        self, collection_id: int, since: datetime, limit: int
    ) -> list[tuple[float, float | None]]:
        rows = await self.db.fetch(
            "SELECT initial_lambda, final_lambda FROM ruvector.healing_outcomes "
            "WHERE collection_id = $1 AND started_at >= $2 ORDER BY started_at DESC LIMIT $3",
            collection_id,
            since,
            limit,
        )
        return [(r["initial_lambda"], r["final_lambda"]) for r in rows]

    async def record_decision(
        self, collection_id: int, sampled_at: datetime, decision: Mapping[str, Any]
    ) -> None:
        # the first decision on a sample stands (a sample is decided on once)
        await self.db.execute(
            "INSERT INTO ruvector.healing_decisions (collection_id, sampled_at, decision) "
            "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            collection_id,
            sampled_at,
            dict(decision),
            idempotent=True,
        )

    async def degraded_since(self, collection: str) -> datetime | None:
        at: datetime | None = await self.db.fetchval(
            "SELECT max(created_at) FROM ruvector.integrity_events WHERE collection = $1 "
            "AND event_type = 'state_change' AND previous_state = 'normal'",
            collection,
        )
        return at

    async def record_outcome(self, o: OutcomeRecord) -> None:
        await self.db.execute(
            """
            INSERT INTO ruvector.healing_outcomes
                   (collection_id, problem_class, problem_details, strategy_name, strategy_params,
                    started_at, completed_at, duration_ms, success, verified, actions_taken,
                    improvement_pct, error_message, initial_lambda, final_lambda, witness_edges,
                    system_metrics)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
            """,
            o.collection_id,
            o.problem_class,
            dict(o.problem_details),
            o.strategy_name,
            dict(o.strategy_params),
            o.started_at,
            o.completed_at,
            o.duration_ms,
            o.success,
            o.verified,
            o.actions_taken,
            o.improvement_pct,
            o.error_message,
            o.initial_lambda,
            o.final_lambda,
            o.witness_edges,
            dict(o.system_metrics),
        )

    async def outcomes_since(
        self, since: datetime, collection_id: int | None = None
    ) -> list[OutcomeRow]:
        rows = await self.db.fetch(
            """
            SELECT strategy_name, success, verified, improvement_pct, started_at, completed_at,
                   coalesce((system_metrics ->> 'time_to_verification_seconds')::float8,
                            -- written by 0.x daemons under its old, misleading name
                            (system_metrics ->> 'time_to_recovery_seconds')::float8) AS ttv
              FROM ruvector.healing_outcomes
             WHERE started_at >= $1 AND ($2::int IS NULL OR collection_id = $2)
             ORDER BY started_at
            """,
            since,
            collection_id,
        )
        return [
            OutcomeRow(
                r["strategy_name"],
                r["success"],
                r["verified"],
                r["improvement_pct"],
                r["started_at"],
                r["completed_at"],
                r["ttv"],
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ weights

    async def save_weights(self, stats: Mapping[str, Any]) -> None:
        rows: list[StrategyStats] = list(stats.values())
        async with self.db.transaction() as conn:
            await conn.executemany(
                """
                INSERT INTO ruvector.strategy_weights AS w
                       (strategy_name, weight, attempts, successes, success_rate, avg_improvement,
                        updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, now())
                ON CONFLICT (strategy_name) DO UPDATE SET
                    weight = EXCLUDED.weight, attempts = EXCLUDED.attempts,
                    successes = EXCLUDED.successes, success_rate = EXCLUDED.success_rate,
                    avg_improvement = EXCLUDED.avg_improvement, updated_at = now()
                """,
                [
                    (s.name, s.weight, s.attempts, s.successes, s.success_rate, s.avg_improvement)
                    for s in rows
                ],
            )

    async def load_weights(self) -> dict[str, float]:
        rows = await self.db.fetch("SELECT strategy_name, weight FROM ruvector.strategy_weights")
        return {r["strategy_name"]: r["weight"] for r in rows}
