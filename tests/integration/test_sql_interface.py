"""The SQL functions and the audit trail, on a real server."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ruvectord.audit import Signer
from ruvectord.integrity.gate import OPERATION_RISK, risk_of
from ruvectord.integrity.monitor import signed_event
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
        "INSERT INTO ruvector.throttles (collection_id, operation, throttle_pct) "
        "VALUES ($1, 'insert', 50), ($1, 'bulk_insert', 60)",
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


async def test_audit_verify_reports_a_row_with_one_changed_byte(
    db: Database, dsn: str, state_dir: Path
) -> None:
    await _collection(db, dsn, state_dir)
    store = Store(db)
    signer = Signer(Ed25519PrivateKey.generate())
    await store.register_key(signer, "test")
    for i in range(3):
        await store.record_event(
            signed_event(
                signer,
                collection="items",
                event_type="state_change",
                previous_state="normal",
                new_state="stress",
                lambda_cut=0.4 + i / 100,
                lambda2=0.7,
                witness_edges=[{"kind": "routing", "capacity": 0.25, "flow": 0.125}],
                metadata={"reason": "lambda 0.410 < 0.8 for 3 sample(s)"},
                created_at=datetime.now(UTC),
            )
        )
    report = await verify_events(db)
    assert (report.checked, report.failures) == (3, [])

    # change one byte of one stored event: 'stress' -> 'strest'
    target = await db.fetchval("SELECT min(id) + 1 FROM ruvector.integrity_events")
    await db.execute(
        "UPDATE ruvector.integrity_events SET new_state = 'strest' WHERE id = $1", target
    )
    report = await verify_events(db)
    assert [f.id for f in report.failures] == [target]
    assert "altered or forged" in report.failures[0].problem

    # a revoked key verifies nothing
    await db.execute("UPDATE ruvector.signing_keys SET revoked_at = now()")
    report = await verify_events(db)
    assert len(report.failures) == 3
    assert "revoked" in report.failures[-1].problem
