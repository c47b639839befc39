"""The gate matrix (pure reference) and the audit signature scheme."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ruvectord.audit import Signer, canonical, load_or_create_key, verify
from ruvectord.errors import UserError
from ruvectord.integrity.gate import Response, Risk, decide, risk_of
from ruvectord.integrity.hysteresis import State

# The spec's table, written out independently of the implementation.
SPEC_MATRIX = {
    ("low", "normal"): ("allow", 1.0, 0),
    ("low", "stress"): ("allow", 1.0, 0),
    ("low", "critical"): ("throttle", 0.8, 0),
    ("medium", "normal"): ("allow", 1.0, 0),
    ("medium", "stress"): ("throttle", 0.5, 0),
    ("medium", "critical"): ("defer", 0.0, 60),
    ("high", "normal"): ("allow", 1.0, 0),
    ("high", "stress"): ("defer", 0.0, 300),
    ("high", "critical"): ("reject", 0.0, 0),
}
EXAMPLE_OP = {"low": "search", "medium": "bulk_insert", "high": "index_rebuild"}


@pytest.mark.parametrize(("risk", "state"), list(SPEC_MATRIX))
def test_gate_matrix_is_the_spec(risk: str, state: str) -> None:
    d = decide(EXAMPLE_OP[risk], State(state))
    assert (d.response.value, d.throttle_factor, d.retry_after_secs) == SPEC_MATRIX[(risk, state)]


def test_operation_risk_classes() -> None:
    assert {risk_of(o) for o in ("search", "read", "point_insert", "point_delete")} == {Risk.LOW}
    assert risk_of("graph_edge_remove") is Risk.MEDIUM
    assert risk_of(" Replication_Reshuffle ") is Risk.HIGH
    assert risk_of("frobnicate") is Risk.MEDIUM  # unknown operations count as medium
    assert decide("frobnicate", State.CRITICAL).response is Response.DEFER


T = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def _event(signer: Signer) -> dict[str, object]:
    return {
        "collection": "items",
        "event_type": "state_change",
        "previous_state": "normal",
        "new_state": "stress",
        "lambda_cut": 0.41,
        "lambda2": 1.0,
        "witness_edges": [{"kind": "routing", "capacity": 0.25}],
        "metadata": {"b": 1, "a": [1]},
        "signer_id": signer.id,
        "created_at": T,
    }


def test_signatures_verify_and_any_change_breaks_them() -> None:
    signer = Signer(Ed25519PrivateKey.generate())
    event = _event(signer)
    sig = signer.sign(event)
    assert verify(signer.public_bytes, event, sig)
    for key, value in [
        ("lambda_cut", 0.42),
        ("new_state", "critical"),
        ("metadata", {"b": 2}),
        ("created_at", T.replace(microsecond=123457)),
    ]:
        assert not verify(signer.public_bytes, {**event, key: value}, sig), key
    other = Signer(Ed25519PrivateKey.generate())
    assert not verify(other.public_bytes, event, sig)


def test_canonical_form_is_stable_across_representations() -> None:
    signer = Signer(Ed25519PrivateKey.generate())
    a = _event(signer)
    # what comes back from jsonb / float8: keys reordered, 1.0 as 1, another time zone
    b = {
        **a,
        "lambda2": 1,
        "metadata": {"a": [1.0], "b": 1},
        "created_at": T.astimezone(datetime.now().astimezone().tzinfo),
    }
    assert canonical(a) == canonical(b)
    with pytest.raises(ValueError, match="naive datetime"):
        canonical({**a, "created_at": datetime(2026, 1, 1)})


def test_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.key"
    first, created = load_or_create_key(path)
    assert created and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created = load_or_create_key(path)
    assert not created and again.id == first.id


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    load_or_create_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(UserError, match="mode 0644 lets others read it"):
        load_or_create_key(path)
    path.write_text("garbage")
    os.chmod(path, 0o600)
    with pytest.raises(UserError, match="not a PEM private key"):
        load_or_create_key(path)
