"""Do no harm, provably: the attacks of a hostile application and of a compromised daemon role,
each tried on a real server set up by deploy/sql/roles.sql, and the brake's fail-open lease.

Adversaries: the daemon's own role trying to get code run in another role's session (the
way to superuser), an application trying to get rows past a 100 % throttle, and a daemon that
is simply gone while its throttle is still in the table.
"""

from __future__ import annotations

import io
import json

import asyncpg
import pytest

from ruvectord.postgres.pool import Database
from ruvectord.scenarios.collection import THROTTLED_SQLSTATE, CollectionSpec
from tests.conftest import PgServer
from tests.roles import Parties, insert_one, parties

EVIL = (
    "RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "EXECUTE 'ALTER ROLE {role} SUPERUSER'; RETURN NEW; END $$"
)


async def _count(p: Parties) -> int:
    conn = await asyncpg.connect(p.dsn)
    try:
        n: int = await conn.fetchval(f"SELECT count(*) FROM {p.spec.qualified}")
        return n
    finally:
        await conn.close()


async def _configure(p: Parties, pct: int, *, expires: str = "now() + interval '1 hour'") -> int:
    """As the daemon: register the collection, install the guard, set a throttle level."""
    conn = await asyncpg.connect(p.as_(p.daemon))
    try:
        cid: int = await conn.fetchval(
            "INSERT INTO ruvector.collections (name, table_schema, table_name, vector_column) "
            "VALUES ('items', 'public', 'items', 'embedding') RETURNING id"
        )
        assert await conn.fetchval("SELECT ruvector.install_throttle_guard($1)", cid) == (
            "installed now"
        )
        for op in ("insert", "bulk_insert"):
            await conn.execute(
                "INSERT INTO ruvector.throttles (collection_id, operation, throttle_pct, "
                f"retry_after_seconds, expires_at) VALUES ($1, $2, $3, 5, {expires})",
                cid,
                op,
                pct,
            )
        return cid
    finally:
        await conn.close()


# --------------------------------------------------------------------------- the daemon's role


DAEMON_ATTEMPTS = [
    # replace or alter what other sessions execute
    "CREATE OR REPLACE FUNCTION ruvector.throttle_guard() " + EVIL,
    "ALTER FUNCTION ruvector.throttle_guard() SECURITY INVOKER",
    "ALTER FUNCTION ruvector.throttle_guard() RESET search_path",
    "ALTER FUNCTION ruvector.throttle_guard() OWNER TO CURRENT_USER",
    "DROP FUNCTION ruvector.throttle_guard()",
    "CREATE OR REPLACE FUNCTION public.ruvector_integrity_gate(collection text, operation text) "
    "RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$",
    "ALTER FUNCTION public.ruvector_integrity_gate(text, text) SECURITY INVOKER",
    "CREATE OR REPLACE FUNCTION public.ruvector_integrity_gate(collection text, operation text, "
    "tenant text) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$",
    "ALTER FUNCTION public.ruvector_integrity_gate(text, text, text) SECURITY INVOKER",
    # the decision both gates call (schema v17)
    "CREATE OR REPLACE FUNCTION ruvector.gate_answer(op text, risk text, state text, "
    "stale boolean, state_label text, throttle_pct double precision, retry_after double "
    "precision, expires_at timestamptz, throttle_tenant text, OUT response text, OUT factor "
    "double precision, OUT retry double precision, OUT reason text) LANGUAGE sql AS "
    "$$ SELECT 'allow', 1.0::float8, 0::float8, 'evil' $$",
    "ALTER FUNCTION ruvector.gate_answer(text, text, text, boolean, text, double precision, "
    "double precision, timestamptz, text) OWNER TO CURRENT_USER",
    "ALTER FUNCTION ruvector.install_throttle_guard(integer, interval) OWNER TO CURRENT_USER",
    # put a function of its own where others would find it, or a trigger on their table
    "CREATE FUNCTION public.evil() " + EVIL,
    "CREATE FUNCTION ruvector.evil() " + EVIL,
    "CREATE SCHEMA evil",
    "CREATE TRIGGER evil BEFORE INSERT ON public.items FOR EACH ROW "
    "EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    "ALTER TABLE public.items DISABLE TRIGGER ruvector_throttle_guard",
    "DROP TRIGGER ruvector_throttle_guard ON public.items",
    "ALTER TABLE ruvector.throttles ADD COLUMN evil text",
    # become the owner
    "SET ROLE ruvector_owner",
    "GRANT ruvector_owner TO CURRENT_USER",
    # rewrite history
    "UPDATE ruvector.integrity_events SET metadata = '{}'",
    "DELETE FROM ruvector.integrity_events",
]


async def test_the_daemon_role_cannot_change_what_runs_in_another_session(
    pg_server: PgServer,
) -> None:
    async with parties(pg_server) as p:
        await _configure(p, 0)
        daemon = await asyncpg.connect(p.as_(p.daemon))
        try:
            for sql in DAEMON_ATTEMPTS:
                sql = sql.replace("{role}", p.daemon)
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await daemon.execute(sql)
            # the guard can only be attached to a table whose owner let ruvector_owner do so
            await daemon.execute("CREATE TEMP TABLE mine (x int)")  # visible to no one else
            other = await daemon.fetchval(
                "INSERT INTO ruvector.collections (name, table_schema, table_name, "
                "vector_column) VALUES ('other', 'pg_catalog', 'pg_class', 'x') RETURNING id"
            )
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await daemon.fetchval("SELECT ruvector.install_throttle_guard($1)", other)
        finally:
            await daemon.close()
        # the escalation path of old: a superuser inserts; the daemon role stays what it was
        admin = await asyncpg.connect(p.dsn)
        try:
            await insert_one(admin, p.spec)
            assert not await admin.fetchval(
                "SELECT rolsuper FROM pg_roles WHERE rolname = $1", p.daemon
            )
        finally:
            await admin.close()


# --------------------------------------------------------------------------- the application


async def test_no_application_trick_gets_a_row_past_a_full_throttle(pg_server: PgServer) -> None:
    async with parties(pg_server) as p:
        await _configure(p, 100)
        before = await _count(p)
        app = await asyncpg.connect(p.as_(p.app))
        tag = p.app.split("_", 1)[1]
        try:

            async def refused(*setup: str, table: str = "") -> None:
                async with app.transaction():
                    for sql in setup:
                        await app.execute(sql)
                    with pytest.raises(asyncpg.PostgresError) as exc:
                        await insert_one(app, p.spec, table=table)
                    assert exc.value.sqlstate == THROTTLED_SQLSTATE, exc.value

            await refused()
            # say it is something harmless
            await refused("SET LOCAL ruvector.operation = 'search'")
            await refused("SET LOCAL ruvector.operation = 'point_insert'")
            # forge the old per-statement verdict cache
            await refused(
                "SELECT set_config('ruvector.throttle_verdict', "
                "statement_timestamp()::text || '/' || pg_backend_pid() || '|pass', true)"
            )
            # make random() predictable
            await refused("SELECT setseed(0.5)")
            # shadow an operator the trigger uses, through its own search_path
            await refused(
                f'CREATE FUNCTION "app_{tag}".never(integer, integer) RETURNS boolean '
                "LANGUAGE sql AS 'SELECT false'",
                f'CREATE OPERATOR "app_{tag}".= (LEFTARG = integer, RIGHTARG = integer, '
                f'FUNCTION = "app_{tag}".never)',
                f'SET LOCAL search_path = "app_{tag}", pg_catalog, public',
            )
            # straight into a partition
            await refused(table=f"public.{p.spec.partition_name(1)}")
            # COPY
            with pytest.raises(asyncpg.PostgresError) as copy:
                await app.copy_records_to_table(
                    p.spec.table, records=[(1,)], columns=["shard"], schema_name="public"
                )
            assert copy.value.sqlstate in (THROTTLED_SQLSTATE, "23502"), copy.value
            # switch the trigger off: not the owner, not a superuser
            for sql in (
                "SET session_replication_role = replica",
                "ALTER TABLE public.items DISABLE TRIGGER ALL",
                "ALTER TABLE public.items DISABLE TRIGGER ruvector_throttle_guard",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await app.execute(sql)
        finally:
            await app.close()
        assert await _count(p) == before


async def test_copy_is_throttled_as_a_whole(pg_server: PgServer) -> None:
    spec = CollectionSpec(partitions=2, rows_per_partition=5, index=False, dims=2)
    async with parties(pg_server, spec) as p:
        await _configure(p, 100)
        admin = await asyncpg.connect(p.dsn)
        try:
            kind = await admin.fetchval(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'public.items'::regclass AND attname = 'embedding'"
            )
        finally:
            await admin.close()
        before = await _count(p)
        app = await asyncpg.connect(p.as_(p.app))
        try:
            vector = "[0.5,0.5]" if kind.startswith("vector") else "{0.5,0.5}"
            text = "".join(f"{i % 2}\t{vector}\n" for i in range(100)).encode()
            with pytest.raises(asyncpg.PostgresError) as exc:
                await app.copy_to_table(
                    "items",
                    source=io.BytesIO(text),
                    columns=["shard", "embedding"],
                    schema_name="public",
                    format="text",
                )
            assert exc.value.sqlstate == THROTTLED_SQLSTATE
        finally:
            await app.close()
        assert await _count(p) == before


# --------------------------------------------------------------------------- the lease


async def test_an_expired_throttle_holds_nothing(pg_server: PgServer) -> None:
    async with parties(pg_server) as p:
        await _configure(p, 100, expires="now() - interval '1 second'")
        before = await _count(p)
        app = await asyncpg.connect(p.as_(p.app))
        try:
            await insert_one(app, p.spec)
            gate = json.loads(
                await app.fetchval("SELECT ruvector_integrity_gate('items', 'insert')")
            )
            assert gate["allowed"] and gate["throttle_factor"] == 1
        finally:
            await app.close()
        assert await _count(p) == before + 1


async def test_the_gate_fails_open_when_the_daemon_is_gone_and_never_says_allowed_at_zero(
    pg_server: PgServer,
) -> None:
    async with parties(pg_server) as p:
        cid = await _configure(p, 100)
        daemon = await asyncpg.connect(p.as_(p.daemon))
        try:
            await daemon.execute(
                "INSERT INTO ruvector.integrity_policies (collection_id, threshold_high, "
                "threshold_low, degrade_samples, critical_samples, recovery_offset, "
                "recovery_hold_seconds, cooldown_seconds, sample_interval_seconds) "
                "VALUES ($1, 0.8, 0.3, 3, 2, 0.1, 300, 60, 10)",
                cid,
            )
            # critical, sampled just now
            await daemon.execute(
                "INSERT INTO ruvector.integrity_state (collection_id, state, last_sample_at) "
                "VALUES ($1, 'critical', now())",
                cid,
            )
            app = await asyncpg.connect(p.as_(p.app))
            try:
                full = json.loads(
                    await app.fetchval("SELECT ruvector_integrity_gate('items', 'insert')")
                )
                assert (full["response"], full["allowed"]) == ("defer", False)
                assert full["throttle_factor"] == 0.0
                # the application can neither call the decision itself nor steer it through
                # its own search_path (a format() of its own ahead of pg_catalog)
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await app.fetchval(
                        "SELECT ruvector.gate_answer('insert', 'medium', 'critical', false, "
                        "'critical', 0, 0, now(), '')"
                    )
                tag = p.app.split("_", 1)[1]
                async with app.transaction():
                    for args in ("text, text", "text, text, text"):
                        await app.execute(
                            f'CREATE FUNCTION "app_{tag}".format({args}) RETURNS text '
                            "LANGUAGE sql AS $$ SELECT 'allowed' $$"
                        )
                    await app.execute(f'SET LOCAL search_path = "app_{tag}", pg_catalog')
                    # the trap is armed: in the application's own statements it wins
                    assert await app.fetchval("SELECT format('%s in %s', 'a', 'b')") == "allowed"
                    steered = json.loads(
                        await app.fetchval(
                            "SELECT public.ruvector_integrity_gate('items', 'insert')"
                        )
                    )
                    assert steered == full
                search = json.loads(
                    await app.fetchval("SELECT ruvector_integrity_gate('items', 'search')")
                )
                assert search["response"] == "throttle" and not search["stale"]
                # nobody has sampled for ten minutes: integrity is unknown, the gate allows
                await daemon.execute(
                    "UPDATE ruvector.integrity_state SET last_sample_at = now() - "
                    "interval '10 minutes'"
                )
                await daemon.execute("UPDATE ruvector.throttles SET expires_at = now()")
                stale = json.loads(
                    await app.fetchval("SELECT ruvector_integrity_gate('items', 'bulk_insert')")
                )
                assert (stale["response"], stale["allowed"], stale["stale"]) == (
                    "allow",
                    True,
                    True,
                )
                assert "integrity unknown" in stale["reason"]
            finally:
                await app.close()
        finally:
            await daemon.close()


# --------------------------------------------------------------------------- bad rows


async def test_rows_that_would_break_a_loop_are_refused(db: Database, dsn: str) -> None:
    cid = await db.fetchval(
        "INSERT INTO ruvector.collections (name, table_schema, table_name, vector_column) "
        "VALUES ('c', 'public', 't', 'v') RETURNING id"
    )
    for value in ("NaN", "Infinity", "-1"):
        with pytest.raises(asyncpg.CheckViolationError):
            await db.execute(
                "INSERT INTO ruvector.centroid_stats (collection_id, centroid_id, vector_count, "
                "latency_ms) VALUES ($1, 1, 10, $2::text::float8)",
                cid,
                value,
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await db.execute(
                "INSERT INTO ruvector.throttles (collection_id, operation, throttle_pct, "
                "retry_after_seconds, expires_at) "
                "VALUES ($1, 'insert', 50, $2::text::float8, now())",
                cid,
                value,
            )


async def test_removing_the_guard_says_who_can(pg_server: PgServer) -> None:
    """Dropping a trigger needs the table's owner: the daemon is told whose table it is and
    what to run, not a bare "must be owner"; the guard stays until then."""
    async with parties(pg_server) as p:
        cid = await _configure(p, 0)
        daemon = await asyncpg.connect(p.as_(p.daemon))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
                await daemon.execute("SELECT ruvector.remove_throttle_guard($1)", cid)
        finally:
            await daemon.close()
        admin = await asyncpg.connect(p.dsn)
        try:
            owner = await admin.fetchval(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = $1::regclass",
                p.spec.qualified,
            )
            assert str(refused.value).splitlines()[0] == (
                f"the throttle guard on {p.spec.qualified} can be removed only by the "
                f"table's owner, {owner}"
            )
            hint = getattr(refused.value, "hint", "")
            assert hint == f"as {owner}: DROP TRIGGER ruvector_throttle_guard ON {p.spec.qualified}"
            guards = "SELECT count(*) FROM pg_trigger WHERE tgname = 'ruvector_throttle_guard'"
            assert await admin.fetchval(guards) > 0  # still in place
            # handed to ruvector_owner, the table's guard can be removed by the daemon
            await admin.execute(f"ALTER TABLE {p.spec.qualified} OWNER TO ruvector_owner")
        finally:
            await admin.close()
        daemon = await asyncpg.connect(p.as_(p.daemon))
        try:
            await daemon.execute("SELECT ruvector.remove_throttle_guard($1)", cid)
            await daemon.execute("SELECT ruvector.remove_throttle_guard($1)", cid)  # idempotent
        finally:
            await daemon.close()
        admin = await asyncpg.connect(p.dsn)
        try:
            assert await admin.fetchval(guards) == 0
        finally:
            await admin.close()
