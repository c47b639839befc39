"""One fault, one episode: an adversarial oscillating load against the real daemon.

The burst's writers honour the throttle's retry hint and come back at full rate the moment
they are let through (ruvectord/scenarios/oscillation.py; bench/oscillation.py runs the
longer comparison with lift-at-once and healing off). Real time against a real server, since
the load is the point: samples every 0.5 s, the defaults scaled x0.05 (from a 10 s sample),
about 75 s in all. The comparison with lift-at-once is left to the bench: how many episodes
it makes in a short run depends on the machine's speed, so it is no assertion here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ruvectord.scenarios import oscillation
from ruvectord.scenarios.oscillation import Setup

pytestmark = pytest.mark.pgvector


async def test_one_fault_under_an_oscillating_load_is_one_episode_and_the_brake_lets_go(
    dsn: str, state_dir: Path
) -> None:
    r = await oscillation.run(
        dsn,
        state_dir,
        Setup("stepped lift (defaults)"),
        interval=0.5,
        warmup_seconds=3,
        burst_seconds=45,
        tail_seconds=40,
        burst_writers=3,
    )
    timeline = "\n".join(r.timeline())
    assert r.failed == 0, r.errors
    # the fault was seen and braked, once
    assert r.episodes == 1, timeline
    assert r.throttled_statements > 0, timeline
    # ... and the writers were not starved for ever: once the burst ended the brake was let
    # go in full, the collection is normal, and the burst's writers get in again
    assert r.lifted_after_burst and r.normal_at_end, timeline
    assert r.writes_after_lift > 0, timeline
