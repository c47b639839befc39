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
    assert kinds[0] == "start" and kinds.count("phase") == 4
    samples = [e for e in events if e["type"] == "sample"]
    assert samples[0]["state"] == "normal" and samples[-1]["state"] == "normal"
    (to_stress,) = [e for e in events if e["type"] == "state_change" and e["state"] == "stress"]
    assert any("items_p3" in w["target"]["name"] for w in to_stress["witness_edges"])
    decisions = [e["decision"] for e in events if e["type"] == "healing"]
    # two strategies for HotspotCongestion compete by learned weight: one is verified
    assert any(" verified: lambda" in d for d in decisions), decisions
    assert any(d.startswith(("rebalance_partitions (action 1)",)) for d in decisions), decisions
    assert any(d.startswith("integrity is normal again: lifted") for d in decisions) or any(
        "rolled_back" in d for d in decisions
    )
    report = [e["text"] for e in events if e["type"] == "report"]
    assert report[0].split() == ["strategy", "weight", "attempts", "success", "avg", "gain"]
    tried = {line.split()[0] for line in report[1:] if not line.startswith("overall")}
    assert {"rebalance_partitions", "throttle_ingestion"} <= tried, report
    assert events[-1]["text"] == "· stopped and removed the embedded server; done"
