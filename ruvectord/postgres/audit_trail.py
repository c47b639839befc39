"""`ruvectord audit verify`: check the Ed25519 signature of every stored integrity event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ruvectord.audit import verify
from ruvectord.postgres.pool import Database


@dataclass(frozen=True)
class Failure:
    id: int
    collection: str
    event_type: str
    created_at: datetime
    problem: str


@dataclass
class VerifyReport:
    checked: int = 0
    failures: list[Failure] = field(default_factory=list)


async def verify_events(db: Database, *, batch: int = 1000) -> VerifyReport:
    """Stream every event (in id order, through a cursor) and verify it against its key."""
    report = VerifyReport()
    async with db.transaction() as conn:
        cursor = conn.cursor(
            """
            SELECT e.id, e.collection, e.event_type, e.previous_state, e.new_state,
                   e.lambda_cut, e.lambda2, e.witness_edges, e.metadata, e.signature,
                   e.signer_id, e.created_at,
                   k.public_key, k.revoked_at, k.expires_at
              FROM ruvector.integrity_events e
              LEFT JOIN ruvector.signing_keys k ON k.id = e.signer_id
             ORDER BY e.id
            """,
            prefetch=batch,
        )
        async for row in cursor:
            report.checked += 1
            problem = None
            if row["public_key"] is None:
                problem = f"unknown signer {row['signer_id']}"
            elif row["revoked_at"] is not None:
                problem = f"signer {row['signer_id']} was revoked at {row['revoked_at']}"
            elif row["expires_at"] is not None and row["created_at"] > row["expires_at"]:
                problem = f"signed after signer {row['signer_id']} expired"
            elif not verify(bytes(row["public_key"]), dict(row), bytes(row["signature"])):
                problem = "signature does not match the stored event (altered or forged)"
            if problem is not None:
                report.failures.append(
                    Failure(
                        row["id"], row["collection"], row["event_type"], row["created_at"], problem
                    )
                )
    return report
