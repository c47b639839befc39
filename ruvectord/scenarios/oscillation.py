"""An adversarial oscillating load against the real daemon: does the brake make it oscillate?

Shared by bench/oscillation.py and tests/integration/test_oscillation.py. One fault is
injected: a burst of writers on one partition that lasts `burst_seconds`. The writers honour
the throttle guard's hint (they wait `retry after N s`, then try again) and come back at full
rate the moment they are let through -- the load that made a throttle lifted at once trip
again and again. A light background load writes to every partition throughout. The real
daemon (ruvectord.daemon.Daemon, real clock, its own monitor and engine) samples and heals;
every cycle is recorded, and a poller measures how long a throttle was in force.

Times are scaled: `scaled_config` takes the production defaults as meant for a sample every
10 s (the design's recommended lower end) and shrinks every duration by interval / 10, so a
run at 0.5 s samples is the production loop 20 times faster. The retry hint and the settle
wait are the exceptions: the hint is what the writers wait, not a property of the daemon's
loop, and the settle wait (as long as the hint) keeps the first verifying reading from
counting the rows written between the sample and the throttle; a hint
shorter than a sample lets the throttled writers keep the partition hot (they would be
back before the throttle is verified); it is `retry_after_seconds` (2 s by default). And the
burst's writers make their inserts visible to the statistics views at once
(`pg_stat_force_next_flush()` in the same statement): a backend reports its counts at most
once a second, and after a rejection only when its next statement ends, a retry hint later.
Sampled every 10-60 s that lag disappears in the interval; sampled every 0.5 s it would move
the burst's rows into the wrong samples (lambda alternating between two readings, and a
throttle "failing" verification on rows written before it).
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from ruvectord.config import Config
from ruvectord.integrity.monitor import Cycle
from ruvectord.scenarios.collection import (
    THROTTLED_SQLSTATE,
    CollectionSpec,
    create_collection,
)
from ruvectord.scenarios.workload import Counts, Workload
from ruvectord.systemd import Notifier

HOT_SHARD = 3
BASE_INTERVAL = 10.0  # the sample interval the production defaults are scaled from


@dataclass(frozen=True)
class Setup:
    """One configuration of the daemon under the same load."""

    name: str
    healing: bool = True
    lift_at_once: bool = False  # the old behaviour: lift_steps 1, lifted on the first normal

    def overrides(self) -> dict[str, Any]:
        if self.lift_at_once:
            return {"lift_steps": 1, "lift_hold_seconds": 0, "lift_backoff": 1.0}
        return {}


SETUPS = (
    Setup("healing off", healing=False),
    Setup("lift at once (old)", lift_at_once=True),
    Setup("stepped lift (defaults)"),
)


def scaled_config(
    dsn: str,
    state_dir: Path,
    spec: CollectionSpec,
    setup: Setup,
    *,
    interval: float,
    retry_after_seconds: float = 2.0,
) -> Config:
    """The production defaults (for a 10 s sample) with every duration times interval / 10."""
    k = interval / BASE_INTERVAL
    throttle: dict[str, Any] = {
        "retry_after_seconds": retry_after_seconds,
        "lift_hold_seconds": 30.0 * k,
        "lift_max_hold_seconds": 600.0 * k,
    }
    throttle.update(setup.overrides())
    return Config.model_validate(
        {
            "database": {"dsn": dsn, "connect_retries": 2, "statement_timeout_seconds": 10},
            "daemon": {
                "state_directory": str(state_dir),
                "node_name": "oscillation",
                "shutdown_timeout_seconds": 10,
            },
            "metrics": {"enabled": False},
            "logging": {"format": "json", "level": "warning"},
            "integrity": {
                "sample_interval_seconds": interval,
                "recovery_hold_seconds": 300.0 * k,
                "cooldown_seconds": 60.0 * k,
                "lambda2_enabled": False,
            },
            "healing": {
                "enabled": setup.healing,
                "min_healing_interval_seconds": 300.0 * k,
                "attempt_window_seconds": 3600.0 * k,
                # not scaled, as the hint is not: a reading this soon after the throttle
                # counts the rows written between the sample and the throttle
                "settle_seconds": retry_after_seconds,
                "throttle": throttle,
            },
            "collections": [
                {"name": spec.table, "table": spec.qualified, "vector_column": "embedding"}
            ],
        }
    )


_RETRY = re.compile(r"retry after ([0-9.]+) s")


async def burst_writer(
    dsn: str, spec: CollectionSpec, counts: Counts, *, vector: bool, rows: int, seed: int
) -> None:
    """Insert `rows` rows a statement into the hot partition as fast as it is let; when
    turned away, wait as long as the hint says, then come back at full rate."""
    rng = random.Random(seed)
    cast = "vector" if vector else "real[]"
    q = f'"{spec.schema}"."{spec.table}"'
    sql = (
        f"WITH ins AS (INSERT INTO {q} (shard, embedding) "
        f"SELECT $1, e::{cast} FROM unnest($2::text[]) AS e RETURNING 1) "
        "SELECT count(*) FROM ins, pg_stat_force_next_flush()"
    )

    def embedding() -> str:
        values = ",".join(f"{rng.random():.4f}" for _ in range(spec.dims))
        return f"[{values}]" if vector else f"{{{values}}}"

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        while True:
            try:
                counts.inserted += await conn.fetchval(
                    sql, HOT_SHARD, [embedding() for _ in range(rows)]
                )
            except asyncpg.PostgresError as exc:
                if exc.sqlstate != THROTTLED_SQLSTATE:
                    counts.failed += 1
                    counts.errors.append(str(exc))
                    await anyio.sleep(0.5)
                    continue
                counts.throttled += 1
                m = _RETRY.search(getattr(exc, "hint", "") or "")
                # as clients do: the hint, with jitter, so they do not come back in step
                await anyio.sleep((float(m.group(1)) if m else 1.0) * rng.uniform(1.0, 1.5))
    finally:
        with anyio.CancelScope(shield=True):
            await conn.close(timeout=5)


@dataclass
class Sample:
    t: float  # seconds since the run began
    state: str
    lambda_cut: float
    changed: bool
    previous: str
    line: str


@dataclass
class Result:
    setup: Setup
    interval: float
    burst_seconds: float
    samples: list[Sample] = field(default_factory=list)
    burst_rows: int = 0
    background_rows: int = 0
    throttled_statements: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    throttled_seconds: float = 0.0
    throttled_after_burst: float = 0.0  # how long a throttle stayed after the burst ended
    burst_started: float = 0.0
    burst_ended: float = 0.0
    ended: float = 0.0
    lifted_after_burst: bool = False  # no throttle in force when the run ended
    normal_at_end: bool = False
    writes_after_lift: int = 0  # burst-shard rows written once the throttle was gone

    @property
    def transitions(self) -> int:
        return sum(1 for s in self.samples if s.changed)

    @property
    def episodes(self) -> int:
        """Degradation episodes: each normal -> stress/critical begins one."""
        return sum(1 for s in self.samples if s.changed and s.previous == "normal")

    @property
    def minutes(self) -> float:
        return max(1e-9, (self.ended - self.burst_started) / 60.0)

    @property
    def per_minute(self) -> float:
        return self.transitions / self.minutes

    def row(self) -> str:
        return (
            f"{self.setup.name:<26} {self.transitions:>11} {self.episodes:>8} "
            f"{self.per_minute:>12.2f} {self.burst_rows:>10} {self.background_rows:>10} "
            f"{self.throttled_seconds:>9.1f} s {self.throttled_after_burst:>9.1f} s"
        )

    def timeline(self) -> list[str]:
        out = []
        for s in self.samples:
            if s.changed or any(
                k in s.line for k in ("verified", "rolled back", "lifted", "back to", "stepping")
            ):
                healing = s.line.split("; ", 1)[1] if "; " in s.line else ""
                move = f"{s.previous} -> {s.state}" if s.changed else s.state
                out.append(f"  t={s.t:6.1f}s  λ {s.lambda_cut:.3f}  {move:<18} {healing[:110]}")
        return out


HEADER = (
    f"{'configuration':<26} {'transitions':>11} {'episodes':>8} {'transit./min':>12} "
    f"{'burst rows':>10} {'bg rows':>10} {'throttled':>11} {'after burst':>11}"
)


async def run(
    dsn: str,
    state_dir: Path,
    setup: Setup,
    *,
    interval: float = 0.5,
    spec: CollectionSpec | None = None,
    warmup_seconds: float = 5.0,
    burst_seconds: float = 120.0,
    tail_seconds: float = 60.0,
    burst_writers: int = 3,
    rows_per_statement: int = 5,
    background_writers: int = 2,
    retry_after_seconds: float = 2.0,
    config: Config | None = None,
) -> Result:
    """One configuration: warm up, burst for `burst_seconds`, then wait (up to
    `tail_seconds`) until the collection is normal and no throttle is left."""
    from ruvectord.daemon import Daemon, build_healer  # the composition root, lazily

    spec = spec or CollectionSpec(partitions=8, rows_per_partition=200)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        vector = await create_collection(conn, spec)
    finally:
        await conn.close()
    config = config or scaled_config(
        dsn, state_dir, spec, setup, interval=interval, retry_after_seconds=retry_after_seconds
    )
    result = Result(setup, interval, burst_seconds)
    started = time.monotonic()
    changed = anyio.Event()

    def on_cycle(cycle: Cycle, line: str) -> None:
        nonlocal changed
        result.samples.append(
            Sample(
                round(time.monotonic() - started, 2),
                cycle.state.value,
                cycle.lambda_cut,
                cycle.step.changed,
                cycle.step.previous.value,
                line,
            )
        )
        changed.set()
        changed = anyio.Event()

    daemon = Daemon(
        config,
        dsn=dsn,
        healer_factory=build_healer,
        notifier=Notifier(None),
        observers=[on_cycle],
    )
    background = Workload(dsn, spec, vector=vector, seed=1)
    burst = Workload(dsn, spec, vector=vector, seed=2)
    shards = list(range(spec.partitions))
    throttle_in_force = False
    burst_running = False

    async def poll_throttle() -> None:
        nonlocal throttle_in_force
        throttling = False
        poller = await asyncpg.connect(dsn, timeout=10)
        try:
            last = time.monotonic()
            while True:
                # held: a row in force, even at 0 % (the brake on probation); throttled: > 0
                row = await poller.fetchrow(
                    "SELECT count(*) > 0, coalesce(max(throttle_pct), 0) "
                    "FROM ruvector.throttles WHERE expires_at > now()"
                )
                held, level = (row[0], row[1]) if row is not None else (False, 0)
                now = time.monotonic()
                if throttling:
                    result.throttled_seconds += now - last
                    if not burst_running and result.burst_ended:
                        result.throttled_after_burst += now - last
                throttle_in_force, throttling = bool(held), bool(level)
                last = now
                await anyio.sleep(interval / 4)
        finally:
            with anyio.CancelScope(shield=True):
                await poller.close(timeout=5)

    async def hot_writer(i: int) -> None:
        await burst_writer(
            dsn, spec, burst.counts, vector=vector, rows=rows_per_statement, seed=100 + i
        )

    async def wait_for(until: Any, limit: float) -> bool:
        with anyio.move_on_after(limit):
            while not until():
                await changed.wait()
            return True
        return False

    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        with anyio.fail_after(60):
            await daemon.ready.wait()
        polling = anyio.CancelScope()

        async def poll() -> None:
            with polling:
                await poll_throttle()

        tg.start_soon(poll)
        async with anyio.create_task_group() as steady:
            for _ in range(background_writers):
                steady.start_soon(lambda: background.writer(shards, pause=0.05))
            await anyio.sleep(warmup_seconds)
            result.burst_started = time.monotonic() - started
            burst_running = True
            with anyio.move_on_after(burst_seconds):
                async with anyio.create_task_group() as writers:
                    for i in range(burst_writers):
                        writers.start_soon(partial(hot_writer, i))
            burst_running = False
            result.burst_ended = time.monotonic() - started
            # the fault is gone: the brake must be let go, the state come back to normal
            await wait_for(
                lambda: (
                    bool(result.samples)
                    and result.samples[-1].state == "normal"
                    and not throttle_in_force
                ),
                tail_seconds,
            )
            # the burst's writers, back after the lift: one more second at full rate
            result.burst_rows = before = burst.counts.inserted
            async with anyio.create_task_group() as again:
                again.start_soon(partial(hot_writer, burst_writers))
                await anyio.sleep(1.0)
                again.cancel_scope.cancel()
            result.writes_after_lift = burst.counts.inserted - before
            steady.cancel_scope.cancel()
        result.ended = time.monotonic() - started
        result.normal_at_end = bool(result.samples) and result.samples[-1].state == "normal"
        result.lifted_after_burst = not throttle_in_force
        polling.cancel()
        daemon.stop()  # its run returns once it has shut down
    for w in (background, burst):
        result.throttled_statements += w.counts.throttled
        result.failed += w.counts.failed
        result.errors += w.counts.errors[:3]
    result.background_rows = background.counts.inserted
    return result
