"""`ruvectord audit verify`: every event's signature by a pinned key, and the unbroken chain.

What it proves: every event was signed by a key the operator trusts (the daemon's own key
file, or `integrity.trusted_public_keys` -- never a key merely found in ruvector.signing_keys,
where anyone who can write that table could add one), no signed field changed, and no event
was deleted, reordered or replayed since the chain began (each event signs the hash of the
one before it, and ruvector.audit_head names the newest). Events written before the chain
existed (schema version 3 and older) carry no link and are reported as unchained, not failed.

Retention prunes the oldest events (postgres/retention.py). The chain may then begin at an
event whose predecessor is gone, but only where a signed `audit_pruned` marker, later in the
chain, names the hash that first event links to; any other missing event still fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ruvectord.audit import event_hash, verify
from ruvectord.postgres.pool import Database


@dataclass(frozen=True)
class Failure:
    id: int
    collection: str
    event_type: str
    created_at: datetime | None
    problem: str


@dataclass
class VerifyReport:
    checked: int = 0
    unchained: int = 0  # events older than the chain (no prev_hash, before the first link)
    failures: list[Failure] = field(default_factory=list)
    pruned_through: int | None = None  # the last event pruned, as the anchoring marker says


async def verify_events(
    db: Database, trusted: Mapping[str, bytes], *, batch: int = 1000
) -> VerifyReport:
    """Stream every event in id order (through a cursor); `trusted`: signer id -> public key."""
    report = VerifyReport()
    previous: bytes | None = None  # hash of the previous row
    chained = False
    last_id: int | None = None
    first_prev: bytes | None = None
    start: Failure | None = None  # the first event, when it links to one that is not here
    anchors: dict[str, int] = {}  # through_hash -> through_id of every valid pruning marker
    async with db.transaction() as conn:
        cursor = conn.cursor(
            """
            SELECT e.id, e.collection, e.event_type, e.previous_state, e.new_state,
                   e.lambda_cut, e.lambda2, e.witness_edges, e.metadata, e.signature,
                   e.signer_id, e.created_at, e.prev_hash, k.revoked_at
              FROM ruvector.integrity_events e
              LEFT JOIN ruvector.signing_keys k ON k.id = e.signer_id
             ORDER BY e.id
            """,
            prefetch=batch,
        )
        async for row in cursor:
            report.checked += 1
            event = dict(row)
            if event["prev_hash"] is not None:
                event["prev_hash"] = bytes(event["prev_hash"])
            signature = bytes(row["signature"])
            problems = []
            public = trusted.get(row["signer_id"])
            if public is None:
                problems.append(f"signed by {row['signer_id']}, which is not a pinned key")
            elif row["revoked_at"] is not None:
                problems.append(f"signer {row['signer_id']} was revoked at {row['revoked_at']}")
            elif not verify(public, event, signature):
                problems.append("signature does not match the stored event (altered or forged)")
            link = event["prev_hash"]
            if report.checked == 1:
                first_prev = link
            if link is None:
                if chained:
                    problems.append("no link to the previous event inside the chain (inserted)")
                else:
                    report.unchained += 1
            else:
                if previous is None and not chained and report.checked == 1:
                    # fine if a signed marker says the events before it were pruned
                    start = Failure(
                        row["id"],
                        row["collection"],
                        row["event_type"],
                        row["created_at"],
                        "the chain starts at an event that is not here (older events deleted "
                        "without a signed audit_pruned marker naming them)",
                    )
                elif link != previous:
                    problems.append(
                        "chain broken: it does not follow the event before it (a row was "
                        "deleted, altered or reordered before it, or it was replayed)"
                    )
                chained = True
            if row["event_type"] == "audit_pruned" and not problems:
                meta = row["metadata"] or {}
                if isinstance(meta.get("through_hash"), str):
                    anchors[meta["through_hash"]] = int(meta.get("through_id") or 0)
            for problem in problems:
                report.failures.append(
                    Failure(
                        row["id"], row["collection"], row["event_type"], row["created_at"], problem
                    )
                )
            previous = event_hash(event, signature)
            last_id = row["id"]
        head = await conn.fetchrow("SELECT last_event_id, last_hash FROM ruvector.audit_head")
    if start is not None:
        first_link = None if first_prev is None else first_prev.hex()
        if first_link in anchors and anchors[first_link] < start.id:
            report.pruned_through = anchors[first_link]
        else:
            report.failures.insert(0, start)
    if (
        head is not None
        and head["last_event_id"] is not None
        and (head["last_event_id"] != last_id or bytes(head["last_hash"]) != previous)
    ):
        report.failures.append(
            Failure(
                head["last_event_id"],
                "-",
                "-",
                None,
                f"the newest event is missing or changed: the chain's head names event "
                f"{head['last_event_id']}, the table ends at {last_id}",
            )
        )
    return report
