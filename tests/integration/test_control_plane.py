"""The ruvector_healing_* functions on a real server, as each party: who may call what, how a
bad argument is refused (with a SQLSTATE and a HINT, changing nothing), and -- with a real
daemon running as the least-privilege role from deploy/sql/roles.sql -- that every request is
carried out by the acting daemon, with its safeguards, and signed with who asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
import yaml

from ruvectord import dynamic
from ruvectord.healing.strategies import builtin_registry
from ruvectord.postgres.control import ControlStore
from ruvectord.postgres.pool import Database
from ruvectord.scenarios.collection import CollectionSpec
from tests.chaos.test_chaos import _until, daemon, hot_writers
from tests.conftest import PgServer, options
from tests.helpers import cli
from tests.roles import Parties, parties

SPEC = CollectionSpec(partitions=8, rows_per_partition=20, index=False)

READERS = {
    "ruvector_healing_status": "SELECT * FROM ruvector_healing_status()",
    "ruvector_healing_history": "SELECT * FROM ruvector_healing_history()",
    "ruvector_healing_effectiveness": "SELECT * FROM ruvector_healing_effectiveness()",
    "ruvector_healing_strategies": "SELECT * FROM ruvector_healing_strategies()",
    "ruvector_healing_throttles": "SELECT * FROM ruvector_healing_throttles()",
    "ruvector_integrity_status": "SELECT ruvector_integrity_status('items')",
}
MUTATORS = {
    "ruvector_healing_configure": (
        "SELECT ruvector_healing_configure('{\"min_healing_interval_seconds\": 60}')"
    ),
    "ruvector_healing_enable": "SELECT ruvector_healing_enable(true)",
    "ruvector_healing_trigger": "SELECT ruvector_healing_trigger('items')",
    "ruvector_healing_execute": (
        "SELECT ruvector_healing_execute('items', 'throttle_ingestion', '{\"dry_run\": true}')"
    ),
    "ruvector_healing_approve": "SELECT ruvector_healing_approve(1)",
    "ruvector_healing_reject": "SELECT ruvector_healing_reject(1)",
    "ruvector_healing_abort": "SELECT ruvector_healing_abort(1)",
    "ruvector_healing_rollback": "SELECT ruvector_healing_rollback('items')",
    "ruvector_healing_throttle_lift": "SELECT ruvector_healing_throttle_lift('items')",
    "ruvector_healing_wait": "SELECT ruvector_healing_wait(1, 0)",
}


async def _publish(p: Parties) -> None:
    """What an acting daemon publishes (its settings' schema, its strategies)."""
    db = await Database.connect(options(p.dsn))
    try:
        await db.execute(
            "INSERT INTO ruvector.collections (name, table_schema, table_name, vector_column) "
            "VALUES ('items', 'public', 'items', 'embedding')"
        )
        await ControlStore(db, "test").publish(
            dynamic.schema(), builtin_registry().strategies, {}, {}
        )
    finally:
        await db.close()


async def _outcome(conn: asyncpg.Connection, sql: str) -> str:
    """'ok', 'denied', or the SQLSTATE of the domain error the call ran into."""
    try:
        async with conn.transaction():
            await conn.fetch(sql)
            raise _Rollback
    except _Rollback:
        return "ok"
    except asyncpg.InsufficientPrivilegeError:
        return "denied"
    except asyncpg.PostgresError as exc:
        return str(exc.sqlstate)


class _Rollback(Exception):
    pass


async def test_who_may_call_what(pg_server: PgServer) -> None:
    async with parties(pg_server, SPEC) as p:
        await _publish(p)
        seen: dict[str, dict[str, str]] = {}
        for role in (p.app, p.reader, p.operator, p.daemon):
            conn = await asyncpg.connect(p.as_(role))
            try:
                seen[role] = {
                    name: await _outcome(conn, sql) for name, sql in {**READERS, **MUTATORS}.items()
                }
                seen[role]["gate"] = await _outcome(
                    conn, "SELECT ruvector_integrity_gate('items', 'insert')"
                )
            finally:
                await conn.close()
        for role in (p.app, p.reader, p.operator, p.daemon):
            assert seen[role]["gate"] == "ok", role  # applications ask the gate
        for name in READERS:
            assert seen[p.app][name] == "denied", name
            for role in (p.reader, p.operator, p.daemon):
                assert seen[role][name] == "ok", (role, name, seen[role][name])
        for name in MUTATORS:
            for role in (p.app, p.reader, p.daemon):
                assert seen[role][name] == "denied", (role, name)
            # an operator gets through; what is left is the function's own verdict
            assert seen[p.operator][name] != "denied", name
        assert seen[p.operator]["ruvector_healing_configure"] == "ok"
        assert seen[p.operator]["ruvector_healing_trigger"] == "55000"  # no daemon is acting
        assert seen[p.operator]["ruvector_healing_approve"] == "42704"  # no action 1


BAD = [
    (
        "SELECT ruvector_healing_trigger('nope')",
        "42704",
        "unknown collection 'nope'",
        "configured collections: items",
    ),
    (
        "SELECT ruvector_healing_execute('items', 'nope', '{}')",
        "42704",
        "unknown strategy 'nope'",
        "strategies: ",
    ),
    (
        "SELECT ruvector_healing_execute('items', 'throttle_ingestion', '[1]')",
        "22023",
        "params must be a JSON object",
        None,
    ),
    (
        "SELECT ruvector_healing_execute('items', 'throttle_ingestion', '{\"max_moves\": 5}')",
        "22023",
        "throttle_ingestion: unknown parameter 'max_moves'",
        "parameters: dry_run",
    ),
    (
        "SELECT ruvector_healing_configure('[1]')",
        "22023",
        "settings must be a JSON object",
        "a key without a section is a healing setting",
    ),
    (
        "SELECT ruvector_healing_configure('{\"max_attempts_per_window\": -1}')",
        "22023",
        "healing.max_attempts_per_window: -1 is not >= 1",
        "nothing was changed",
    ),
    (
        "SELECT ruvector_healing_configure('{\"max_atempts_per_window\": 3}')",
        "22023",
        "healing.max_atempts_per_window: unknown key (did you mean "
        "'healing.max_attempts_per_window'?)",
        None,
    ),
    (
        'SELECT ruvector_healing_configure(\'{"database": {"dsn": "postgresql://x"}}\')',
        "22023",
        "database.dsn: is a static setting",
        None,
    ),
    (
        'SELECT ruvector_healing_configure(\'{"integrity": {"threshold_low": 0.9}}\')',
        "22023",
        "threshold_low (0.9) must be below threshold_high (0.8)",
        None,
    ),
    (
        'SELECT ruvector_healing_configure(\'{"enabled": "yes"}\')',
        "22023",
        "healing.enabled: 'yes' is not true or false",
        None,
    ),
    (
        "SELECT ruvector_healing_configure('{bad')",
        "22P02",
        "invalid input syntax for type json",
        None,
    ),
    (
        "SELECT ruvector_healing_abort(999)",
        "42704",
        "there is no healing action 999",
        "ruvectord heal list",
    ),
    (
        "SELECT ruvector_healing_rollback('items')",
        "55000",
        "no reversible action is in force on collection 'items'",
        "ruvectord heal list",
    ),
    (
        "SELECT * FROM ruvector_healing_history(limit_ := 0)",
        "22023",
        "limit_ must be between 1 and 10000",
        None,
    ),
    (
        "SELECT * FROM ruvector_healing_history(strategy := 'nope')",
        "42704",
        "unknown strategy 'nope'",
        None,
    ),
    ("SELECT ruvector_healing_wait(999, 0)", "42704", "there is no request 999", None),
]


async def test_bad_arguments_are_refused_clearly_and_change_nothing(pg_server: PgServer) -> None:
    async with parties(pg_server, SPEC) as p:
        await _publish(p)
        conn = await asyncpg.connect(p.as_(p.operator))
        try:

            async def state() -> list[Any]:
                return [
                    await conn.fetchval("SELECT count(*) FROM ruvector.healing_requests"),
                    await conn.fetchval(
                        "SELECT json_agg(h ORDER BY key) FROM ruvector.healing_config h"
                    ),
                ]

            before = await state()
            for sql, code, message, hint in BAD:
                with pytest.raises(asyncpg.PostgresError) as exc:
                    await conn.fetch(sql)
                assert exc.value.sqlstate == code, (sql, exc.value)
                assert message in str(exc.value), (sql, str(exc.value))
                if hint is not None:
                    assert hint in (exc.value.hint or ""), (sql, exc.value.hint)
            assert await state() == before
        finally:
            await conn.close()


# --------------------------------------------------------------------------- a real daemon


async def _daemon_config(tmp: Path, p: Parties) -> Path:
    data = {
        "database": {"dsn": p.as_(p.daemon)},
        "daemon": {
            "state_directory": str(tmp / "state"),
            "node_name": "node-a",
            "shutdown_timeout_seconds": 5,
        },
        "metrics": {"enabled": False},
        "logging": {"format": "json"},
        "integrity": {
            "sample_interval_seconds": 0.25,
            "degrade_samples": 1,
            "critical_samples": 1000,
            "cooldown_seconds": 0,
            "recovery_hold_seconds": 3600,
            "budgets": {"max_queue": 8},
        },
        "healing": {
            "min_healing_interval_seconds": 3600,
            "max_attempts_per_window": 100000,
            "ineffective_after": 0,
            "settle_seconds": 1.5,
            "throttle": {"retry_after_seconds": 0.2},
        },
        "collections": [{"name": "items", "table": "public.items", "vector_column": "embedding"}],
    }
    path = tmp / "node-a.yaml"
    await anyio.Path(path).write_text(yaml.safe_dump(data))
    return path


async def _ask(conn: asyncpg.Connection, sql: str, *args: Any) -> dict[str, Any]:
    """Make a request, then wait for the acting daemon to carry it out (a second call)."""
    request = await conn.fetchval(sql, *args)
    outcome = json.loads(await conn.fetchval("SELECT ruvector_healing_wait($1, 60)", request))
    assert outcome["status"] == "done", outcome
    result: dict[str, Any] = outcome["result"]
    return result


@pytest.mark.slow
async def test_requests_are_carried_out_by_the_acting_daemon(
    pg_server: PgServer, tmp_path: Path
) -> None:
    async with parties(pg_server, SPEC) as p:
        cfg = await _daemon_config(tmp_path, p)
        op = await asyncpg.connect(p.as_(p.operator))
        reader = await asyncpg.connect(p.as_(p.reader))
        admin = await asyncpg.connect(p.dsn)
        try:
            async with daemon(cfg, p.dsn, tmp_path / "d.log"):
                await _until(
                    admin,
                    "SELECT ruvector.actor_alive() AND EXISTS (SELECT 1 FROM ruvector.strategies)",
                    60,
                )
                # trigger: a sample and a decision, now
                said = await _ask(op, "SELECT ruvector_healing_trigger('items')")
                assert said["decision"].startswith("items: normal"), said
                status = await reader.fetchrow("SELECT * FROM ruvector_healing_status()")
                assert status is not None
                assert status["collection"] == "items" and status["acting_daemon"]

                # the design's configure example, as written
                said = await _ask(
                    op,
                    """SELECT ruvector_healing_configure('{
                    "enabled": true, "min_healing_interval_seconds": 300,
                    "max_attempts_per_hour": 3, "max_auto_heal_impact": 0.5,
                    "require_approval_strategies": ["throttle_ingestion"],
                    "learning_enabled": true}'::jsonb)""",
                )
                assert said["settings"]["healing.max_attempts_per_window"] == 3
                # ... applied by the daemon on its next cycle: now a hotspot asks for approval
                async with hot_writers(p.dsn, vector=False):
                    pending = await _until(
                        admin,
                        "SELECT id FROM ruvector.healing_actions WHERE status = 'pending_approval'",
                        60,
                    )
                    said = await _ask(op, "SELECT ruvector_healing_abort($1)", pending)
                    assert said["aborted"] == "before it ran"
                    assert (
                        await admin.fetchval(
                            "SELECT status FROM ruvector.healing_actions WHERE id = $1", pending
                        )
                        == "aborted"
                    )

                    # a manual execute: past the cooldown, approved by the operator's request
                    said = await _ask(
                        op,
                        "SELECT ruvector_healing_execute('items', 'throttle_ingestion', $1)",
                        json.dumps({"dry_run": True}),
                    )
                    assert said["decision"].startswith("dry run of throttle_ingestion"), said
                    said = await _ask(
                        op, "SELECT ruvector_healing_execute('items', 'throttle_ingestion')"
                    )
                    assert "throttle_ingestion (action" in said["decision"], said
                    assert "cooldown and attempt window skipped (manual)" in said["decision"]
                    assert f"approved by {p.operator}'s request" in said["decision"]
                    done = await admin.fetchrow(
                        "SELECT id, status FROM ruvector.healing_actions ORDER BY id DESC LIMIT 1"
                    )
                    assert done is not None
                    if done["status"] == "succeeded":
                        # the last reversible action, undone on request
                        said = await _ask(op, "SELECT ruvector_healing_rollback('items')")
                        assert said["decision"] == (
                            f"throttle_ingestion (action {done['id']}) rolled back"
                        )
                        assert (
                            await admin.fetchval(
                                "SELECT count(*) FROM ruvector.throttles WHERE expires_at > now()"
                            )
                            == 0
                        )

                    # healing off in the database: every daemon obeys, on its next cycle
                    await _ask(op, "SELECT ruvector_healing_enable(false, 'sale tonight')")
                    decision = await _until(
                        admin,
                        "SELECT decision FROM ruvector.integrity_state "
                        "WHERE decision LIKE '%healing is paused by%'",
                        20,
                    )
                    assert f"paused by {p.operator}" in decision and "sale tonight" in decision
                    await _ask(op, "SELECT ruvector_healing_enable(true)")

                history = await reader.fetch("SELECT * FROM ruvector_healing_history()")
                assert {r["status"] for r in history} >= {"aborted"}
                assert (
                    await reader.fetchval(
                        "SELECT count(*) FROM ruvector_healing_effectiveness() "
                        "WHERE strategy = 'overall'"
                    )
                    == 1
                )
                strategies = await reader.fetch("SELECT * FROM ruvector_healing_strategies()")
                approval = {r["name"]: r["requires_approval"] for r in strategies}
                assert approval["throttle_ingestion"] is True  # as configured from SQL
            # every request signed, with the database role that asked
            events = await admin.fetch(
                "SELECT metadata FROM ruvector.integrity_events "
                "WHERE event_type = 'manual_override' ORDER BY id"
            )
            metadata = [json.loads(e["metadata"]) for e in events]
            asked = [(m["kind"], m["requested_by"]) for m in metadata]
            assert asked[:4] == [
                ("trigger", p.operator),
                ("configure", p.operator),
                ("abort", p.operator),
                ("execute", p.operator),
            ]
            assert all(who == p.operator for _, who in asked)
        finally:
            for conn in (op, reader, admin):
                await conn.close()


@pytest.mark.slow
async def test_the_cli_speaks_for_the_same_functions(pg_server: PgServer, tmp_path: Path) -> None:
    async with parties(pg_server, SPEC) as p:
        cfg = await _daemon_config(tmp_path, p)
        base = ["-c", str(cfg), "--dsn", p.as_(p.operator)]
        admin = await asyncpg.connect(p.dsn)
        try:
            async with daemon(cfg, p.dsn, tmp_path / "d.log"):
                await _until(
                    admin,
                    "SELECT ruvector.actor_alive() AND EXISTS (SELECT 1 FROM ruvector.strategies)",
                    60,
                )
                trig = await cli("heal", "trigger", "items", *base, "--json")
                assert trig.returncode == 0, trig.stderr
                assert json.loads(trig.stdout)["daemon"]["result"]["decision"].startswith("items")
                setting = await cli(
                    "config", "set", "healing.min_healing_interval_seconds", "120", *base
                )
                assert setting.returncode == 0, setting.stderr
                shown = await cli("config", "show", *base, "--json")
                rows = {r["key"]: r for r in json.loads(shown.stdout)["settings"]}
                interval = rows["healing.min_healing_interval_seconds"]
                assert (interval["value"], interval["source"]) == (120, "database")
                assert rows["database.dsn"]["source"] == "yaml"
                assert rows["database.dsn"]["value"] == p.as_(p.daemon)  # the file's, not --dsn
                bad = await cli("config", "set", "healing.max_attempts_per_window", "-1", *base)
                assert bad.returncode == 2
                assert "healing.max_attempts_per_window: -1 is not >= 1" in bad.stderr
                strategies = await cli("strategies", *base)
                assert strategies.returncode == 0 and "throttle_ingestion" in strategies.stdout
                history = await cli("history", *base, "--since", "1h")
                assert history.returncode == 0, history.stderr
                healing = await cli("heal", "status", *base)
                assert healing.returncode == 0 and "items" in healing.stdout
                dry = await cli(
                    "heal", "execute", "items", "throttle_ingestion", "--dry-run", *base
                )
                assert dry.returncode == 0 and "dry run of throttle_ingestion" in dry.stdout
                nothing = await cli("heal", "rollback", "items", *base)
                assert nothing.returncode == 2
                assert "no reversible action is in force" in nothing.stderr
        finally:
            await admin.close()
