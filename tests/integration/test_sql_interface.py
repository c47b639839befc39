"""The SQL functions and the audit trail, on a real server."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ruvectord.audit import Signer
from ruvectord.integrity.gate import OPERATION_RISK, risk_of
from ruvectord.postgres.audit_trail import verify_events
from ruvectord.postgres.pool import Database
from ruvectord.postgres.store import Store
from tests.helpers import make_config
from tests.unit.test_gate_and_audit import EXAMPLE_OP, SPEC_MATRIX


async def _collection(db: Database, dsn: str, state_dir: Path) -> int:
    ids = await Store(db).sync_collections(make_config(dsn, state_dir))
    return ids["items"]


async def _set_state(db: Database, cid: int, state: str) -> None:
    await db.execute(
        "INSERT INTO ruvector.integrity_state (collection_id, state, lambda_cut, last_sample_at) "
        "VALUES ($1, $2, 0.5, now()) ON CONFLICT (collection_id) DO UPDATE "
        "SET state = EXCLUDED.state, last_sample_at = now()",
        cid,
        state,
    )


@pytest.mark.parametrize(("risk", "state"), list(SPEC_MATRIX))
async def test_gate_returns_the_matrix_answer_via_sql(
    db: Database, dsn: str, state_dir: Path, risk: str, state: str
) -> None:
    cid = await _collection(db, dsn, state_dir)
    await _set_state(db, cid, state)
    answer = await db.fetchval("SELECT ruvector_integrity_gate('items', $1)", EXAMPLE_OP[risk])
    response, factor, retry = SPEC_MATRIX[(risk, state)]
    assert (answer["response"], answer["throttle_factor"], answer["retry_after_secs"]) == (
        response,
        factor,
        retry,
    )
    assert answer["risk_level"] == risk and answer["state"] == state
    assert answer["allowed"] == (response in ("allow", "throttle"))
    assert answer["stale"] is False


async def test_sql_risk_classes_match_python(db: Database) -> None:
    for op, risk in [*OPERATION_RISK.items(), ("something_new", risk_of("something_new"))]:
        assert await db.fetchval("SELECT ruvector.operation_risk($1)", op) == risk.value


async def test_gate_and_status_name_an_unknown_collection(
    db: Database, dsn: str, state_dir: Path
) -> None:
    await _collection(db, dsn, state_dir)
    for fn in ("ruvector_integrity_gate($1, 'search')", "ruvector_integrity_status($1)"):
        with pytest.raises(asyncpg.UndefinedObjectError, match="unknown collection 'nope'") as e:
            await db.fetchval(f"SELECT {fn}", "nope")
        assert e.value.hint == "configured collections: items"
    with pytest.raises(asyncpg.InvalidParameterValueError, match="operation must be"):
        await db.fetchval("SELECT ruvector_integrity_gate('items', '')")
    with pytest.raises(asyncpg.NullValueNotAllowedError, match="collection must not be NULL"):
        await db.fetchval("SELECT ruvector_integrity_gate(NULL, 'search')")


async def test_gate_honours_healing_throttles_and_status_shows_them(
    db: Database, dsn: str, state_dir: Path
) -> None:
    cid = await _collection(db, dsn, state_dir)
    await _set_state(db, cid, "normal")
    await db.execute(
        "INSERT INTO ruvector.throttles (collection_id, operation, throttle_pct, expires_at) "
        "VALUES ($1, 'insert', 50, now() + interval '1 minute'), "
        "($1, 'bulk_insert', 60, now() + interval '1 minute')",
        cid,
    )
    point = await db.fetchval("SELECT ruvector_integrity_gate('items', 'point_insert')")
    assert (point["response"], point["throttle_factor"]) == ("throttle", 0.5)
    bulk = await db.fetchval("SELECT ruvector_integrity_gate('items', 'bulk_insert')")
    assert bulk["throttle_factor"] == pytest.approx(0.4)
    search = await db.fetchval("SELECT ruvector_integrity_gate('items', 'search')")
    assert search["response"] == "allow"
    status = await db.fetchval("SELECT ruvector_integrity_status('items')")
    assert status["throttles"] == {"insert": 50, "bulk_insert": 60}
    assert status["state"] == "normal" and status["table"] == "public.items"


async def _events(db: Database, n: int = 5) -> tuple[Store, Signer]:
    signer = Signer(Ed25519PrivateKey.generate())
    store = Store(db, signer)
    await store.register_key(signer, "test")
    for i in range(n):
        await store.record_event(
            {
                "collection": "items",
                "event_type": "state_change",
                "previous_state": "normal",
                "new_state": "stress",
                "lambda_cut": 0.4 + i / 100,
                "lambda2": 0.7,
                "witness_edges": [{"kind": "routing", "capacity": 0.25, "flow": 0.125}],
                "metadata": {"reason": "lambda 0.410 < 0.8 for 3 sample(s)", "n": i},
                "created_at": datetime.now(UTC),
            }
        )
    return store, signer


def _pinned(signer: Signer) -> dict[str, bytes]:
    return {signer.id: signer.public_bytes}


async def test_audit_verify_reports_a_row_with_one_changed_byte(
    db: Database, dsn: str, state_dir: Path
) -> None:
    await _collection(db, dsn, state_dir)
    _, signer = await _events(db, 3)
    report = await verify_events(db, _pinned(signer))
    assert (report.checked, report.failures) == (3, [])

    # change one byte of one stored event: 'stress' -> 'strest'
    target = await db.fetchval("SELECT min(id) + 1 FROM ruvector.integrity_events")
    await db.execute(
        "UPDATE ruvector.integrity_events SET new_state = 'strest' WHERE id = $1", target
    )
    report = await verify_events(db, _pinned(signer))
    assert [f.id for f in report.failures] == [target, target + 1]
    assert "altered or forged" in report.failures[0].problem
    assert "chain broken" in report.failures[1].problem

    # a revoked key verifies nothing
    await db.execute("UPDATE ruvector.signing_keys SET revoked_at = now()")
    report = await verify_events(db, _pinned(signer))
    assert sum("revoked" in f.problem for f in report.failures) == 3


async def test_audit_verify_catches_deleted_reordered_and_replayed_rows(
    db: Database, dsn: str, state_dir: Path
) -> None:
    await _collection(db, dsn, state_dir)
    _, signer = await _events(db, 6)
    ids = [r["id"] for r in await db.fetch("SELECT id FROM ruvector.integrity_events ORDER BY id")]

    async def problems() -> list[tuple[int, str]]:
        report = await verify_events(db, _pinned(signer))
        return [(f.id, f.problem) for f in report.failures]

    assert await problems() == []
    # reordered: two rows swap places (every signature still valid)
    cols = (
        "collection, event_type, previous_state, new_state, lambda_cut, lambda2, "
        "witness_edges, metadata, signature, signer_id, created_at, prev_hash"
    )
    a, b = ids[1], ids[2]
    async with db.transaction() as conn:
        await conn.execute(
            f"UPDATE ruvector.integrity_events e SET ({cols}) = (SELECT {cols} FROM "
            "ruvector.integrity_events o WHERE o.id = CASE WHEN e.id = $1 THEN $2 ELSE $1 END) "
            "WHERE e.id IN ($1, $2)",
            a,
            b,
        )
    found = await problems()
    assert found and all("chain broken" in p for _, p in found), found
    async with db.transaction() as conn:  # swap back
        await conn.execute(
            f"UPDATE ruvector.integrity_events e SET ({cols}) = (SELECT {cols} FROM "
            "ruvector.integrity_events o WHERE o.id = CASE WHEN e.id = $1 THEN $2 ELSE $1 END) "
            "WHERE e.id IN ($1, $2)",
            a,
            b,
        )
    assert await problems() == []

    # replayed: an old event inserted again as a new row
    await db.execute(
        f"INSERT INTO ruvector.integrity_events ({cols}) SELECT {cols} "
        "FROM ruvector.integrity_events WHERE id = $1",
        ids[2],
    )
    found = await problems()
    assert any("chain broken" in p for _, p in found), found
    assert any("head names event" in p for _, p in found), found
    await db.execute("DELETE FROM ruvector.integrity_events WHERE id > $1", ids[-1])
    assert await problems() == []

    # deleted: one row from the middle, and the newest
    await db.execute("DELETE FROM ruvector.integrity_events WHERE id = $1", ids[3])
    assert [i for i, _ in await problems()] == [ids[4]]
    await db.execute("DELETE FROM ruvector.integrity_events WHERE id = $1", ids[-1])
    assert any("head names event" in p for _, p in await problems())


async def test_audit_verify_trusts_only_pinned_keys(
    db: Database, dsn: str, state_dir: Path
) -> None:
    await _collection(db, dsn, state_dir)
    _, signer = await _events(db, 2)
    # someone who can write the tables adds a key of their own and signs a forgery with it
    forger = Signer(Ed25519PrivateKey.generate())
    forged = Store(db, forger)
    await forged.register_key(forger, "looks legitimate")
    await forged.record_event(
        {
            "collection": "items",
            "event_type": "manual_override",
            "metadata": {"kind": "approve", "requested_by": "dba"},
            "created_at": datetime.now(UTC),
        }
    )
    report = await verify_events(db, _pinned(signer))
    assert len(report.failures) == 1
    assert f"signed by {forger.id}, which is not a pinned key" in report.failures[0].problem
