"""Retention: what grows in schema ruvector is pruned, oldest first, in small batches.

Owns the pruning the acting daemon does every housekeeping round (daemon.py): the samples
(`integrity.sample_retention_days`), the graph snapshots (periodic ones and transitions' kept
for `retention.periodic_graph_days` / `retention.transition_graph_days`, each collection's
newest always kept: the contracted_graph views read it), the finished healing history and the
signed audit trail (`retention.healing_history_days`, `retention.audit_days`).

The last two go through SECURITY DEFINER functions (0011_storage.sql) that refuse anything
younger than their floor (7 and 30 days, by the server's clock), so a compromised daemon role
cannot erase recent history. The audit trail is pruned as a prefix, behind a signed
`audit_pruned` marker appended to the chain first: it names the last pruned event and the
hash the first retained event links to, so `audit verify` starts the chain there and still
fails on any other missing event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ruvectord.audit import Signer
from ruvectord.config import Config
from ruvectord.postgres.pool import Database
from ruvectord.postgres.store import append_event

PRUNE_SAMPLES_SQL = """
    DELETE FROM ruvector.integrity_samples
     WHERE id IN (SELECT id FROM ruvector.integrity_samples
                   WHERE sampled_at < $1 ORDER BY sampled_at LIMIT $2)
"""

# healing's decisions on degraded samples (ruvectord replay) go with the samples
PRUNE_DECISIONS_SQL = """
    DELETE FROM ruvector.healing_decisions
     WHERE (collection_id, sampled_at) IN (
           SELECT collection_id, sampled_at FROM ruvector.healing_decisions
            WHERE sampled_at < $1 ORDER BY sampled_at LIMIT $2)
"""

# each collection's newest graph stays whatever its age: the views read it
PRUNE_GRAPHS_SQL = """
    DELETE FROM ruvector.graph_snapshots g
     WHERE (g.collection_id, g.sampled_at) IN (
           SELECT s.collection_id, s.sampled_at FROM ruvector.graph_snapshots s
            WHERE s.reason = $3 AND s.sampled_at < $1
              AND s.sampled_at < (SELECT max(n.sampled_at) FROM ruvector.graph_snapshots n
                                   WHERE n.collection_id = s.collection_id)
            ORDER BY s.sampled_at LIMIT $2)
"""


DAY = 86400.0  # the audit trail is pruned at most this often: each prune signs a marker


@dataclass
class Pruned:
    samples: int = 0
    graphs: int = 0
    healing_history: int = 0
    audit_events: int = 0

    @property
    def total(self) -> int:
        return self.samples + self.graphs + self.healing_history + self.audit_events


class Retention:
    """One housekeeping round prunes every table; the audit trail at most once a day."""

    def __init__(self, db: Database, signer: Signer) -> None:
        self.db = db
        self.signer = signer
        self._audit_at: datetime | None = None  # when the audit trail was last pruned

    async def round(self, config: Config, now: datetime) -> Pruned:
        i = config.integrity
        done = Pruned()
        done.samples = await prune_samples(
            self.db, now - timedelta(days=i.sample_retention_days), i.prune_batch_size
        )
        done.graphs = await prune_graphs(self.db, config, now)
        done.healing_history = await prune_healing_history(self.db, config, now)
        # a wall clock stepped back also counts as due: better a marker too many than none
        if self._audit_at is None or not (0 <= (now - self._audit_at).total_seconds() < DAY):
            older_than = now - timedelta(days=config.retention.audit_days)
            done.audit_events = await prune_audit(
                self.db, self.signer, older_than, i.prune_batch_size, now
            )
            self._audit_at = now
        return done


async def prune_samples(db: Database, older_than: datetime, batch: int) -> int:
    """Delete samples older than `older_than` in batches, and healing's decisions on them;
    returns the samples deleted."""
    deleted = await _batched(db, PRUNE_SAMPLES_SQL, batch, older_than)
    await _batched(db, PRUNE_DECISIONS_SQL, batch, older_than)
    return deleted


async def prune_graphs(db: Database, config: Config, now: datetime) -> int:
    r, batch = config.retention, config.integrity.prune_batch_size
    periodic = now - timedelta(days=r.periodic_graph_days)
    transition = now - timedelta(days=r.transition_graph_days)
    return await _batched(db, PRUNE_GRAPHS_SQL, batch, periodic, "periodic") + await _batched(
        db, PRUNE_GRAPHS_SQL, batch, transition, "transition"
    )


async def prune_healing_history(db: Database, config: Config, now: datetime) -> int:
    """Finished actions, their outcomes, processed requests; outcomes are kept at least over
    the learning window, which the strategy weights are learnt from."""
    days = max(config.retention.healing_history_days, config.healing.learning_window_days)
    batch, total = config.integrity.prune_batch_size, 0
    while True:
        deleted = int(
            await db.fetchval(
                "SELECT ruvector.prune_healing_history($1, $2)", now - timedelta(days=days), batch
            )
        )
        total += deleted
        if deleted < batch:
            return total


async def prune_audit(
    db: Database, signer: Signer, older_than: datetime, batch: int, now: datetime
) -> int:
    """The oldest audit events recorded before `older_than` (and 30 days ago, whatever
    `older_than` says), `batch` at a time, each batch behind its signed marker."""
    total = 0
    while True:
        async with db.transaction() as conn:
            point = await conn.fetchrow(
                "SELECT * FROM ruvector.audit_prune_point($1, $2)", older_than, batch
            )
            if point is None:
                return total
            through_hash = point["through_hash"]
            marker: dict[str, Any] = {
                "collection": "*",
                "event_type": "audit_pruned",
                "metadata": {
                    "through_id": point["through_id"],
                    "through_hash": None if through_hash is None else bytes(through_hash).hex(),
                    "events": point["events"],
                    "older_than": older_than.isoformat(),
                },
                "created_at": now,
            }
            # the marker is the next link of the chain: signed before anything is deleted,
            # committed with the deletion or not at all
            await append_event(conn, signer, marker)
            deleted = int(
                await conn.fetchval(
                    "SELECT ruvector.prune_audit($1, $2)", point["through_id"], older_than
                )
            )
        total += deleted
        if point["events"] < batch:
            return total


async def _batched(db: Database, sql: str, batch: int, *args: Any) -> int:
    total = 0
    while True:
        status = await db.execute(sql, args[0], batch, *args[1:], idempotent=True)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch:
            return total
