"""`ruvectord demo` as a user runs it: a real embedded server, real workload, the whole loop."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_the_whole_loop_and_exits_cleanly() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ruvectord.cli", "demo", "--fast", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = [e["type"] for e in events]
    # four phases (steady load, hotspot, recovery, fragmentation) and the report
    assert kinds[0] == "start" and kinds.count("phase") == 5
    samples = [e for e in events if e["type"] == "sample"]
    assert samples[0]["state"] == "normal" and samples[-1]["state"] == "normal"
    # two episodes: the hot partition, then the fragmented index
    hotspot, fragmented = [
        e for e in events if e["type"] == "state_change" and e["state"] == "stress"
    ]
    assert any("items_p3" in w["target"]["name"] for w in hotspot["witness_edges"])
    assert any(
        w["target"]["name"] == "public.items_p6_embedding_idx" and w["kind"] == "centroid_route"
        for w in fragmented["witness_edges"]
    ), fragmented
    decisions = [e["decision"] for e in events if e["type"] == "healing"]
    # two strategies for HotspotCongestion compete by learned weight: one is verified
    assert any(
        d.startswith(("rebalance_partitions", "throttle_ingestion")) and " verified: lambda" in d
        for d in decisions
    ), decisions
    assert any(d.startswith(("rebalance_partitions (action 1)",)) for d in decisions), decisions
    assert any(d.startswith("integrity is normal again: lifted") for d in decisions) or any(
        "rolled_back" in d for d in decisions
    )
    # phase 4: the mass deletes read as IndexFragmentation of that partition's HNSW index
    # (the embedded server always has pgvector), healed by compact_indexes
    assert any(d.startswith("index fragmentation") and "items_p6" in d for d in decisions)
    assert any(
        d.startswith("compact_indexes (action ") and " verified: lambda" in d for d in decisions
    )
    (compacted,) = [
        e for e in events if e["type"] == "action" and e["strategy"] == "compact_indexes"
    ]
    assert compacted["problem"] == "IndexFragmentation" and compacted["status"] == "succeeded"
    assert "public.items_p6_embedding_idx" in compacted["text"], compacted
    report = [e["text"] for e in events if e["type"] == "report"]
    assert report[0].split() == ["strategy", "weight", "attempts", "success", "avg", "gain"]
    lines = {line.split()[0]: line.split() for line in report[1:] if not line.startswith("overall")}
    assert {"rebalance_partitions", "throttle_ingestion", "compact_indexes"} <= set(lines), report
    # its outcome is recorded: one attempt, verified (the report reads healing_outcomes)
    assert lines["compact_indexes"][2:4] == ["1", "100%"], report
    assert events[-1]["text"] == "· stopped and removed the embedded server; done"
