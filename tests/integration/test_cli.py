"""The CLI a DBA reaches for, run as a real process against a real server: status' exit codes
(and --nagios), --json, --dsn alone, a database never migrated, check-config --online, a
closed pipe, and waiting for the acting daemon with a progress line."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import anyio
import asyncpg
import pytest
import yaml

from ruvectord.clock import ManualClock
from ruvectord.postgres.leader import ACTOR_LOCK_KEY
from ruvectord.postgres.migrations import available
from ruvectord.postgres.pool import Database
from ruvectord.postgres.store import Store
from ruvectord.scenarios.collection import CollectionSpec
from tests.chaos.test_chaos import daemon
from tests.conftest import PgServer
from tests.helpers import (
    cli,
    cli_env,
    collection,
    connect,
    free_port,
    harness,
    hot_sample,
    make_config,
)
from tests.roles import parties

ROOT = Path(__file__).parents[2]
SPEC = CollectionSpec(partitions=8, rows_per_partition=20)


async def _config(tmp: Path, dsn: str, *collections: str) -> Path:
    path = tmp / f"{'-'.join(collections) or 'ruvectord'}.yaml"
    data = {
        "database": {"dsn": dsn, "connect_retries": 0},
        "daemon": {"state_directory": str(tmp / "state")},
        "logging": {"format": "json"},
        "collections": [
            {"name": name, "table": "public.items", "vector_column": "embedding"}
            for name in collections or ("items",)
        ],
    }
    await anyio.Path(path).write_text(yaml.safe_dump(data))
    return path


@asynccontextmanager
async def actor_lock(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """Hold the actor lock the way an acting daemon does (a session advisory lock)."""
    conn = await connect(dsn)
    try:
        await conn.execute("SET application_name = 'ruvectord-actor'")
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", ACTOR_LOCK_KEY)
        yield conn
    finally:
        await conn.close()


# --------------------------------------------------------------------------- status


@pytest.mark.usefixtures("no_default_config")
async def test_status_exit_codes_follow_health(
    db: Database, dsn: str, state_dir: Path, tmp_path: Path
) -> None:
    config = make_config(dsn, state_dir, SPEC, integrity={"sample_interval_seconds": 60})
    cfg = await _config(tmp_path, dsn)
    async with collection(dsn, SPEC) as conn, actor_lock(dsn) as lock:
        h = await harness(db, config, ManualClock(datetime.now(UTC)))
        monitor = h.monitor("items")
        await monitor.cycle()
        lock_pid = await lock.fetchval("SELECT pg_backend_pid()")

        healthy = await cli("status", "-c", str(cfg))
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        lines = healthy.stdout.splitlines()
        assert re.match(r"COLLECTION +STATE +LAMBDA +LAST SAMPLE +THROTTLES +HEALTH$", lines[0])
        assert re.match(
            r"items +normal +1\.000 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC "
            r"\((just now|\d s ago)\) +- +ok$",
            lines[1],
        ), lines[1]
        assert f"actor lock:  held by pid {lock_pid}, ruvectord-actor" in healthy.stdout
        assert healthy.stdout.endswith("health:      ok\n")
        nagios = await cli("status", "-c", str(cfg), "--nagios")
        assert nagios.returncode == 0
        assert nagios.stdout == (
            f"RUVECTOR OK - 1 collection normal, daemon pid {lock_pid} acting | "
            "'items_lambda_cut'=1.0000;0.8:;0.3:;0;1 'items_state'=0;1;2;0;2\n"
        )

        for _ in range(3):
            await hot_sample(conn, h, monitor, SPEC, shard=2, background=0)
        stress = await cli("status", "-c", str(cfg))
        assert stress.returncode == 3, stress.stdout
        assert "health:      DEGRADED (exit 3): items in stress" in stress.stdout
        nagios = await cli("status", "--nagios", "-c", str(cfg))
        assert nagios.returncode == 1
        assert nagios.stdout.startswith("RUVECTOR WARNING - items: integrity stress | ")
        assert "'items_state'=1;1;2;0;2" in nagios.stdout

        # as JSON: one document, the same verdict, times with their offset
        doc = json.loads((await cli("status", "-c", str(cfg), "--json")).stdout)
        assert (doc["health"], doc["exit_code"]) == ("degraded", 3)
        (row,) = doc["collections"]
        assert (row["collection"], row["state"], row["health"]) == ("items", "stress", "degraded")
        assert datetime.fromisoformat(row["last_sample_at"]).utcoffset() is not None
        assert datetime.fromisoformat(doc["checked_at"]).utcoffset() is not None
        assert doc["actor"]["pid"] == lock_pid

        await db.execute("UPDATE ruvector.integrity_state SET state = 'critical'")
        critical = await cli("status", "-c", str(cfg))
        assert critical.returncode == 4 and "CRITICAL (exit 4): items critical" in critical.stdout
        nagios = await cli("status", "--nagios", "-c", str(cfg))
        assert nagios.returncode == 2 and nagios.stdout.startswith("RUVECTOR CRITICAL - ")
        await db.execute("UPDATE ruvector.integrity_state SET state = 'normal'")

        await db.execute(
            "UPDATE ruvector.collections SET status = 'error', "
            "status_detail = 'table public.items does not exist'"
        )
        error = await cli("status", "-c", str(cfg))
        assert error.returncode == 4, error.stdout
        assert "items: error: table public.items does not exist" in error.stdout
        await db.execute("UPDATE ruvector.collections SET status = 'ok', status_detail = NULL")

        await db.execute(
            "UPDATE ruvector.integrity_state SET last_sample_at = now() - interval '1 hour'"
        )
        stale = await cli("status", "-c", str(cfg))
        assert stale.returncode == 4, stale.stdout
        assert re.search(r"items: stale: no sample since .* UTC \(60 min ago\)", stale.stdout)
        await db.execute("UPDATE ruvector.integrity_state SET last_sample_at = now()")

        # a configured collection no daemon has registered yet
        ghost = await _config(tmp_path, dsn, "items", "ghost")
        unknown = await cli("status", "-c", str(ghost))
        assert unknown.returncode == 4 and "ghost: unknown to the database" in unknown.stdout
        # one named collection the database does not know: bad input, with the known ones
        nope = await cli("status", "nope", "-c", str(cfg))
        assert nope.returncode == 2
        assert nope.stderr == ("error: unknown collection 'nope' (configured collections: items)\n")
        nagios = await cli("status", "nope", "--nagios", "-c", str(cfg))
        assert nagios.returncode == 3
        assert nagios.stdout.startswith("RUVECTOR UNKNOWN - unknown collection 'nope'")

        # --dsn alone, no config file: the collections the database knows
        alone = await cli("status", "--dsn", dsn)
        assert alone.returncode == 0, alone.stderr
        assert re.search(r"^items +normal", alone.stdout, re.M)

    # the actor lock is free now: healthy collections, but nothing can heal
    orphan = await cli("status", "-c", str(cfg))
    assert orphan.returncode == 3, orphan.stdout
    assert "actor lock:  no daemon holds it: nothing heals" in orphan.stdout
    assert "DEGRADED (exit 3): no acting daemon" in orphan.stdout


async def test_status_of_a_dead_database_is_a_runtime_failure_or_nagios_unknown(
    tmp_path: Path,
) -> None:
    dead = "postgresql://u:hunter2secret@127.0.0.1:1/db"
    cfg = await _config(tmp_path, dead)
    done = await cli("status", "-c", str(cfg))
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("error: cannot reach PostgreSQL at 127.0.0.1:1")
    nagios = await cli("status", "--nagios", "-c", str(cfg))
    assert nagios.returncode == 3
    assert nagios.stdout.startswith("RUVECTOR UNKNOWN - cannot reach PostgreSQL at 127.0.0.1:1/db")
    assert len(nagios.stdout.splitlines()) == 1
    assert "hunter2secret" not in done.stdout + done.stderr + nagios.stdout + nagios.stderr


# --------------------------------------------------------------------------- set-up problems


@pytest.mark.usefixtures("no_default_config")
async def test_a_database_never_migrated_says_run_migrate(empty_dsn: str) -> None:
    for args in (("status",), ("heal", "list"), ("throttle", "list"), ("pause",)):
        done = await cli(*args, "--dsn", empty_dsn)
        assert done.returncode == 1, (args, done)
        assert re.fullmatch(
            r"error: the database \S+ has no ruvector schema: run `ruvectord migrate "
            r"--admin-dsn postgresql://ADMIN@HOST/DB` as a superuser or a member of "
            r"ruvector_owner \(see deploy/sql/roles.sql\)\n",
            done.stderr,
        ), (args, done.stderr)


@pytest.mark.usefixtures("no_default_config")
async def test_an_older_schema_says_which_version_and_what_to_run(empty_dsn: str) -> None:
    migrations = await anyio.to_thread.run_sync(available)
    conn = await connect(empty_dsn)
    try:  # what an older ruvectord left: the first three migrations
        await conn.execute(
            "CREATE SCHEMA ruvector; CREATE TABLE ruvector.schema_migrations (version integer "
            "PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz "
            "NOT NULL DEFAULT now())"
        )
        for mig in migrations[:3]:
            await conn.execute(mig.sql)
            await conn.execute(
                "INSERT INTO ruvector.schema_migrations VALUES ($1, $2, $3)",
                mig.version,
                mig.name,
                mig.checksum,
            )
    finally:
        await conn.close()
    done = await cli("pause", "--dsn", empty_dsn)  # ruvector_healing_enable came with 0004
    assert done.returncode == 1
    assert (
        f"has ruvector schema version 3, this ruvectord needs {len(migrations)}: run "
        "`ruvectord migrate --admin-dsn" in done.stderr
    ), done.stderr


async def test_check_config_online_checks_the_collections_tables(dsn: str, tmp_path: Path) -> None:
    async with collection(dsn, CollectionSpec(partitions=2, rows_per_partition=2, index=False)):
        path = tmp_path / "c.yaml"
        await anyio.Path(path).write_text(
            yaml.safe_dump(
                {
                    "database": {"dsn": dsn, "connect_retries": 0},
                    "daemon": {"state_directory": str(tmp_path)},
                    "collections": [
                        {"name": "items", "table": "public.items", "vector_column": "embedding"},
                        {"name": "gone", "table": "public.gone", "vector_column": "embedding"},
                        {"name": "col", "table": "public.items", "vector_column": "vec"},
                    ],
                }
            )
        )
        offline = await cli("check-config", "-c", str(path))
        assert (offline.returncode, offline.stdout) == (0, "ok\n")
        online = await cli("check-config", "--online", "-c", str(path))
        assert online.returncode == 2, online
        problems = online.stderr.splitlines()
        assert len(problems) == 2
        assert problems[0].startswith("collections[1] (gone): table public.gone does not exist in ")
        assert problems[1].startswith(
            "collections[2] (col): column 'vec' does not exist in public.items in "
        )
        await anyio.Path(path).write_text(
            yaml.safe_dump(
                {
                    "database": {"dsn": dsn},
                    "daemon": {"state_directory": str(tmp_path)},
                    "collections": [
                        {"name": "items", "table": "public.items", "vector_column": "embedding"}
                    ],
                }
            )
        )
        good = await cli("check-config", "--online", "-c", str(path))
        assert (good.returncode, good.stdout) == (0, "ok\n"), good.stderr


# --------------------------------------------------------------------------- --dsn alone, JSON


async def _pending_actions(db: Database, dsn: str, state_dir: Path, n: int) -> None:
    ids = await Store(db).sync_collections(make_config(dsn, state_dir, SPEC))
    await db.execute(
        "INSERT INTO ruvector.healing_actions (collection_id, problem_class, problem_details, "
        "strategy_name, status, reversible, integrity_state, initial_lambda, actor, created_at, "
        "updated_at, expires_at) SELECT $1, 'HotspotCongestion', '{}', 'scale_replicas', "
        "CASE WHEN g = $2 THEN 'pending_approval' ELSE 'expired' END, true, 'stress', 0.4, "
        "'n', now(), now(), now() + interval '1 hour' FROM generate_series(1, $2) AS g",
        ids["items"],
        n,
    )


@pytest.mark.usefixtures("no_default_config")
async def test_read_commands_work_with_dsn_alone_and_print_json(
    db: Database, dsn: str, state_dir: Path
) -> None:
    await _pending_actions(db, dsn, state_dir, 3)
    for args, key in (
        (("heal", "list"), "actions"),
        (("throttle", "list"), "throttles"),
        (("effectiveness",), "strategies"),
        (("status",), "collections"),
    ):
        human = await cli(*args, "--dsn", dsn)
        assert human.returncode in (0, 3, 4), (args, human)
        as_json = await cli(*args, "--dsn", dsn, "--json")
        doc = json.loads(as_json.stdout)
        assert isinstance(doc, dict) and key in doc, (args, doc)
    actions = json.loads((await cli("heal", "list", "--dsn", dsn, "--json")).stdout)["actions"]
    assert [a["id"] for a in actions] == [3, 2, 1]
    assert datetime.fromisoformat(actions[0]["created_at"]).utcoffset() is not None
    # a config file named on the command line must exist, --dsn or not
    missing = await cli("heal", "list", "--dsn", dsn, "-c", "/nonexistent/ruvectord.yaml")
    assert missing.returncode == 2
    assert missing.stderr == "/nonexistent/ruvectord.yaml: config file not found\n"


async def test_no_traceback_when_stdout_closes_early(
    db: Database, dsn: str, state_dir: Path
) -> None:
    await _pending_actions(db, dsn, state_dir, 3000)  # ~300 kB of table: more than a pipe holds
    cmd = [sys.executable, "-m", "ruvectord.cli", "heal", "list", "--limit", "3000", "--dsn", dsn]

    def head_one() -> tuple[int, bytes, bytes]:
        # ruvectord heal list | head -1
        first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
        assert first.stdout is not None and first.stderr is not None
        head = subprocess.Popen(["head", "-1"], stdin=first.stdout, stdout=subprocess.PIPE)
        first.stdout.close()  # only head reads it now
        out, _ = head.communicate(timeout=120)
        err = first.stderr.read()
        return first.wait(timeout=120), out, err

    code, out, err = await anyio.to_thread.run_sync(head_one)
    assert out.startswith(b"  ID  CREATED"), out
    assert err == b"", err.decode()
    assert code == 141  # 128 + SIGPIPE, as coreutils report it

    def closed_at_once() -> tuple[int, bytes]:
        r, w = os.pipe()
        os.close(r)  # nobody will ever read: the first write fails
        try:
            proc = subprocess.run(cmd, stdout=w, stderr=subprocess.PIPE, env=cli_env(), timeout=120)
        finally:
            os.close(w)
        return proc.returncode, proc.stderr

    code, err = await anyio.to_thread.run_sync(closed_at_once)
    assert (code, err) == (141, b""), err.decode()


# --------------------------------------------------------------------------- waiting


def _on_a_terminal(argv: list[str], timeout: float = 60) -> tuple[int, str]:
    """The CLI with stdout and stderr on a pseudo-terminal, as in an interactive shell."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ruvectord.cli", *argv],
        cwd=ROOT,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=timeout), out.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.usefixtures("no_default_config")
async def test_waiting_for_the_acting_daemon_shows_progress_and_times_out(
    db: Database, dsn: str, state_dir: Path
) -> None:
    await _pending_actions(db, dsn, state_dir, 1)
    lifted = "throttles on items lifted now; the acting daemon journals it and will not renew them"
    # nobody acts: said at once, nothing waited for
    started = time.monotonic()
    alone = await cli("throttle", "lift", "items", "--dsn", dsn)
    assert alone.returncode == 0 and time.monotonic() - started < 10
    assert alone.stdout == f"{lifted} (request 1)\n"
    assert alone.stderr.startswith("note: no daemon holds the actor lock")
    # a daemon holds the lock but does not answer (hung): a plain progress line on a pipe,
    # then a clear timeout, exit 1, the request still queued
    async with actor_lock(dsn) as lock:
        pid = await lock.fetchval("SELECT pg_backend_pid()")
        hung = await cli("throttle", "lift", "items", "--dsn", dsn, "--timeout", "2.5")
        assert hung.returncode == 1, hung
        assert hung.stdout == f"{lifted} (request 2)\n"
        lines = hung.stderr.splitlines()
        assert lines[0] == (
            f"waiting for the acting daemon (pid {pid}) to carry out request 2... 1 s"
        )
        assert lines[-1].startswith(f"error: the acting daemon (held by pid {pid}, ruvectord-actor")
        assert lines[-1].endswith(
            "has not carried it out within 2.5 s; it stays queued (ruvector.healing_requests "
            "id 2): check the daemon's log"
        )
        as_json = await cli("heal", "approve", "1", "--dsn", dsn, "--timeout", "1.5", "--json")
        doc = json.loads(as_json.stdout)
        assert doc["daemon"]["wait"] == "timeout" and doc["request"] == 3
        assert doc["action_id"] == 1 and as_json.returncode == 1
        # on a terminal: a spinner redrawn in place, erased at the end
        code, screen = await anyio.to_thread.run_sync(
            _on_a_terminal, ["throttle", "lift", "items", "--dsn", dsn, "--timeout", "2"]
        )
        assert code == 1
        assert f"\r\x1b[K- waiting for the acting daemon (pid {pid})" in screen
        assert "\r\x1b[K\\ waiting" in screen or "\r\x1b[K| waiting" in screen
        # --no-wait: the request only
        quick = await cli("throttle", "lift", "items", "--dsn", dsn, "--no-wait")
        assert quick.returncode == 0 and quick.stderr == "", quick
        assert (
            await db.fetchval(
                "SELECT count(*) FROM ruvector.healing_requests WHERE processed_at IS NULL"
            )
            == 5
        )
    # an operator-facing row in the queue the daemon will pick up, in order
    kinds = [r["kind"] for r in await db.fetch("SELECT kind FROM ruvector.healing_requests")]
    assert kinds == ["lift", "lift", "approve", "lift", "lift"]


# --------------------------------------------------------------------------- a real daemon


async def test_with_a_real_daemon_status_is_healthy_and_requests_are_carried_out(
    dsn: str, tmp_path: Path
) -> None:
    port = free_port()
    cfg = tmp_path / "daemon.yaml"
    await anyio.Path(cfg).write_text(
        yaml.safe_dump(
            {
                "database": {"dsn": dsn},
                "daemon": {"state_directory": str(tmp_path / "state"), "node_name": "node-a"},
                "metrics": {"listen_address": f"127.0.0.1:{port}"},
                "logging": {"format": "json"},
                "integrity": {"sample_interval_seconds": 0.5},
                "collections": [
                    {"name": "items", "table": "public.items", "vector_column": "embedding"}
                ],
            }
        )
    )
    async with collection(dsn, SPEC), daemon(cfg, dsn, tmp_path / "daemon.log"):
        with anyio.fail_after(60):
            while (status := await cli("status", "-c", str(cfg))).returncode != 0:  # noqa: ASYNC110
                await anyio.sleep(0.5)
        assert re.search(r"actor lock: +held by pid \d+, ruvectord-actor", status.stdout)
        assert re.search(r"^items +normal +1\.000 ", status.stdout, re.M), status.stdout

        # the port the daemon holds is fine: it is the daemon itself
        run = json.loads((await cli("doctor", "-c", str(cfg), "--json")).stdout)
        port_check = next(c for c in run["checks"] if c["check"] == "metrics port")
        assert port_check["result"] == "ok", port_check
        assert port_check["detail"].startswith(
            f"127.0.0.1:{port} is in use by ruvectord (node node-a"
        )

        paused = await cli("pause", "--reason", "disk replacement", "-c", str(cfg))
        assert paused.returncode == 0, paused
        lines = paused.stdout.splitlines()
        assert lines[0].startswith("healing paused for every daemon on ")
        assert lines[1] == (
            "carried out by node-a: settings healing.enabled=false; lifted nothing"
        ), paused.stdout
        shown = await cli("status", "-c", str(cfg))
        assert re.search(
            r"^healing: +PAUSED by \S+ at \S+ \S+ UTC: disk replacement \(ruvectord resume\)$",
            shown.stdout,
            re.M,
        ), shown.stdout
        assert json.loads((await cli("status", "-c", str(cfg), "--json")).stdout)["healing"][
            "paused"
        ]
        resumed = await cli("resume", "-c", str(cfg), "--json")
        doc = json.loads(resumed.stdout)
        assert doc["daemon"]["wait"] == "done" and doc["daemon"]["processed_by"] == "node-a"
        assert doc["daemon"]["result"] == {"settings": {"healing.enabled": True}}


@pytest.mark.usefixtures("no_default_config")
async def test_each_role_gets_what_roles_sql_gives_it(pg_server: PgServer) -> None:
    """A reader (a dashboard, a Nagios check) may read, an operator may change, an application
    may neither; each refusal is one line saying which membership it needs, exit 2."""
    async with parties(pg_server) as p:
        reader = await cli("status", "--nagios", "--dsn", p.as_(p.reader))
        # no daemon has run here: nothing registered yet, which is worth a warning
        assert reader.returncode == 1, reader
        assert reader.stdout.startswith("RUVECTOR WARNING - no collections: none configured")
        assert (await cli("heal", "list", "--dsn", p.as_(p.reader))).returncode == 0
        refused = await cli("pause", "--dsn", p.as_(p.reader))
        assert refused.returncode == 2
        assert refused.stderr.startswith(
            "error: permission denied for function ruvector_healing_enable; this needs a role "
            "with the right membership (ruvector_operator for changes"
        )
        assert len(refused.stderr.splitlines()) == 1
        # an operator may: the function runs, and says what is missing (no daemon yet)
        operator = await cli("pause", "--reason", "maintenance", "--dsn", p.as_(p.operator))
        assert operator.returncode == 2, operator
        assert "no ruvectord daemon has published its settings yet" in operator.stderr
        app = await cli("status", "--dsn", p.as_(p.app))
        assert app.returncode == 2 and "permission denied for schema ruvector" in app.stderr
