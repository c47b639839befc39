"""Oscillation under an adversarial load: how many degradation episodes one fault makes.

Usage: PYTHONPATH=. .venv/bin/python bench/oscillation.py [--interval 0.5] [--burst 150]
       [--tail 90] [--only NAME] [--timeline]

On an embedded PostgreSQL 18, three configurations of the real daemon, one after another in
the same run, each on a fresh database, under the same load (ruvectord/scenarios/
oscillation.py): a burst of writers on one partition that honour the throttle's retry hint
and return at full rate as soon as they are let through, for `--burst` seconds, and a light
background load throughout; then up to `--tail` seconds for the brake to be let go.

  healing off                no throttle: the burst degrades integrity once, for as long as
                             it lasts
  lift at once (old)         lift_steps 1: the throttle is lifted on the first normal sample
  stepped lift (defaults)    the brake's defaults (healing/brake.py)

Every duration of the daemon's defaults is scaled from a 10 s sample to `--interval` (0.5 s:
20 times faster); the retry hint stays 2 s (see the scenario module). Prints per
configuration the state transitions, degradation episodes (normal -> stress/critical), the
transitions per minute (burst and tail), the rows the burst's writers and the background
writers got in, the time a throttle was in force, and how long it stayed after the burst.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import anyio
import asyncpg

from ruvectord.config import DatabaseConfig
from ruvectord.embedded import EmbeddedPostgres
from ruvectord.logs import setup_logging
from ruvectord.postgres.migrations import migrate
from ruvectord.postgres.pool import ConnectOptions, Database
from ruvectord.scenarios import oscillation
from ruvectord.scenarios.oscillation import HEADER, SETUPS, Result


async def _fresh_database(server: EmbeddedPostgres) -> str:
    name = f"osc_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(server.dsn(), timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = server.dsn(name)
    admin = await Database.connect(ConnectOptions.from_config(DatabaseConfig(dsn=dsn)))
    try:
        await migrate(admin)
    finally:
        await admin.close()
    return dsn


async def main(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="ruvectord-osc-"))
    log = (root / "daemon.log").open("a")
    setup_logging("warning", "json", stream=log)
    server = EmbeddedPostgres(root / "pgdata")
    await anyio.to_thread.run_sync(server.start)
    results: list[Result] = []
    try:
        for setup in SETUPS:
            if args.only and args.only not in setup.name:
                continue
            dsn = await _fresh_database(server)
            print(f"running: {setup.name} ...", file=sys.stderr, flush=True)
            r = await oscillation.run(
                dsn,
                root / f"state-{len(results)}",
                setup,
                interval=args.interval,
                burst_seconds=args.burst,
                tail_seconds=args.tail,
                burst_writers=args.writers,
            )
            results.append(r)
            if args.timeline:
                print(f"{setup.name}:", *r.timeline(), sep="\n", file=sys.stderr, flush=True)
    finally:
        log.close()
        await anyio.to_thread.run_sync(server.destroy)
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"sample {args.interval:g} s (defaults scaled x{args.interval / 10:g}: lift hold "
        f"{30 * args.interval / 10:g} s, recovery hold {300 * args.interval / 10:g} s); "
        f"burst {args.burst:g} s of {args.writers} writers on one partition, retry hint 2 s"
    )
    print(HEADER)
    for r in results:
        print(r.row())
    for r in results:
        end = "normal" if r.normal_at_end else "still degraded"
        lift = "no throttle left" if r.lifted_after_burst else "a throttle still in force"
        print(
            f"{r.setup.name}: at the end {end}, {lift}; {r.writes_after_lift} burst rows in "
            f"the 1 s after; {r.throttled_statements} statements throttled, {r.failed} failed"
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--burst", type=float, default=120.0)
    parser.add_argument("--tail", type=float, default=60.0)
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--only", default="")
    parser.add_argument("--timeline", action="store_true")
    sys.exit(anyio.run(main, parser.parse_args()))
