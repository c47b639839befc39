"""Reads and writes of the ruvector.* tables that the integrity monitor owns.

All values travel as query parameters; identifiers never come from user input here (the table
names are ours). One sample is persisted in one transaction: the sample row, the state, the
graph when one is due (at transitions and periodically) and, on a state change, the signed
event -- so a reader never sees a state without the sample that caused it. Retention (the
samples, the graphs, the audit trail, the healing history) lives in postgres/retention.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from ruvectord.audit import Signer, event_hash
from ruvectord.config import CollectionConfig, Config
from ruvectord.integrity.graph_record import graph_document
from ruvectord.integrity.monitor import Held, SampleRecord
from ruvectord.integrity.tenant_monitor import TenantRecord, TenantThrottle
from ruvectord.postgres.pool import Database


class Store:
    def __init__(self, db: Database, signer: Signer | None = None) -> None:
        self.db = db
        self.signer = signer  # events are signed here, as links of the audit chain

    # ------------------------------------------------------------------ collections

    async def sync_collections(self, config: Config) -> dict[str, int]:
        """Mirror the configured collections; returns name -> id."""
        ids: dict[str, int] = {}
        async with self.db.transaction() as conn:
            for c in config.collections:
                ids[c.name] = await self._upsert_collection(conn, c, config)
            await conn.execute(
                "UPDATE ruvector.collections SET configured = false, updated_at = now() "
                "WHERE configured AND NOT (name = ANY($1::text[]))",
                list(ids),
            )
        return ids

    async def _upsert_collection(
        self, conn: asyncpg.Connection, c: CollectionConfig, config: Config
    ) -> int:
        cid: int = await conn.fetchval(
            """
            INSERT INTO ruvector.collections
                   (name, table_schema, table_name, vector_column, tenant_column, budgets)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (name) DO UPDATE SET
                table_schema = EXCLUDED.table_schema, table_name = EXCLUDED.table_name,
                vector_column = EXCLUDED.vector_column, tenant_column = EXCLUDED.tenant_column,
                budgets = EXCLUDED.budgets, configured = true, updated_at = now()
            RETURNING id
            """,
            c.name,
            c.schema_name,
            c.table_name,
            c.vector_attname,
            c.tenant_attname,
            config.budgets_for(c).model_dump(),
        )
        await _sync_placement(conn, cid, c)
        i = config.integrity
        await conn.execute(
            """
            INSERT INTO ruvector.integrity_policies AS p
                   (collection_id, threshold_high, threshold_low, degrade_samples,
                    critical_samples, recovery_offset, recovery_hold_seconds, cooldown_seconds,
                    sample_interval_seconds)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (collection_id) DO UPDATE SET
                threshold_high = EXCLUDED.threshold_high, threshold_low = EXCLUDED.threshold_low,
                degrade_samples = EXCLUDED.degrade_samples,
                critical_samples = EXCLUDED.critical_samples,
                recovery_offset = EXCLUDED.recovery_offset,
                recovery_hold_seconds = EXCLUDED.recovery_hold_seconds,
                cooldown_seconds = EXCLUDED.cooldown_seconds,
                sample_interval_seconds = EXCLUDED.sample_interval_seconds,
                updated_at = now()
            """,
            cid,
            i.threshold_high,
            i.threshold_low,
            i.degrade_samples,
            i.critical_samples,
            i.recovery_offset,
            i.recovery_hold_seconds,
            i.cooldown_seconds,
            i.sample_interval_seconds,
        )
        return cid

    async def set_collection_status(self, collection_id: int, error: str | None) -> None:
        await self.db.execute(
            "UPDATE ruvector.collections SET status = $2, status_detail = $3, updated_at = now() "
            "WHERE id = $1 AND (status, coalesce(status_detail, '')) "
            "IS DISTINCT FROM ($2, coalesce($3, ''))",
            collection_id,
            "error" if error else "ok",
            error,
            idempotent=True,
        )

    # ------------------------------------------------------------------ state

    async def set_decision(self, collection_id: int, decision: str) -> None:
        await self.db.execute(
            "UPDATE ruvector.integrity_state SET decision = $2 WHERE collection_id = $1",
            collection_id,
            decision,
            idempotent=True,
        )

    async def load_tracker(self, collection_id: int) -> dict[str, Any] | None:
        raw: dict[str, Any] | None = await self.db.fetchval(
            "SELECT tracker FROM ruvector.integrity_state WHERE collection_id = $1", collection_id
        )
        return raw or None

    async def record_sample(self, rec: SampleRecord, event: Mapping[str, Any] | None) -> Held:
        """One call of ruvector.record_sample (0011_storage.sql; the frame since 0012), with
        the signed event first when the state changed: one round trip and a few hundred bytes
        of WAL in steady state plus the frame, the graph only when `rec.graph_reason` says it
        is due."""
        graph = (
            graph_document(rec.graph, rec.witness_indices, rec.cut_side)
            if rec.graph_reason is not None
            else None
        )
        args = (
            rec.collection_id,
            rec.sampled_at,
            rec.lambda_cut,
            rec.lambda_cut_raw,
            rec.lambda2,
            rec.state,
            len(rec.graph.nodes),
            len(rec.graph.edges),
            len(set(rec.witness_indices)),
            rec.sample_ms,
            rec.computation_ms,
            dict(rec.tracker),
            rec.witness_edges,
            rec.decision,
            rec.transitioned,
            rec.graph_reason,
            None if graph is None else graph["nodes"],
            None if graph is None else graph["edges"],
            None if graph is None else graph["witness"],
            None if graph is None else graph["cut_side"],
            rec.frame,
        )
        if event is None:
            # no retry: a sample row written before a lost reply would be written twice
            async with self.db.acquire() as conn:
                return _held(await conn.fetchrow(RECORD_SAMPLE_SQL, *args))
        async with self.db.transaction() as conn:
            # the event and the state it announces commit together
            await append_event(conn, self._signer(), event)
            return _held(await conn.fetchrow(RECORD_SAMPLE_SQL, *args))

    async def read_held(self, collection_id: int) -> Held:
        return _held(await self.db.fetchrow(HELD_SQL, collection_id))

    async def mean_recovery_seconds(self, collection: str, since: datetime) -> float | None:
        value = await self.db.fetchval(RECOVERY_SQL, collection, since)
        return None if value is None else float(value)

    # ------------------------------------------------------------------ tenants

    async def load_tenants(self, collection_id: int) -> dict[str, tuple[dict[str, Any], float]]:
        rows = await self.db.fetch(
            "SELECT tenant, tracker, load_ops FROM ruvector.tenant_state WHERE collection_id = $1",
            collection_id,
        )
        return {r["tenant"]: (r["tracker"] or {}, r["load_ops"]) for r in rows}

    async def record_tenants(
        self,
        collection_id: int,
        records: Sequence[TenantRecord],
        events: Sequence[Mapping[str, Any]],
    ) -> tuple[TenantThrottle, ...]:
        """One transaction: the scopes of this sample replace the last's, events signed."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "DELETE FROM ruvector.tenant_state "
                "WHERE collection_id = $1 AND NOT (tenant = ANY($2::text[]))",
                collection_id,
                [r.tenant for r in records],
            )
            await conn.executemany(
                """
                INSERT INTO ruvector.tenant_state AS s
                       (collection_id, tenant, rank, load_ops, partitions, state, lambda_cut,
                        lambda_cut_raw, tracker, witness_edges, decision, last_sample_at,
                        last_transition_at, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                        CASE WHEN $13::boolean THEN $12::timestamptz END, now())
                ON CONFLICT (collection_id, tenant) DO UPDATE SET
                    rank = EXCLUDED.rank, load_ops = EXCLUDED.load_ops,
                    partitions = EXCLUDED.partitions, state = EXCLUDED.state,
                    lambda_cut = EXCLUDED.lambda_cut, lambda_cut_raw = EXCLUDED.lambda_cut_raw,
                    tracker = EXCLUDED.tracker, witness_edges = EXCLUDED.witness_edges,
                    decision = EXCLUDED.decision, last_sample_at = EXCLUDED.last_sample_at,
                    last_transition_at = coalesce(EXCLUDED.last_transition_at,
                                                  s.last_transition_at),
                    updated_at = now()
                """,
                [
                    (
                        collection_id,
                        r.tenant,
                        r.rank,
                        r.load_ops,
                        list(r.partitions),
                        r.state,
                        r.lambda_cut,
                        r.lambda_cut_raw,
                        dict(r.tracker),
                        r.witness_edges,
                        r.decision,
                        r.sampled_at,
                        r.transitioned,
                    )
                    for r in records
                ],
            )
            for event in events:
                await append_event(conn, self._signer(), event)
            return _tenant_throttles(await conn.fetch(TENANT_THROTTLES_SQL, collection_id))

    async def tenant_throttles(self, collection_id: int) -> tuple[TenantThrottle, ...]:
        return _tenant_throttles(await self.db.fetch(TENANT_THROTTLES_SQL, collection_id))

    # ------------------------------------------------------------------ events, keys

    async def register_key(self, signer: Signer, description: str) -> None:
        await self.db.execute(
            "INSERT INTO ruvector.signing_keys (id, public_key, description) VALUES ($1, $2, $3) "
            "ON CONFLICT (id) DO NOTHING",
            signer.id,
            signer.public_bytes,
            description,
            idempotent=True,
        )

    async def record_event(self, event: Mapping[str, Any]) -> int:
        """Sign and append one event (its fields without signer_id, prev_hash, signature)."""
        async with self.db.transaction() as conn:
            return await append_event(conn, self._signer(), event)

    def _signer(self) -> Signer:
        if self.signer is None:
            raise RuntimeError("this Store was built without a signer; it cannot write events")
        return self.signer


# every throttle of the collection, its tenants' too, by operation and level: the gauge of an
# operation shows the strictest in force, so a brake on one tenant is seen (and alerted on)
HELD_SQL = "SELECT * FROM ruvector.held($1)"

RECORD_SAMPLE_SQL = (
    "SELECT * FROM ruvector.record_sample($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
    "$13, $14, $15, $16, $17, $18, $19, $20, $21)"
)

# Each episode runs from a transition out of normal to the first transition back to normal; an
# episode still open is not counted (ruvector_healing_effectiveness() uses the same rule).
RECOVERY_SQL = """
    WITH t AS (
        SELECT created_at AS at, previous_state, new_state
          FROM ruvector.integrity_events
         WHERE collection = $1 AND event_type = 'state_change' AND created_at >= $2
    )
    SELECT avg(extract(epoch FROM
                   (SELECT min(u.at) FROM t u WHERE u.at > s.at AND u.new_state = 'normal')
                   - s.at))::float8
      FROM t s
     WHERE s.previous_state = 'normal'
"""


TENANT_THROTTLES_SQL = """
    SELECT tenant, operation, throttle_pct::int AS pct, expires_at
      FROM ruvector.throttles
     WHERE collection_id = $1 AND tenant <> '' AND throttle_pct > 0
       AND expires_at > statement_timestamp()
"""


def _tenant_throttles(rows: list[asyncpg.Record]) -> tuple[TenantThrottle, ...]:
    return tuple((r["tenant"], r["operation"], r["pct"], r["expires_at"]) for r in rows)


def _held(row: asyncpg.Record | None) -> Held:
    assert row is not None  # an aggregate over no rows is still one row
    throttles = tuple(zip(row["ops"] or [], row["pcts"] or [], row["untils"] or [], strict=True))
    return Held(throttles, row["pending"], row["oldest"])


async def append_event(conn: asyncpg.Connection, signer: Signer, fields: Mapping[str, Any]) -> int:
    """Sign `fields` as the next link of the audit chain and insert it.

    Inside the caller's transaction: the head row stays locked until commit, so concurrent
    writers (another daemon, the intake) append one after the other and the chain has no forks.
    """
    head = await conn.fetchrow("SELECT last_hash FROM ruvector.audit_head FOR UPDATE")
    prev = head["last_hash"] if head is not None else None
    # signed exactly as it will be read back (the columns' defaults filled in)
    event = {
        "previous_state": None,
        "new_state": None,
        "lambda_cut": None,
        "lambda2": None,
        **fields,
        "witness_edges": fields.get("witness_edges") or [],
        "metadata": fields.get("metadata") or {},
        "signer_id": signer.id,
        "prev_hash": bytes(prev) if prev else None,
    }
    event["signature"] = signer.sign(event)
    event_id = await insert_event(conn, event)
    await conn.execute(
        "UPDATE ruvector.audit_head SET last_event_id = $1, last_hash = $2",
        event_id,
        event_hash(event, event["signature"]),
    )
    return event_id


async def insert_event(conn: asyncpg.Connection, event: Mapping[str, Any]) -> int:
    event_id: int = await conn.fetchval(
        """
        INSERT INTO ruvector.integrity_events
               (collection, event_type, previous_state, new_state, lambda_cut, lambda2,
                witness_edges, metadata, signature, signer_id, created_at, prev_hash)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        RETURNING id
        """,
        event["collection"],
        event["event_type"],
        event.get("previous_state"),
        event.get("new_state"),
        event.get("lambda_cut"),
        event.get("lambda2"),
        event.get("witness_edges") or [],
        event.get("metadata") or {},
        event["signature"],
        event["signer_id"],
        event["created_at"],
        event.get("prev_hash"),
    )
    return event_id


async def _sync_placement(conn: asyncpg.Connection, cid: int, c: CollectionConfig) -> None:
    """The collection's placement declaration (ruvector.placements), for the move functions.

    Taken out of the config it stays, undeclared, so what was moved can still be moved back.
    A schema without the table (older than the placement migration) has nothing to sync."""
    if not await conn.fetchval("SELECT to_regclass('ruvector.placements') IS NOT NULL"):
        return
    p = c.placement
    if p is None:
        await conn.execute(
            "UPDATE ruvector.placements SET declared = false, updated_at = now() "
            "WHERE collection_id = $1 AND declared",
            cid,
        )
        return
    await conn.execute(
        """
        INSERT INTO ruvector.placements
               (collection_id, placement_column, key_column, age_column, cold_value, declared)
        VALUES ($1, $2, $3, $4, $5, true)
        ON CONFLICT (collection_id) DO UPDATE SET
            placement_column = EXCLUDED.placement_column, key_column = EXCLUDED.key_column,
            age_column = EXCLUDED.age_column, cold_value = EXCLUDED.cold_value,
            declared = true, updated_at = now()
        WHERE (ruvector.placements.placement_column, ruvector.placements.key_column,
               ruvector.placements.age_column, ruvector.placements.cold_value,
               ruvector.placements.declared)
              IS DISTINCT FROM (EXCLUDED.placement_column, EXCLUDED.key_column,
                                EXCLUDED.age_column, EXCLUDED.cold_value, true)
        """,
        cid,
        p.attname,
        p.key_attname,
        p.cold.age_attname if p.cold else None,
        p.cold.value if p.cold else None,
    )
