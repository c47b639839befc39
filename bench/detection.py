"""Detection scenario suite: real faults in real embedded PostgreSQL servers, read by the sensor.

Usage: .venv/bin/python bench/detection.py [--quick] [--only NAME] [--json]

For every fault class (a hot partition, maintenance holding up writers on one and on several
partitions, a paused standby, fragmentation by mass DELETE, skewed IVFFlat lists) and both
table shapes (plain, 8 partitions), a fresh database gets a collection, a light background
load and a monitor sampling once a second with the default thresholds (stress after 3
samples below 0.8). The fault is injected; the case ends at the first transition out of
normal (detected: the class the classifier gives at that sample) or after a timeout (missed).
Two healthy loads of 20 concurrent sessions (uniform with collection-wide searches, and
skewed-but-small) run for a minute each and count transitions. Prints the confusion matrix
per shape (injected x detected), time to detect, and transitions per minute.

The budgets are the defaults except lag_budget_bytes (16 MiB instead of 256 MiB: the bench
writes megabytes, not gigabytes, of WAL). Memory pressure is not injected: on a shared
machine the only real way (exhausting the host's memory) is not safe.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ruvectord.audit import Signer
from ruvectord.clock import SystemClock
from ruvectord.config import Config, DatabaseConfig
from ruvectord.embedded import EmbeddedPostgres
from ruvectord.healing.problems import ProblemKind, classify
from ruvectord.integrity.hysteresis import State
from ruvectord.integrity.monitor import CollectionMonitor, Cycle, Runtime
from ruvectord.logs import setup_logging
from ruvectord.metrics import Metrics
from ruvectord.postgres.migrations import migrate
from ruvectord.postgres.pool import ConnectOptions, Database
from ruvectord.postgres.sampler import Sampler
from ruvectord.postgres.store import Store
from ruvectord.scenarios import faults
from ruvectord.scenarios.collection import CollectionSpec, create_collection
from ruvectord.scenarios.replica import StreamingPair
from ruvectord.scenarios.workload import Workload

INTERVAL = 1.0
DETECT_TIMEOUT = 40.0
COLUMNS = [k.value for k in ProblemKind if k is not ProblemKind.UNKNOWN] + ["Unknown", "none"]
SHORT = {
    "HotspotCongestion": "Hotspot",
    "CentroidSkew": "Centroid",
    "ReplicationLag": "Replication",
    "MaintenanceContention": "Maintenance",
    "IndexFragmentation": "Fragment.",
    "MemoryPressure": "Memory",
    "Unknown": "Unknown",
    "none": "none",
}


def spec_for(shape: str, *, method: str = "hnsw") -> CollectionSpec:
    return CollectionSpec(
        partitions=8, rows_per_partition=500, plain=shape == "plain", method=method, lists=10
    )


@dataclass
class Outcome:
    scenario: str
    shape: str
    expected: str | None
    detected: str = "none"  # the class at the first transition out of normal
    seconds_to_detect: float | None = None
    lambda_at_detection: float | None = None
    transitions: int = 0
    minutes: float = 0.0
    min_lambda: float = 1.0
    detail: str = ""
    timeline: list[tuple[float, float, str]] = field(default_factory=list)


class Probe:
    """The monitor of one collection, sampled every INTERVAL seconds in a task of its own."""

    def __init__(self, monitor: CollectionMonitor, config: Config) -> None:
        self.monitor = monitor
        self.config = config
        self.cycles: list[tuple[float, Cycle]] = []
        self.started = time.monotonic()
        self.changed = anyio.Event()
        self.stopping = False
        self.stopped = anyio.Event()

    async def run(self) -> None:
        while not self.stopping:
            t0 = time.monotonic()
            cycle = await self.monitor.cycle_safely()
            if cycle is not None:
                self.cycles.append((t0 - self.started, cycle))
                self.changed.set()
                self.changed = anyio.Event()
            await anyio.sleep(max(0.0, INTERVAL - (time.monotonic() - t0)))
        self.stopped.set()

    async def stop(self) -> None:
        """Stop between two samples (cancelling one mid-way leaves a transaction behind)."""
        self.stopping = True
        with anyio.move_on_after(INTERVAL * 10):
            await self.stopped.wait()

    async def samples(self, n: int) -> None:
        target = len(self.cycles) + n
        with anyio.fail_after(n * INTERVAL * 10 + 30):
            while len(self.cycles) < target:
                await self.changed.wait()

    def transitions_since(self, index: int) -> list[tuple[float, Cycle]]:
        return [(t, c) for t, c in self.cycles[index:] if c.step.changed]

    def classify(self, cycle: Cycle) -> str:
        return classify(cycle.result, cycle.snapshot, self.config.healing.classifier).kind.value


def bench_config(dsn: str, state_dir: Path) -> Config:
    return Config.model_validate(
        {
            "database": {"dsn": dsn, "connect_retries": 2, "statement_timeout_seconds": 10},
            "daemon": {"state_directory": str(state_dir), "node_name": "bench"},
            "metrics": {"enabled": False},
            "integrity": {
                "sample_interval_seconds": INTERVAL,
                "lambda2_enabled": False,
                "budgets": {"lag_budget_bytes": 16 * 1024 * 1024},
            },
            "collections": [
                {"name": "items", "table": "public.items", "vector_column": "embedding"}
            ],
        }
    )


@asynccontextmanager
async def watched(dsn: str, state_dir: Path) -> AsyncIterator[Probe]:
    """A monitor (no healer: detection only) sampling the collection `items` at `dsn`."""
    config = bench_config(dsn, state_dir)
    db = await Database.connect(ConnectOptions.from_config(DatabaseConfig(dsn=dsn)))
    try:
        await migrate(db)
        signer = Signer(Ed25519PrivateKey.generate())
        store = Store(db, signer)
        await store.register_key(signer, "bench")
        ids = await store.sync_collections(config)
        rt = Runtime(config, SystemClock(), Metrics(), store)
        c = config.collections[0]
        sampler = Sampler(db, c, ivf_refresh_seconds=2.0)
        probe = Probe(CollectionMonitor(rt, c, ids["items"], sampler), config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(probe.run)
            try:
                yield probe
            finally:
                await probe.stop()
                tg.cancel_scope.cancel()
    finally:
        await db.close()


async def new_database(admin_dsn: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_dsn.replace("/postgres?", f"/{name}?")


async def drop_database(admin_dsn: str, dsn: str) -> None:
    name = dsn.split("/")[-1].split("?")[0]
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


Inject = Callable[[str, CollectionSpec, asyncpg.Connection], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class Scenario:
    name: str
    expected: str | None
    inject: Inject | None = None  # None: a healthy load
    partitioned_only: bool = False
    method: str = "hnsw"
    skewed: bool = False  # healthy loads only


@asynccontextmanager
async def _once(action: Callable[[], Awaitable[Any]]) -> AsyncIterator[None]:
    await action()
    yield


def _hot(dsn: str, spec: CollectionSpec, conn: asyncpg.Connection) -> Any:
    return faults.hot_partition(dsn, spec, vector=True)


def _reindex_one(dsn: str, spec: CollectionSpec, conn: asyncpg.Connection) -> Any:
    return faults.blocking_maintenance(
        dsn, spec, "REINDEX TABLE {p}", vector=True, shards=[faults.HOT_SHARD]
    )


def _alter_one(dsn: str, spec: CollectionSpec, conn: asyncpg.Connection) -> Any:
    return faults.blocking_maintenance(
        dsn,
        spec,
        "ALTER TABLE {p} ALTER COLUMN tenant SET DEFAULT 'other'",
        vector=True,
        shards=[faults.HOT_SHARD],
    )


def _lock_several(dsn: str, spec: CollectionSpec, conn: asyncpg.Connection) -> Any:
    return faults.blocking_maintenance(
        dsn, spec, "LOCK TABLE {p} IN SHARE MODE", vector=True, shards=[1, 2, 3, 4]
    )


def _delete(dsn: str, spec: CollectionSpec, conn: asyncpg.Connection) -> Any:
    return _once(lambda: faults.mass_delete(conn, spec, shard=faults.HOT_SHARD, share=0.45))


def _skew(dsn: str, spec: CollectionSpec, conn: asyncpg.Connection) -> Any:
    # three times the rows of the index's table, around one point (plain: the whole table)
    rows = 3 * spec.rows_per_partition * (spec.partitions if spec.plain else 1)
    return _once(lambda: faults.skew_ivf_lists(conn, spec, shard=faults.HOT_SHARD, rows=rows))


SCENARIOS = [
    Scenario("hot partition", "HotspotCongestion", _hot, partitioned_only=True),
    Scenario("REINDEX, one partition", "MaintenanceContention", _reindex_one),
    Scenario("ALTER TABLE, one partition", "MaintenanceContention", _alter_one),
    Scenario(
        "LOCK, four partitions", "MaintenanceContention", _lock_several, partitioned_only=True
    ),
    Scenario("paused replay", "ReplicationLag"),  # injected on a streaming pair
    Scenario("mass DELETE + pruning", "IndexFragmentation", _delete),
    Scenario("skewed IVF lists", "CentroidSkew", _skew, method="ivfflat"),
    Scenario("healthy uniform, 20 sessions", None),
    Scenario("healthy skewed-but-small, 20 sessions", None, skewed=True),
]


async def run_fault(
    scenario: Scenario, shape: str, dsn: str, state_dir: Path, pair: StreamingPair | None
) -> Outcome:
    spec = spec_for(shape, method=scenario.method)
    out = Outcome(scenario.name, shape, scenario.expected)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await create_collection(conn, spec)
        await conn.execute("CHECKPOINT")  # IVFFlat list sizes are read from written-out pages
        background = Workload(dsn, spec, vector=True, seed=3)
        shards = list(range(spec.partitions))
        async with watched(dsn, state_dir) as probe, anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(lambda: background.writer(shards, pause=0.1))
                tg.start_soon(lambda: background.reader(shards, pause=0.1))
            await probe.samples(5)  # warm up: loads known, IVF lists read
            mark = len(probe.cycles)
            injected = time.monotonic() - probe.started
            if pair is not None:
                fault: AbstractAsyncContextManager[Any] = faults.paused_replay(
                    pair.primary.dsn(), pair.standby.dsn()
                )
            else:
                assert scenario.inject is not None
                fault = scenario.inject(dsn, spec, conn)
            async with fault:
                with anyio.move_on_after(DETECT_TIMEOUT):
                    while not probe.transitions_since(mark):
                        await probe.changed.wait()
            for t, cycle in probe.transitions_since(mark)[:1]:
                out.detected = probe.classify(cycle)
                out.seconds_to_detect = round(t - injected, 1)
                out.lambda_at_detection = round(cycle.lambda_cut, 3)
                out.detail = cycle.result.summary()
            tg.cancel_scope.cancel()
        _summarise(out, probe, mark)
    finally:
        await conn.close()
    return out


async def run_healthy(
    scenario: Scenario, shape: str, dsn: str, state_dir: Path, seconds: float
) -> Outcome:
    spec = spec_for(shape)
    out = Outcome(scenario.name, shape, None)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await create_collection(conn, spec)
        async with watched(dsn, state_dir) as probe:
            async with faults.healthy_load(dsn, spec, vector=True, skewed=scenario.skewed):
                await probe.samples(3)
                mark = len(probe.cycles)
                await anyio.sleep(seconds)
            moves = probe.transitions_since(mark)
            out.transitions = len(moves)
            out.minutes = seconds / 60
            if moves:
                out.detected = probe.classify(moves[0][1])
                out.detail = moves[0][1].step.reason
        _summarise(out, probe, mark)
    finally:
        await conn.close()
    return out


def _summarise(out: Outcome, probe: Probe, mark: int) -> None:
    after = probe.cycles[mark:]
    out.min_lambda = round(min((c.lambda_cut for _, c in after), default=1.0), 3)
    out.timeline = [(round(t, 1), round(c.lambda_cut, 3), c.state.value) for t, c in after]
    if out.expected is None:
        return
    before = probe.cycles[:mark]
    if any(c.state is not State.NORMAL for _, c in before):
        out.detail += " (degraded before the fault)"


async def main(quick: bool, only: str | None, as_json: bool) -> int:
    setup_logging("error", "console", stream=sys.stderr)  # the state changes are the output
    root = Path(tempfile.mkdtemp(prefix="ruvectord-bench-detection-"))
    server = EmbeddedPostgres(root / "pgdata", port=5470)
    outcomes: list[Outcome] = []
    healthy_seconds = 20.0 if quick else 60.0
    try:
        admin = await anyio.to_thread.run_sync(server.start)
        for scenario in SCENARIOS:
            if only and only.lower() not in scenario.name.lower():
                continue
            for shape in ("plain", "partitioned"):
                if scenario.partitioned_only and shape == "plain":
                    continue
                state_dir = root / f"state-{uuid.uuid4().hex[:6]}"
                state_dir.mkdir()
                if scenario.name == "paused replay":
                    pair = await anyio.to_thread.run_sync(
                        partial(
                            StreamingPair.create,
                            root / f"repl-{shape}",
                            primary_port=5471,
                            standby_port=5472,
                        )
                    )
                    try:
                        outcome = await run_fault(
                            scenario, shape, pair.primary.dsn(), state_dir, pair
                        )
                    finally:
                        await anyio.to_thread.run_sync(pair.destroy)
                else:
                    dsn = await new_database(admin)
                    try:
                        if scenario.expected is None:
                            outcome = await run_healthy(
                                scenario, shape, dsn, state_dir, healthy_seconds
                            )
                        else:
                            outcome = await run_fault(scenario, shape, dsn, state_dir, None)
                    finally:
                        await drop_database(admin, dsn)
                outcomes.append(outcome)
                _progress(outcome, as_json)
        report(outcomes, as_json)
    finally:
        await anyio.to_thread.run_sync(server.destroy)
        shutil.rmtree(root, ignore_errors=True)
    wrong = [o for o in outcomes if o.expected is not None and o.detected != o.expected]
    noisy = [o for o in outcomes if o.expected is None and o.transitions]
    return 1 if wrong or noisy else 0


def _progress(o: Outcome, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"type": "case", **o.__dict__}, default=str))
    else:
        ttd = f"{o.seconds_to_detect:5.1f} s" if o.seconds_to_detect is not None else "    - "
        print(
            f"  {o.scenario:<40} {o.shape:<12} -> {o.detected:<22} {ttd}  "
            f"min lambda {o.min_lambda:.3f}  {o.detail}",
            file=sys.stderr,
        )


def report(outcomes: list[Outcome], as_json: bool) -> None:
    if as_json:
        return
    for shape in ("plain", "partitioned"):
        rows = [o for o in outcomes if o.shape == shape and o.expected is not None]
        if not rows:
            continue
        print(f"\nconfusion matrix, {'plain table' if shape == 'plain' else '8 partitions'}")
        print("injected \\ detected".ljust(28) + "".join(SHORT[c].rjust(12) for c in COLUMNS))
        by_class: dict[str, Counter[str]] = {}
        for o in rows:
            assert o.expected is not None
            by_class.setdefault(o.expected, Counter())[o.detected] += 1
        for expected, counts in by_class.items():
            print(SHORT[expected].ljust(28) + "".join(str(counts[c]).rjust(12) for c in COLUMNS))
    print("\ntime to detect (injection to normal -> stress; 1 s samples, stress after 3)")
    print(f"{'scenario':<40}{'plain':>12}{'8 partitions':>16}")
    for name in dict.fromkeys(o.scenario for o in outcomes if o.expected is not None):
        cells = []
        for shape in ("plain", "partitioned"):
            found = [x for x in outcomes if x.scenario == name and x.shape == shape]
            if not found:
                cells.append("n/a")
            elif found[0].seconds_to_detect is None:
                cells.append("missed")
            else:
                x = found[0]
                ok = "" if x.detected == x.expected else f" ({SHORT[x.detected]})"
                cells.append(f"{x.seconds_to_detect:.1f} s{ok}")
        print(f"{name:<40}{cells[0]:>12}{cells[1]:>16}")
    print("\nhealthy loads: transitions per minute (min lambda)")
    for o in outcomes:
        if o.expected is None:
            rate = o.transitions / o.minutes if o.minutes else 0.0
            print(f"{o.scenario:<40}{o.shape:<12}{rate:6.2f}/min  ({o.min_lambda:.3f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="healthy loads for 20 s, not 60")
    parser.add_argument("--only", help="run the scenarios whose name contains this")
    parser.add_argument("--json", action="store_true", help="one JSON line per case")
    args = parser.parse_args()
    sys.exit(anyio.run(main, args.quick, args.only, args.json))
