"""The operation gate: which operations may run in which integrity state (spec section 4).

This is the reference the SQL function `ruvector_integrity_gate` mirrors; the test suite
checks the two against each other for all nine (risk, state) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ruvectord.integrity.hysteresis import State


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Response(StrEnum):
    ALLOW = "allow"
    THROTTLE = "throttle"
    DEFER = "defer"
    REJECT = "reject"


OPERATION_RISK: dict[str, Risk] = {
    **dict.fromkeys(("search", "read", "point_insert", "point_delete"), Risk.LOW),
    **dict.fromkeys(
        (
            "bulk_insert",
            "bulk_delete",
            "update",
            "centroid_update",
            "graph_edge_add",
            "graph_edge_remove",
        ),
        Risk.MEDIUM,
    ),
    **dict.fromkeys(
        (
            "hnsw_rewire",
            "index_rebuild",
            "compaction",
            "tier_demotion",
            "shard_move",
            "replication_reshuffle",
        ),
        Risk.HIGH,
    ),
}


@dataclass(frozen=True, slots=True)
class Decision:
    response: Response
    throttle_factor: float  # share of operations that may proceed (1.0 = no throttling)
    retry_after_secs: int


# (risk, state) -> decision, exactly the spec's matrix
MATRIX: dict[tuple[Risk, State], Decision] = {
    (Risk.LOW, State.NORMAL): Decision(Response.ALLOW, 1.0, 0),
    (Risk.LOW, State.STRESS): Decision(Response.ALLOW, 1.0, 0),
    (Risk.LOW, State.CRITICAL): Decision(Response.THROTTLE, 0.8, 0),
    (Risk.MEDIUM, State.NORMAL): Decision(Response.ALLOW, 1.0, 0),
    (Risk.MEDIUM, State.STRESS): Decision(Response.THROTTLE, 0.5, 0),
    (Risk.MEDIUM, State.CRITICAL): Decision(Response.DEFER, 0.0, 60),
    (Risk.HIGH, State.NORMAL): Decision(Response.ALLOW, 1.0, 0),
    (Risk.HIGH, State.STRESS): Decision(Response.DEFER, 0.0, 300),
    (Risk.HIGH, State.CRITICAL): Decision(Response.REJECT, 0.0, 0),
}


def risk_of(operation: str) -> Risk:
    """Unknown operations count as medium risk."""
    return OPERATION_RISK.get(operation.strip().lower(), Risk.MEDIUM)


def decide(operation: str, state: State) -> Decision:
    return MATRIX[(risk_of(operation), state)]
