"""A replay frame: what one sample's decisions were computed from, compact and exact.

The monitor stores one with every recorded sample (`integrity_samples.frame`) and
`ruvectord replay` decodes it to run the same pure path again (sense.py, then the classifier
and strategy selection). A frame holds exactly what that path reads, nothing rounded:

- the snapshot's fields the graph and the classifier read (partitions, indexes, jobs, replicas,
  IVF lists, memory, the largest relations), not the cumulative counters: those only feed
  the load, stored instead as each partition's operation count since the previous sample
  and the seconds between them (the rates are divided from these integers again);
- the state machine's tracker as the sample found it, with its monotonic readings, and the
  sample's monotonic reading: holds and cooldowns are measured on that clock, so a replay
  from wall times alone could land on the other side of a boundary.

Encoded as JSON arrays (floats keep their shortest exact repr) compressed with zlib; a
collection of 64 partitions and their indexes takes about 1.2 KB (README, "Replay").
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ruvectord.integrity.hysteresis import State, Tracker
from ruvectord.integrity.snapshot import (
    CentroidStats,
    IndexStats,
    MaintenanceJob,
    MemoryStats,
    PartitionStats,
    Rates,
    ReplicaStats,
    Snapshot,
)
from ruvectord.timebase import Instant

VERSION = 1


class FrameError(ValueError):
    """A stored frame this build cannot read (another version, or damaged)."""


@dataclass(frozen=True, slots=True)
class Frame:
    mono: float  # the sample's monotonic reading (the wall time is the row's sampled_at)
    tracker: Tracker  # the state machine as this sample found it
    snapshot: Snapshot
    load: Rates

    def instant(self) -> Instant:
        return Instant(self.mono, self.snapshot.taken_at)


def encode(frame: Frame) -> bytes:
    s, load = frame.snapshot, frame.load
    t = frame.tracker
    doc: dict[str, Any] = {
        "v": VERSION,
        "m": frame.mono,
        "k": [
            t.state.value,
            t.low_streak,
            t.hold_since,
            t.last_transition,
            None if t.last_transition_at is None else t.last_transition_at.isoformat(),
        ],
        "s": load.seconds,
        "e": load.error_rate,
        "p": [
            [
                p.oid,
                p.name,
                p.tenant,
                p.live_tuples,
                p.dead_tuples,
                p.waiting_backends,
                p.queue_depth,
                load.operations.get(p.oid, 0),
            ]
            for p in s.partitions
        ],
        "b": s.block_size,
    }
    if s.indexes:
        doc["i"] = [
            [
                ix.oid,
                ix.name,
                ix.partition_oid,
                ix.method,
                ix.bytes,
                ix.valid,
                dict(ix.options),
                ix.vector_type,
                ix.dims,
            ]
            for ix in s.indexes
        ]
    if s.maintenance:
        doc["j"] = [
            [
                j.pid,
                j.kind,
                j.description,
                list(j.partitions),
                j.blocking,
                j.running_seconds,
                j.blocked_seconds,
            ]
            for j in s.maintenance
        ]
    if s.replicas:
        doc["r"] = [
            [
                r.name,
                r.pid,
                r.state,
                r.sync_state,
                r.lag_seconds,
                r.lag_bytes,
                r.unapplied_bytes,
            ]
            for r in s.replicas
        ]
    if s.centroids:
        doc["c"] = [[c.centroid_id, c.vector_count, c.latency_ms, c.index_oid] for c in s.centroids]
    if s.memory is not None:
        m = s.memory
        doc["M"] = [m.total_bytes, m.available_bytes, m.cgroup_current, m.cgroup_max]
    if s.largest_relations:
        doc["L"] = [list(r) for r in s.largest_relations]
    if s.in_recovery:
        doc["R"] = True
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return zlib.compress(text.encode(), 9)


def decode(raw: bytes, collection: str, taken_at: datetime) -> Frame:
    """The frame of a sample of `collection` recorded at `taken_at` (its sampled_at)."""
    try:
        doc = json.loads(zlib.decompress(raw))
    except (zlib.error, ValueError) as exc:
        raise FrameError(f"unreadable replay frame: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        version = doc.get("v") if isinstance(doc, dict) else None
        raise FrameError(f"replay frame version {version!r}; this build reads {VERSION}")
    try:
        return _frame(doc, collection, taken_at)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise FrameError(f"damaged replay frame: {type(exc).__name__}: {exc}") from None


def _frame(doc: dict[str, Any], collection: str, taken_at: datetime) -> Frame:
    state, streak, hold, last, last_at = doc["k"]
    tracker = Tracker(
        State(state),
        streak,
        hold,
        last,
        None if last_at is None else datetime.fromisoformat(last_at),
    )
    partitions = tuple(
        # only the fields the graph reads; the queue as the sampler measured it
        PartitionStats(oid, name, None, tenant, live, dead, 0, 0, 0, 0, 0, 0, 0, 0, waiting, queue)
        for oid, name, tenant, live, dead, waiting, queue, _ in doc["p"]
    )
    operations = {row[0]: row[7] for row in doc["p"]}
    m = doc.get("M")
    snapshot = Snapshot(
        collection=collection,
        taken_at=taken_at,
        partitions=partitions,
        indexes=tuple(
            IndexStats(oid, name, part, method, size, valid, options, vtype, dims)
            for oid, name, part, method, size, valid, options, vtype, dims in doc.get("i", ())
        ),
        maintenance=tuple(
            MaintenanceJob(pid, kind, desc, tuple(parts), blocking, running, blocked)
            for pid, kind, desc, parts, blocking, running, blocked in doc.get("j", ())
        ),
        replicas=tuple(ReplicaStats(*row) for row in doc.get("r", ())),
        centroids=tuple(CentroidStats(*row) for row in doc.get("c", ())),
        memory=None if m is None else MemoryStats(*m),
        largest_relations=tuple((name, size) for name, size in doc.get("L", ())),
        in_recovery=bool(doc.get("R", False)),
        block_size=doc["b"],
    )
    load = Rates.over(doc["s"], operations, doc["e"], 0.0)
    return Frame(doc["m"], tracker, snapshot, load)
