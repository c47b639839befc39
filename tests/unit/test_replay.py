"""The pure replay loop: frames round-trip exactly, the same config reproduces every decision,
another config decides otherwise and says where. No database: a simulated daemon records."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ruvectord.config import Config
from ruvectord.healing.decide import Inputs, choose, recovering
from ruvectord.healing.policy import History, Past
from ruvectord.healing.problems import classify
from ruvectord.healing.strategies import builtin_registry
from ruvectord.integrity.frame import Frame, FrameError, decode, encode
from ruvectord.integrity.hysteresis import Tracker
from ruvectord.integrity.sense import sense
from ruvectord.integrity.snapshot import IndexStats, PartitionStats, Snapshot, rates
from ruvectord.replay import Recorded, replay
from ruvectord.timebase import Instant

T0 = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


def config(**integrity: Any) -> Config:
    return Config.model_validate(
        {
            "integrity": {
                "threshold_low": 0.7,
                "recovery_hold_seconds": 10,
                "cooldown_seconds": 0,
                **integrity,
            },
            "healing": {"min_healing_interval_seconds": 12},
            "collections": [
                {"name": "items", "table": "public.items", "vector_column": "embedding"}
            ],
        }
    )


def partition(i: int, ops: int) -> PartitionStats:
    return PartitionStats(
        oid=1000 + i,
        name=f"public.items_p{i}",
        bound=f"FOR VALUES WITH (modulus 64, remainder {i})",
        tenant=None,
        live_tuples=10_000 + 7 * i,
        dead_tuples=13 * i,
        inserts=ops,
        updates=0,
        deletes=0,
        seq_scans=3 * i,
        idx_scans=11 * i,
        table_bytes=8192 * 100,
        index_bytes=8192 * 50,
        active_backends=i % 3,
        waiting_backends=0,
        queue=(i % 3) / 2 if i % 2 else None,
    )


def snapshots(hot: list[bool], n: int = 8) -> list[Snapshot]:
    """One snapshot every 5 s; partition 3 takes a burst in the samples marked hot."""
    out, counts = [], dict.fromkeys(range(n), 0)
    for k, burst in enumerate(hot):
        for i in counts:
            counts[i] += 3000 if burst and i == 3 else 50
        parts = tuple(partition(i, counts[i]) for i in range(n))
        indexes = tuple(
            IndexStats(
                5000 + i,
                f"public.items_p{i}_embedding_idx",
                1000 + i,
                "hnsw",
                8192 * (400 + i),
                True,
                {"m": "16", "ef_construction": "64"},
                "vector",
                128,
            )
            for i in range(n)
        )
        out.append(Snapshot("items", T0 + timedelta(seconds=5 * k), parts, indexes))
    return out


def record(cfg: Config, snaps: list[Snapshot], *, restart_at: int | None = None) -> list[Recorded]:
    """What the daemon records (monitor + engine, their pure parts): the frame, the state,
    lambda and, on degraded samples, the decision with its inputs. A restart moves the
    monotonic clock to another base and restores the tracker through its JSON, as
    CollectionMonitor.restore does."""
    coll = cfg.collection("items")
    registry = builtin_registry(config=lambda: cfg)
    tracker, prev, base = Tracker(), None, 1000.0
    past: list[Past] = []
    rows = []
    for k, snap in enumerate(snaps):
        if k == restart_at:
            before = Instant(base + 5 * (k - 1), snap.taken_at - timedelta(seconds=5))
            base = 77.25 - 5 * k
            tracker = Tracker.from_json(
                tracker.to_json(before),
                Instant(base + 5 * k - 1, snap.taken_at - timedelta(seconds=1)),
            )
        at = Instant(base + 5 * k, snap.taken_at)
        load = rates(prev, snap)
        sensed = sense(snap, load, tracker, at, cfg, coll)
        raw = encode(Frame(at.mono, tracker, snap, load))
        decision: dict[str, Any] | None = None
        if sensed.step.state.degraded:
            holding = recovering(sensed.result.lambda_cut, cfg.integrity.threshold_high)
            if holding is not None:
                decision = {"g": holding, "k": "recovering"}
            else:
                problem = classify(sensed.result, snap, cfg.healing.classifier)
                aged = tuple(replace(p, age=p.age + 5) for p in past)
                inputs = Inputs(snap.taken_at, History(aged), {"throttle_ingestion": 0.9})
                choice = choose(problem, inputs, cfg.healing, registry, "items")
                decision = choice.record(problem, inputs)
                past = list(aged) + (
                    [Past("attempt", choice.strategy, 0.0)] if choice.strategy else []
                )
        rows.append(
            Recorded(
                snap.taken_at, sensed.result.lambda_cut, sensed.step.state.value, raw, decision
            )
        )
        tracker, prev = sensed.step.tracker, snap
    return rows


HOT = [False] + [True] * 6 + [False] * 10


def test_a_frame_round_trips_what_the_graph_reads() -> None:
    cfg = config()
    snaps = snapshots(HOT[:3])
    load = rates(snaps[1], snaps[2])
    tracker = Tracker(hold_since=12.5, last_transition=3.25, last_transition_at=T0)
    frame = decode(encode(Frame(42.125, tracker, snaps[2], load)), "items", snaps[2].taken_at)
    assert frame.tracker == tracker and frame.mono == 42.125
    assert frame.load.partition_ops == load.partition_ops
    coll = cfg.collection("items")
    at = Instant(42.125, snaps[2].taken_at)
    a = sense(snaps[2], load, tracker, at, cfg, coll)
    b = sense(frame.snapshot, frame.load, frame.tracker, frame.instant(), cfg, coll)
    assert a.graph.edges == b.graph.edges and a.graph.nodes == b.graph.nodes
    assert a.step == b.step
    with pytest.raises(FrameError, match="unreadable"):
        decode(b"not a frame", "items", T0)


def test_a_frame_at_64_partitions_stays_small() -> None:
    snaps = snapshots([False, True], n=64)
    raw = encode(Frame(1.5, Tracker(), snaps[1], rates(snaps[0], snaps[1])))
    assert len(raw) < 2000, len(raw)


def test_the_same_config_reproduces_every_recorded_decision() -> None:
    cfg = config()
    rows = record(cfg, snapshots(HOT))
    done = replay(rows, cfg, cfg.collection("items"), builtin_registry(config=lambda: cfg))
    assert [s.differs for s in done.samples] == [()] * len(HOT)
    summary = done.summary()
    assert summary.transitions[0] == summary.transitions[1]
    assert [t for _, t in summary.transitions[1]] == [
        "normal -> stress",
        "stress -> critical",
        "critical -> stress",
        "stress -> normal",
    ]
    assert summary.classes[1] == {"HotspotCongestion": 4}
    assert summary.actions[0] == summary.actions[1] and summary.actions[1]["throttle_ingestion"]
    assert summary.classes[1] == summary.classes[0]
    # a cooldown between attempts, as recorded
    assert any("cooldown: last attempt" in s.decision.text for s in done.samples)
    assert summary.approximate == 0


def test_a_restart_in_the_window_stays_exact() -> None:
    cfg = config()
    rows = record(cfg, snapshots(HOT), restart_at=9)
    done = replay(rows, cfg, cfg.collection("items"), builtin_registry(config=lambda: cfg))
    assert [s.differs for s in done.samples] == [()] * len(HOT)


def test_another_config_decides_otherwise_and_says_where() -> None:
    cfg = config()
    rows = record(cfg, snapshots(HOT))
    slower = config(degrade_samples=5)
    done = replay(rows, slower, slower.collection("items"), builtin_registry(config=lambda: slower))
    summary = done.summary()
    recorded, replayed = summary.transitions
    assert recorded[0][0] < replayed[0][0]  # stress two samples later
    first = next(s for s in done.samples if s.differs)
    assert first.differs == ("state", "class", "decision")
    assert first.recorded.strategy == "throttle_ingestion" and first.decision.text == "-"
    assert first.reason.endswith("stress after 5")
    assert summary.differing > 0
    # its own action two samples later, then its own cooldown (not the recording's)
    acted = [s for s in done.samples if s.decision.kind == "chosen"]
    assert [s.at for s in acted] == [replayed[0][0]] and acted[0].approximate
    after = done.samples[done.samples.index(acted[0]) + 1]
    assert after.decision.text.startswith("cooldown: last attempt 5 s ago"), after
    # frames without the older rows' frame are skipped, not guessed
    partial = replay(
        [replace(rows[0], frame=None), *rows[1:]],
        cfg,
        cfg.collection("items"),
        builtin_registry(config=lambda: cfg),
    )
    assert partial.skipped == 1 and len(partial.samples) == len(HOT) - 1
