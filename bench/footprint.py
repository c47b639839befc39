"""What the daemon costs to run: CPU (its own and its server backends'), WAL and memory.

Usage: PYTHONPATH=. .venv/bin/python bench/footprint.py [--quick] [--shapes 10x64,1x1200]
       [--interval 1] [--duration 180] [--load] [--py-spy OUT] [--source DIR]
       [--reference DIR [--rounds N]]

With --reference DIR (a checkout of an older commit), each shape is measured for that tree and
for ours alternately, N rounds, and the report ends with ours/reference per figure: the ratio
of two trees measured in the same run, on the same server, under the same machine load.

For each shape (N collections x P LIST partitions, a few rows of 8 dimensions and an HNSW index
each), in a fresh database on one embedded PostgreSQL 18, it starts the real daemon
(`python -m ruvectord.cli run -c cfg.yaml`, healing enabled, logging at info to a file), waits
until every collection has recorded two samples, and then measures over the window:

- daemon CPU: utime + stime of the daemon process (all its threads) from /proc/<pid>/stat;
- server CPU: the same for the daemon's backends (pg_stat_activity, application_name
  ruvectord*), polled every 0.2 s so a pooled connection that comes and goes is counted from
  its birth to its last reading;
- WAL: pg_current_wal_lsn() at the end minus at the start (everything the server wrote, the
  daemon's samples included; with --load, the load's writes too);
- RSS: the daemon's VmHWM (peak resident set) at the end;
- latency: integrity_samples.sample_ms (the statistics queries) and computation_ms (graph,
  mincut, lambda2) of the window's samples, p50 and p99.

Each cost is divided by the collection-samples recorded in the window (integrity_samples
rows). The interval defaults to 1 s instead of the production 10-60 s only to collect samples
quickly: a sample's cost does not depend on the interval (nothing accumulates between samples
but the statistics the sampler reads). --quick: 30 s windows, for a smoke run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncpg

import ruvectord
from ruvectord.embedded import EmbeddedPostgres
from ruvectord.scenarios.collection import CollectionSpec, create_collection

ROOT = Path(__file__).parents[1]
TICK = os.sysconf("SC_CLK_TCK")

# the issue's targets at 10 collections x 64 partitions, and its "before" (ms, KB, MB)
TARGETS = {"daemon_ms": 8.0, "server_ms": 3.0, "wal_kb": 4.0, "rss_mb": 150.0}
ISSUE_BEFORE = {"daemon_ms": 20.0, "server_ms": 6.3}


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), or None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, **kwargs)


def stop_processes(daemon: subprocess.Popen[bytes], spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.wait(timeout=60)
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


@dataclass
class Result:
    tree: str  # "ours", or "reference" (--reference)
    shape: str
    seconds: float
    samples: int
    daemon_ms: float
    server_ms: float
    wal_kb: float
    rss_mb: float
    backends: int
    sample_ms: tuple[float, float]
    computation_ms: tuple[float, float]
    notes: list[str] = field(default_factory=list)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def load(dsn: str, specs: list[CollectionSpec], stop: anyio.Event) -> None:
    """A light steady load: 20 single-row inserts and 5 kNN searches a second, round robin."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        vec = "[" + ",".join(["0.5"] * specs[0].dims) + "]"
        i = 0
        while not stop.is_set():
            spec = specs[i % len(specs)]
            q = f"{spec.schema}.{spec.table}"
            await conn.execute(
                f"INSERT INTO {q} (shard, embedding) VALUES ($1, $2::vector)",
                i % spec.partitions,
                vec,
            )
            if i % 4 == 0:
                await conn.fetch(
                    f"SELECT id FROM {q} ORDER BY embedding <-> $1::vector LIMIT 5", vec
                )
            i += 1
            await anyio.sleep(0.05)
    finally:
        await conn.close()


async def run_shape(
    server: EmbeddedPostgres,
    root: Path,
    n: int,
    p: int,
    args: argparse.Namespace,
    source: Path,
    tree: str = "ours",
) -> Result:
    shape = f"{n}x{p}"
    db = f"footprint_{n}x{p}"
    admin = await asyncpg.connect(server.dsn(), timeout=10)
    await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{db}"')
    await admin.close()
    dsn = server.dsn(db)
    conn = await asyncpg.connect(dsn, timeout=30, command_timeout=600)
    specs = [
        CollectionSpec(table=f"c{i}", partitions=p, dims=8, rows_per_partition=2) for i in range(n)
    ]
    started = time.monotonic()
    for spec in specs:
        await create_collection(conn, spec)
    print(
        f"{shape}: created {n} collections x {p} partitions in {time.monotonic() - started:.0f} s"
    )
    state = root / f"state-{shape}"
    state.mkdir(exist_ok=True)
    cfg = root / f"{shape}.yaml"
    colls = "\n".join(
        f"  - {{name: {s.table}, table: {s.qualified}, vector_column: embedding}}" for s in specs
    )
    cfg.write_text(
        f"""
database: {{dsn: "{dsn}"}}
daemon: {{state_directory: {state}}}
metrics: {{listen_address: "127.0.0.1:0"}}
logging: {{format: json, level: info}}
integrity: {{sample_interval_seconds: {args.interval}}}
collections:
{colls}
"""
    )
    log = (root / f"daemon-{shape}.log").open("w")
    # without what importing ruvectord here set: the daemon decides for itself
    env = {k: v for k, v in os.environ.items() if k not in ruvectord.ENV_DEFAULTS}
    env["PYTHONPATH"] = str(source)
    proc = spawn(
        [sys.executable, "-m", "ruvectord.cli", "run", "-c", str(cfg)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=source,
    )
    spy: subprocess.Popen[bytes] | None = None
    stop = anyio.Event()
    try:
        # warm up: every collection has recorded two samples (imports, migrations, first reads)
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{shape}: the daemon exited ({proc.returncode}); see {log.name}")
            try:
                done = await conn.fetchval(
                    "SELECT count(*) FROM (SELECT collection_id FROM ruvector.integrity_samples"
                    " GROUP BY collection_id HAVING count(*) >= 2) s"
                )
            except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
                done = 0
            if done >= n:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{shape}: no samples within 120 s; see {log.name}")
            await anyio.sleep(0.5)

        window = args.duration
        if args.py_spy:
            out = f"{args.py_spy}-{tree}-{shape}.txt"
            spy = spawn(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(proc.pid),
                    "--duration",
                    str(int(window)),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    out,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        me = await conn.fetchval("SELECT pg_backend_pid()")
        first: dict[int, float] = {}
        last: dict[int, float] = {}

        async def poll_backends() -> None:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'ruvectord%'"
                " AND pid <> $1",
                me,
            )
            for r in rows:
                pid = r["pid"]
                now = cpu_seconds(pid)
                if now is None:
                    continue
                # a backend born during the window counts from zero (its connection set-up
                # is the daemon's cost too)
                first.setdefault(pid, now if not started_window else 0.0)
                last[pid] = now

        started_window = False
        await poll_backends()
        started_window = True
        lsn0 = await conn.fetchval("SELECT pg_current_wal_lsn()")
        id0 = await conn.fetchval("SELECT coalesce(max(id), 0) FROM ruvector.integrity_samples")
        d0 = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        async with anyio.create_task_group() as tg:
            if args.load:
                tg.start_soon(load, dsn, specs, stop)
            while time.monotonic() - t0 < window:
                await anyio.sleep(0.2)
                await poll_backends()
            stop.set()
        d1 = cpu_seconds(proc.pid)
        elapsed = time.monotonic() - t0
        lsn1 = await conn.fetchval("SELECT pg_current_wal_lsn()")
        wal = await conn.fetchval("SELECT pg_wal_lsn_diff($1, $2)", lsn1, lsn0)
        rows = await conn.fetch(
            "SELECT sample_ms, computation_ms FROM ruvector.integrity_samples WHERE id > $1",
            id0,
        )
        rss = peak_rss_mb(proc.pid)
        assert d0 is not None and d1 is not None
        samples = len(rows) or 1
        backend_cpu = sum(last[pid] - first[pid] for pid in last)
        notes: list[str] = []
        if args.load:
            notes.append("WAL includes the load's writes")
        return Result(
            tree=tree,
            shape=shape,
            seconds=elapsed,
            samples=len(rows),
            daemon_ms=(d1 - d0) * 1000 / samples,
            server_ms=backend_cpu * 1000 / samples,
            wal_kb=float(wal) / 1024 / samples,
            rss_mb=rss,
            backends=len(last),
            sample_ms=(pct([r[0] for r in rows], 50), pct([r[0] for r in rows], 99)),
            computation_ms=(pct([r[1] for r in rows], 50), pct([r[1] for r in rows], 99)),
            notes=notes,
        )
    finally:
        stop.set()
        await anyio.to_thread.run_sync(stop_processes, proc, spy)
        log.close()
        await conn.close()


def ratio(ours: list[Result], ref: list[Result], field: str) -> str:
    mine = statistics.mean(getattr(r, field) for r in ours)
    theirs = statistics.mean(getattr(r, field) for r in ref)
    return f"{mine / theirs:.2f}x" if theirs else "n/a"


def report(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(
        f"per collection-sample; {args.interval:g} s interval (the cost of a sample does not "
        "depend on it), healing on, logging at info"
    )
    head = (
        f"{'':28}{'daemon CPU ms':>14}{'server CPU ms':>14}{'WAL KB':>9}{'RSS MB':>9}"
        f"{'sample ms p50/p99':>20}{'compute ms p50/p99':>21}{'samples':>9}"
    )
    print(head)
    t, b = TARGETS, ISSUE_BEFORE
    print(
        f"{'target (10x64)':28}{t['daemon_ms']:>14.1f}{t['server_ms']:>14.1f}"
        f"{t['wal_kb']:>9.1f}{t['rss_mb']:>9.0f}"
    )
    print(f"{'issue 13 before (10x64)':28}{b['daemon_ms']:>14.1f}{b['server_ms']:>14.1f}")
    for r in results:
        label = f"{'measured' if r.tree == 'ours' else 'reference'} {r.shape}"
        lat = f"{r.sample_ms[0]:.1f} / {r.sample_ms[1]:.1f}"
        comp = f"{r.computation_ms[0]:.1f} / {r.computation_ms[1]:.1f}"
        print(
            f"{label:28}{r.daemon_ms:>14.2f}{r.server_ms:>14.2f}{r.wal_kb:>9.2f}"
            f"{r.rss_mb:>9.0f}{lat:>20}{comp:>21}{r.samples:>9}"
            + (f"  ({'; '.join(r.notes)})" if r.notes else "")
        )
    for shape in dict.fromkeys(r.shape for r in results):
        ours = [r for r in results if r.shape == shape and r.tree == "ours"]
        ref = [r for r in results if r.shape == shape and r.tree == "reference"]
        if not (ours and ref):
            continue
        print(
            f"{'ours/reference ' + shape:28}{ratio(ours, ref, 'daemon_ms'):>14}"
            f"{ratio(ours, ref, 'server_ms'):>14}{ratio(ours, ref, 'wal_kb'):>9}"
            f"{ratio(ours, ref, 'rss_mb'):>9}"
            f"   (means over {len(ours)} alternating run(s) each)"
        )
    print(
        "CPU: utime+stime from /proc (10 ms ticks), over windows of "
        + ", ".join(f"{r.shape} {r.seconds:.0f} s / {r.backends} backends" for r in results)
    )


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="ruvectord-footprint-"))
    server = EmbeddedPostgres(
        root / "pgdata", port=5471, settings={"max_locks_per_transaction": "512"}
    )
    try:
        await anyio.to_thread.run_sync(server.start)
        results = []
        ours = args.source or ROOT
        for shape in args.shapes.split(","):
            n, p = (int(x) for x in shape.lower().split("x"))
            for _ in range(args.rounds if args.reference else 1):
                # alternating, so that a busy machine weighs on both alike
                if args.reference:
                    results.append(
                        await run_shape(server, root, n, p, args, args.reference, "reference")
                    )
                results.append(await run_shape(server, root, n, p, args, ours))
        report(results, args)
    finally:
        await anyio.to_thread.run_sync(server.destroy)
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="10x64,1x1200", help="collections x partitions, ...")
    ap.add_argument("--interval", type=float, default=1.0, help="sample interval, seconds")
    ap.add_argument("--duration", type=float, default=180.0, help="measured window per shape")
    ap.add_argument("--quick", action="store_true", help="30 s windows")
    ap.add_argument("--load", action="store_true", help="a light steady load during the window")
    ap.add_argument("--py-spy", metavar="PREFIX", help="record the daemon with py-spy (raw)")
    ap.add_argument(
        "--source", type=Path, help="run the daemon from this source tree (a before/after)"
    )
    ap.add_argument(
        "--reference",
        type=Path,
        help="also run the daemon from this tree (an older checkout), alternating with ours, "
        "and print ours/reference",
    )
    ap.add_argument(
        "--rounds", type=int, default=1, help="alternating rounds with --reference (default 1)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the logs and configs")
    a = ap.parse_args()
    if a.quick:
        a.duration = 30.0
    anyio.run(main, a)
