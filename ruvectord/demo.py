"""`ruvectord demo`: the whole loop on a real embedded PostgreSQL, narrated.

A partitioned pgvector collection that declared its placement gets a steady workload, then a
burst of writes on one partition, then (under the same steady load) mass deletes on another
partition with autovacuum off there. The terminal shows lambda_cut and the state at every
sample, the witness edges when the state changes, and every healing step: classification, the
strategy picked by learned weight (rebalance_partitions first, which moves rows but cannot
stop a burst of new writes, so it is rolled back and learned from; then throttle_ingestion),
verification or rollback, the throttle lifted once integrity is normal again; then the
fragmented HNSW index read as IndexFragmentation and compacted (VACUUM, then REINDEX
CONCURRENTLY while writes go on); and the effectiveness report with every strategy's weight.
`--json` prints the same timeline as JSON lines.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from ruvectord.config import Config, DatabaseConfig
from ruvectord.embedded import EmbeddedPostgres
from ruvectord.integrity.monitor import Cycle
from ruvectord.logs import setup_logging
from ruvectord.scenarios.collection import (
    CollectionSpec,
    create_collection,
    flush_stats,
    grant_canary,
)
from ruvectord.scenarios.faults import mass_delete
from ruvectord.scenarios.workload import Workload
from ruvectord.systemd import Notifier

HOT_SHARD = 3
# phase 4: a partition away from the hot one (whose index the moves of phase 2 touched)
FRAGMENTED_SHARD = 6
# 40 % of its rows: n_dead_tup reads about 40 % of the partition (capacity 1 - 0.4 / 0.6, so
# lambda about 0.35, well under 0.8); should page pruning lower n_dead_tup, the index's size
# still reads about a fifth of it holding no live row (lambda about 0.6)
DELETED_SHARE = 0.4


@dataclass
class Timeline:
    json_lines: bool
    started: float = field(default_factory=time.monotonic)
    samples: int = 0
    states: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def t(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def emit(self, kind: str, text: str, **data: Any) -> None:
        if self.json_lines:
            print(json.dumps({"t": self.t(), "type": kind, "text": text, **data}, default=str))
        else:
            print(text)
        sys.stdout.flush()

    def say(self, text: str) -> None:
        self.emit("step", f"· {text}")

    def phase(self, text: str) -> None:
        self.emit("phase", f"── {text}")

    def on_cycle(self, cycle: Cycle, line: str) -> None:
        self.samples += 1
        state = cycle.state.value
        self.states.append(state)
        healing = line.split("; ", 1)[1] if "; " in line else ""
        shown = state.upper() if cycle.step.changed or state != "normal" else state
        text = f"  t={self.t():6.1f}s  λ {cycle.lambda_cut:.3f}  {shown:<8}  {cycle.step.reason}"
        self.emit(
            "sample",
            text,
            lambda_cut=round(cycle.lambda_cut, 4),
            state=state,
            lambda2=cycle.result.lambda2,
            reason=cycle.step.reason,
        )
        if cycle.step.changed and cycle.state.degraded:
            witness = cycle.result.witness_edges
            self.emit(
                "state_change",
                f"        {cycle.step.previous.value} -> {state}; witness edges (the weakest cut):",
                previous=cycle.step.previous.value,
                state=state,
                witness_edges=witness,
            )
            if not self.json_lines:
                for w in witness[:8]:
                    print(
                        f"          {w['kind']:<15} {w['source']['name']} -> "
                        f"{w['target']['name']:<18} capacity {w['capacity']:.2f}  {w['reason']}"
                    )
        elif cycle.step.changed:
            self.emit(
                "state_change",
                f"        {cycle.step.previous.value} -> {state}",
                previous=cycle.step.previous.value,
                state=state,
                witness_edges=[],
            )
        for part in healing.split("; "):
            if (
                any(
                    k in part
                    for k in (
                        "action",
                        "deferred",
                        "cooldown",
                        "lifted",
                        "stopped",
                        "strategy",
                        "attempts",
                        "recovering",
                        "stepping down",  # the brake let go in steps
                        "of the brake, holding",  # ... and stepped back up
                        "no safe automatic action",
                        "index fragmentation",  # phase 4's classification
                    )
                )
                and "weakest cut" not in part
            ):
                self.decisions.append(part)
                self.emit("healing", f"        healing: {part}", decision=part)
        self.changed.set()
        self.changed = anyio.Event()

    async def wait(self, until: Callable[[], bool], limit: float) -> bool:
        with anyio.move_on_after(limit):
            while not until():
                await self.changed.wait()
            return True
        return False


def demo_config(dsn: str, state_dir: Path, interval: float) -> Config:
    return Config.model_validate(
        {
            "database": {"dsn": dsn, "connect_retries": 2},
            "daemon": {
                "state_directory": str(state_dir),
                "node_name": "demo",
                "shutdown_timeout_seconds": 10,
            },
            "metrics": {"enabled": False},
            "logging": {"format": "json", "level": "info"},
            "integrity": {
                "sample_interval_seconds": interval,
                "degrade_samples": 3,
                "critical_samples": 3,
                "recovery_hold_seconds": 3 * interval,
                "cooldown_seconds": 2 * interval,
                "budgets": {"max_queue": 16, "hot_ops_per_second": 200},
            },
            "healing": {
                "min_healing_interval_seconds": 3 * interval,
                "settle_seconds": 3 * interval,
                # the hotspot takes 3 or 4 attempts (5 on a bad day); the fragmentation of
                # phase 4 comes within the same 600 s and must not find the window full
                "max_attempts_per_window": 8,
                "attempt_window_seconds": 600,
                # let go in three steps, 3 samples each (production holds 30 s a step)
                "throttle": {"retry_after_seconds": 2, "lift_hold_seconds": 3 * interval},
                # any time (no windows, the default), and an index compacted by an earlier
                # run on the same --data-dir is not resting (production: 6 h per index)
                "strategies": {
                    "compact_indexes": {"enabled": True, "min_interval_per_target_seconds": 0}
                },
            },
            "collections": [
                {
                    "name": "items",
                    "table": "public.items",
                    "vector_column": "embedding",
                    # rows may move between partitions (rebalance_partitions, drain_hot_partition,
                    # evict_cold_data): the partition key, the row key, the bounds
                    # (small bounds: every row moved, and moved back, leaves a dead entry in
                    # both partitions' indexes until VACUUM, which reads as fragmentation)
                    "placement": CollectionSpec(placement=True).placement_config(
                        max_rows_per_batch=20, max_rows_per_action=60, max_batches_per_second=10
                    ),
                }
            ],
        }
    )


def run_demo(*, json_lines: bool = False, data_dir: Path | None = None, fast: bool = False) -> int:
    return anyio.run(_demo, json_lines, data_dir, fast)


async def _demo(json_lines: bool, data_dir: Path | None, fast: bool) -> int:
    from ruvectord.daemon import Daemon, build_healer
    from ruvectord.postgres.migrations import migrate
    from ruvectord.postgres.pool import ConnectOptions, Database

    out = Timeline(json_lines)
    interval = 1.0 if fast else 2.0
    root = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="ruvectord-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / "ruvectord.log"
    out.emit("start", "ruvectord demo: the self-healing loop on a real PostgreSQL, end to end")
    server = EmbeddedPostgres(root / "pgdata")
    out.say(f"starting an embedded PostgreSQL 18 with pgvector in {server.data_dir}")
    dsn = await anyio.to_thread.run_sync(server.start)
    log_file = log_path.open("a")
    try:
        spec = CollectionSpec(partitions=8, rows_per_partition=200, placement=True)
        setup_logging("info", "json", stream=log_file)
        # as a DBA would: `ruvectord migrate` as an administrator, then the collection's
        # grants from deploy/sql/roles.sql (create_collection does that part)
        admin = await Database.connect(ConnectOptions.from_config(DatabaseConfig(dsn=dsn)))
        try:
            await migrate(admin)
        finally:
            await admin.close()
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            vector = await create_collection(conn, spec)
            if vector:
                # and -v canary=on, so compact_indexes reports recall before and after
                await grant_canary(conn, spec)
        finally:
            await conn.close()
        out.say(
            f"created public.items: {spec.partitions} partitions (LIST on shard) and a cold tier, "
            + ("an HNSW index on each, " if vector else "no pgvector here, so real[] vectors, ")
            + f"{spec.partitions * spec.rows_per_partition} vectors; placement declared on shard"
        )
        config = demo_config(dsn, root / "state", interval)
        daemon = Daemon(
            config,
            dsn=dsn,
            healer_factory=build_healer,
            notifier=Notifier(None),
            observers=[out.on_cycle],
        )
        work = Workload(dsn, spec, vector=vector)
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run)
            with anyio.fail_after(60):
                await daemon.ready.wait()
            out.say(
                f"daemon started: a sample every {interval:g} s, thresholds 0.8 / 0.3, "
                f"stress after 3 low samples; its JSON log is {log_path}"
            )
            ok = await _scenario(out, work, spec, interval, dsn)
            await _report(out, daemon, work)
            daemon.stop()
        out.say("stopped the daemon")
        return 0 if ok else 1
    finally:
        log_file.close()
        if data_dir is None:
            await anyio.to_thread.run_sync(server.destroy)
            shutil.rmtree(root, ignore_errors=True)
            out.say("stopped and removed the embedded server; done")
        else:
            await anyio.to_thread.run_sync(server.stop)
            out.say(f"stopped the embedded server; its data stays in {root}")


async def _scenario(
    out: Timeline, work: Workload, spec: CollectionSpec, interval: float, dsn: str
) -> bool:
    shards = list(range(spec.partitions))
    ok = True
    async with anyio.create_task_group() as steady:
        out.phase("phase 1: steady load - 4 writers over all partitions, 2 vector searchers")
        for _ in range(4):
            steady.start_soon(lambda: work.writer(shards, pause=0.02))
        for _ in range(2):
            steady.start_soon(work.reader, shards)
        base = out.samples
        await out.wait(lambda: out.samples >= base + 5, 30 * interval)

        out.phase(f"phase 2: a burst of writes on items_p{HOT_SHARD} - 8 writers, 10 rows each")
        async with anyio.create_task_group() as burst:
            for _ in range(8):
                burst.start_soon(lambda: work.writer([HOT_SHARD], rows_per_statement=10))
            # strategies compete by learned weight: whatever is tried first, wait until one
            # is verified (a rolled-back one is learned from, and the next one is tried)
            healed = await out.wait(
                lambda: any("verified: lambda" in d for d in out.decisions), 40 * interval
            )
            if not healed:
                out.say("no healing outcome within the time allowed (see the log)")
                ok = False
            base = out.samples
            await out.wait(lambda: out.samples >= base + 3, 10 * interval)
            burst.cancel_scope.cancel()

        out.phase("phase 3: the burst ends; integrity recovers and the throttle is lifted")
        throttled = any(
            "throttle_ingestion" in d and "verified: lambda" in d for d in out.decisions
        )
        recovered = await out.wait(
            lambda: (
                out.states[-1:] == ["normal"]
                and (not throttled or any("lifted" in d for d in out.decisions))
            ),
            40 * interval,
        )
        if not recovered:
            out.say("integrity did not return to normal within the time allowed")
            ok = False
        stressed = "stress" in out.states

        # the steady load goes on: compaction rebuilds the index while writes and searches
        # continue
        ok = await _fragmentation(out, spec, interval, dsn, vector=work.vector) and ok
        steady.cancel_scope.cancel()
    return ok and stressed


async def _fragmentation(
    out: Timeline, spec: CollectionSpec, interval: float, dsn: str, *, vector: bool
) -> bool:
    """Phase 4: mass deletes leave dead entries in one HNSW index; compact_indexes heals."""
    if not vector:
        out.phase(
            "phase 4 skipped: no pgvector here (real[] vectors), so no HNSW index to fragment"
        )
        return True
    table = spec.partition_qualified(FRAGMENTED_SHARD)
    name = f"{spec.schema}.{spec.partition_name(FRAGMENTED_SHARD)}"
    out.phase(
        f"phase 4: mass deletes on items_p{FRAGMENTED_SHARD} - {DELETED_SHARE:.0%} of its rows, "
        "autovacuum off there, under the steady load"
    )
    base = len(out.decisions)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        deleted = await mass_delete(conn, spec, shard=FRAGMENTED_SHARD, share=DELETED_SHARE)
        # as the cleanup job would after a bulk delete (autovacuum's analyze is off there
        # now): ANALYZE brings the index's size in the catalog up to date (it dates from the
        # collection's creation, 200 rows a partition, or autovacuum's last visit), so the
        # sensor's size-based reading, which page pruning cannot lower, sees the dead
        # entries too, not only n_dead_tup
        await conn.execute(f"ANALYZE {table}")
        await flush_stats(conn)
        out.say(
            f"deleted {deleted} rows of {name} and analyzed it; its HNSW index keeps their "
            "entries until VACUUM"
        )

        def compacted() -> bool:
            return any(
                d.startswith("compact_indexes") and "verified: lambda" in d
                for d in out.decisions[base:]
            )

        healed = await out.wait(compacted, 30 * interval)
        if not healed:
            out.say("the fragmented index was not compacted within the time allowed")
        recovered = await out.wait(lambda: out.states[-1:] == ["normal"], 20 * interval)
        if healed and not recovered:
            out.say("integrity did not return to normal within the time allowed")
        # the demo's own setting, not the healing's: autovacuum back on (compaction does
        # not touch reloptions), so a kept --data-dir is left as it was
        await conn.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")
    finally:
        await conn.close()
    return healed and recovered


async def _report(out: Timeline, daemon: Any, work: Workload) -> None:
    from ruvectord.postgres.actions import HealingStore

    store = HealingStore(daemon.db)
    out.phase("effectiveness report")
    for line in await _effectiveness_lines(daemon.db):
        out.emit("report", f"  {line}")
    c = work.counts
    out.emit(
        "workload",
        f"· writers: {c.inserted} rows accepted, {c.throttled} statements throttled (RV429), "
        f"{c.failed} failed; {c.searches} vector searches",
        inserted=c.inserted,
        throttled=c.throttled,
        failed=c.failed,
        searches=c.searches,
    )
    actions = await store.list_actions()
    for a in reversed(actions):
        detail = ""
        if a["strategy_name"] == "compact_indexes":
            detail = _compacted(
                await daemon.db.fetchval(
                    "SELECT result FROM ruvector.healing_actions WHERE id = $1", a["id"]
                )
            )
        out.emit(
            "action",
            f"· action {a['id']}: {a['strategy_name']} {a['status']} ({a['problem_class']})"
            + (f": {detail}" if detail else ""),
            id=a["id"],
            strategy=a["strategy_name"],
            problem=a["problem_class"],
            status=a["status"],
        )


def _compacted(result: Any) -> str:
    """What compact_indexes measured, from its journal row: size per live row, recall."""
    if not isinstance(result, dict):
        return ""

    def recall(value: Any) -> str:
        return f"{value:.2f}" if isinstance(value, int | float) else "unavailable"

    return "; ".join(
        f"{c['name']} {c['bytes_per_live_tuple_before']:.0f} -> "
        f"{c['bytes_per_live_tuple_after']:.0f} bytes per live row in {c['seconds']:.1f} s, "
        f"recall {recall(c['recall_before'])} -> {recall(c['recall_after'])}"
        for c in result.get("compacted", [])
        if c.get("bytes_per_live_tuple_before") and c.get("bytes_per_live_tuple_after")
    )


async def _effectiveness_lines(db: Any) -> list[str]:
    """What `ruvectord effectiveness` prints, from the same SQL function."""
    rows = await db.fetch("SELECT * FROM ruvector_healing_effectiveness()")

    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} s"

    out = [f"{'strategy':<22} {'weight':>7} {'attempts':>8} {'success':>8} {'avg gain':>9}"]
    for r in rows:
        if r["strategy"] != "overall":
            weight = 1.0 if r["weight"] is None else r["weight"]  # never tried: the default
            out.append(
                f"{r['strategy']:<22} {weight:>7.2f} {r['attempts']:>8} "
                f"{r['success_rate']:>7.0%} {r['avg_improvement']:>+9.1%}"
            )
    overall = next((r for r in rows if r["strategy"] == "overall"), None)
    if overall is not None:
        out.append(
            f"overall: {overall['attempts']} attempt(s), {overall['success_rate']:.0%} verified; "
            f"mean time to verification {secs(overall['mean_time_to_verification_seconds'])}, "
            f"to recovery (degraded -> normal) {secs(overall['mean_time_to_recovery_seconds'])}"
        )
    return out
