"""The maintenance functions of migration 0006, attacked by the daemon's own role on a server
set up by deploy/sql/roles.sql: they act only on the configured collection, cannot be
replaced, do exactly one thing, and without the opt-in grants the daemon can do nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from ruvectord.scenarios.collection import CollectionSpec
from tests.conftest import PgServer
from tests.roles import ROLES_SQL, Parties, parties, psql_file

SPEC = CollectionSpec(partitions=2, rows_per_partition=20, index=False)


def owner_of(p: Parties) -> str:
    """An ordinary owner role of this test's own (roles are cluster-wide)."""
    return "rvx_" + p.daemon.split("_", 1)[1]


@asynccontextmanager
async def setup(pg_server: PgServer) -> AsyncIterator[Parties]:
    owners: list[str] = []
    try:
        async with parties(pg_server, SPEC) as p:
            owners.append(owner_of(p))
            yield p
    finally:
        admin = await asyncpg.connect(pg_server.admin_dsn)
        try:
            for owner in owners:
                await admin.execute(f"DROP ROLE IF EXISTS {owner}")
        finally:
            await admin.close()


async def _hand_to_app_owner(p: Parties, *opt_ins: str) -> int:
    """The collection and a bystander table belong to an ordinary role; roles.sql runs again
    with the opt-ins; the daemon registers the collection. Returns its id."""
    owner = owner_of(p)
    admin = await asyncpg.connect(p.dsn)
    try:
        await admin.execute(f"CREATE ROLE {owner} NOLOGIN")
        for r in await admin.fetch(
            "SELECT relid::regclass::text AS rel FROM pg_partition_tree('public.items')"
        ):
            await admin.execute(f"ALTER TABLE {r['rel']} OWNER TO {owner}")
        await admin.execute("CREATE TABLE public.bystander (id int, v real[])")
        await admin.execute("CREATE INDEX bystander_idx ON public.bystander (id)")
        await admin.execute(f"ALTER TABLE public.bystander OWNER TO {owner}")
    finally:
        await admin.close()
    await psql_file(p.dsn, ROLES_SQL, f"daemon={p.daemon}", f"tables={p.spec.qualified}", *opt_ins)
    daemon = await asyncpg.connect(p.as_(p.daemon))
    try:
        cid: int = await daemon.fetchval(
            "INSERT INTO ruvector.collections (name, table_schema, table_name, vector_column) "
            "VALUES ('items', 'public', 'items', 'embedding') RETURNING id"
        )
        return cid
    finally:
        await daemon.close()


REPLACE_ATTEMPTS = [
    "CREATE OR REPLACE FUNCTION ruvector.set_autovacuum(collection_id integer, part regclass, "
    "value text, wait interval DEFAULT '3 seconds') RETURNS text LANGUAGE sql AS $$ SELECT '' $$",
    "ALTER FUNCTION ruvector.set_autovacuum(integer, regclass, text, interval) SECURITY INVOKER",
    "ALTER FUNCTION ruvector.swap_index(integer, regclass, regclass, double precision[], "
    "integer, double precision, integer, integer, interval) RESET search_path",
    "ALTER FUNCTION ruvector.drop_leftover_index(integer, regclass, interval) "
    "OWNER TO CURRENT_USER",
    "DROP FUNCTION ruvector.collection_relation(integer, regclass)",
    # helpers are not granted: only the narrow functions are
    "SELECT ruvector.collection_relation(1, 'public.items_p0'::regclass)",
    "SELECT ruvector.freeze_age_share('public.items_p0'::regclass)",
    # nothing of the collection directly
    "ALTER TABLE public.items_p0 SET (autovacuum_enabled = false)",
    "REINDEX TABLE public.items_p0",
    "SELECT * FROM public.items_p0",
    # the probe vectors are rows of the collection: not even readers see them
    "SELECT * FROM ruvector.probe_vectors",
    "INSERT INTO ruvector.probe_vectors VALUES (1, 'public.items_p0', 1, '{1}')",
]


async def test_the_functions_refuse_anything_but_the_collection(pg_server: PgServer) -> None:
    async with setup(pg_server) as p:
        cid = await _hand_to_app_owner(p, "maintenance=on", "canary=on")
        daemon = await asyncpg.connect(p.as_(p.daemon))
        try:
            for sql in REPLACE_ATTEMPTS:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await daemon.execute(sql)
            # every function, pointed at a table of another owner or the catalog
            for sql in (
                "SELECT ruvector.set_autovacuum($1, 'public.bystander', 'false')",
                "SELECT ruvector.set_autovacuum($1, 'pg_catalog.pg_class', 'false')",
                "SELECT ruvector.drop_leftover_index($1, 'public.bystander_idx')",
                "SELECT ruvector.reindex_statement($1, 'public.bystander_idx')",
                "SELECT ruvector.vacuum_statement($1, 'public.bystander_idx')",
                "SELECT ruvector.sample_probes($1, 'public.bystander', 5)",
                "SELECT ruvector.canary_exact($1, 'public.bystander_idx', 5)",
                "SELECT ruvector.ivfflat_build_statement($1, 'public.bystander_idx', 4, 'x')",
                "SELECT ruvector.index_restore_statement($1, 'public.bystander', "
                "'CREATE INDEX x ON public.bystander USING btree (id)', 'x', 'y')",
                "SELECT ruvector.swap_index($1, 'public.bystander_idx', 'public.bystander_idx', "
                "NULL, 1, NULL, 0, 0)",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="not a partition"):
                    await daemon.fetchval(sql, cid)
            # another collection row pointing at someone else's table changes nothing: the
            # owner's rights do not reach it
            other = await daemon.fetchval(
                "INSERT INTO ruvector.collections (name, table_schema, table_name, "
                "vector_column) VALUES ('sneaky', 'pg_catalog', 'pg_authid', 'x') RETURNING id"
            )
            with pytest.raises(asyncpg.PostgresError):
                await daemon.fetchval(
                    "SELECT ruvector.set_autovacuum($1, 'pg_catalog.pg_authid', 'false')", other
                )
        finally:
            await daemon.close()


async def test_each_function_does_exactly_one_thing(pg_server: PgServer) -> None:
    async with setup(pg_server) as p:
        cid = await _hand_to_app_owner(p, "maintenance=on", "canary=on")
        daemon = await asyncpg.connect(p.as_(p.daemon))
        admin = await asyncpg.connect(p.dsn)
        try:
            # only autovacuum_enabled, only a boolean, the exact text kept
            for bad in ("false, fillfactor = 10", "false); DROP TABLE public.items; --", "x"):
                with pytest.raises(asyncpg.PostgresError):
                    await daemon.fetchval(
                        "SELECT ruvector.set_autovacuum($1, 'public.items_p0', $2)", cid, bad
                    )
            assert (
                await daemon.fetchval(
                    "SELECT ruvector.set_autovacuum($1, 'public.items_p0', 'off')", cid
                )
                == "disabled"
            )
            opts = await admin.fetchval(
                "SELECT reloptions FROM pg_class WHERE oid = 'public.items_p0'::regclass"
            )
            assert opts == ["autovacuum_enabled=off"]
            await daemon.fetchval(
                "SELECT ruvector.set_autovacuum($1, 'public.items_p0', NULL)", cid
            )
            assert (
                await admin.fetchval(
                    "SELECT reloptions FROM pg_class WHERE oid = 'public.items_p0'::regclass"
                )
                is None
            )
            # a valid index ruvectord did not build is never dropped
            await admin.execute("CREATE INDEX items_p0_id ON public.items_p0 (id)")
            with pytest.raises(asyncpg.ObjectInUseError, match="did not build"):
                await daemon.fetchval(
                    "SELECT ruvector.drop_leftover_index($1, 'public.items_p0_id')", cid
                )
            # a cancel is only for maintenance statements on the collection
            said = await daemon.fetchval(
                "SELECT ruvector.cancel_manual_maintenance($1, pg_backend_pid())", cid
            )
            assert said.startswith("refused: not a VACUUM")
            assert (
                await daemon.fetchval(
                    "SELECT ruvector.cancel_autovacuum($1, pg_backend_pid())", cid
                )
                == "gone"
            )
            # the canary samples probes once, and the daemon still cannot read them
            assert (
                await daemon.fetchval(
                    "SELECT ruvector.sample_probes($1, 'public.items_p0', 5)", cid
                )
                == 5
            )
            assert (
                await daemon.fetchval(
                    "SELECT ruvector.sample_probes($1, 'public.items_p0', 50)", cid
                )
                == 5
            )
        finally:
            await daemon.close()
            await admin.close()


async def test_without_the_opt_ins_the_daemon_can_do_nothing_and_is_told_why(
    pg_server: PgServer,
) -> None:
    async with setup(pg_server) as p:
        cid = await _hand_to_app_owner(p)
        daemon = await asyncpg.connect(p.as_(p.daemon))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
                await daemon.fetchval(
                    "SELECT ruvector.set_autovacuum($1, 'public.items_p0', 'false')", cid
                )
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                await daemon.fetchval(
                    "SELECT ruvector.sample_probes($1, 'public.items_p0', 5)", cid
                )
        finally:
            await daemon.close()


async def test_maintain_lets_the_daemon_reindex_on_17_and_later_only(pg_server: PgServer) -> None:
    async with setup(pg_server) as p:
        if pg_server.version < 170000:
            with pytest.raises(AssertionError, match="no MAINTAIN"):
                await _hand_to_app_owner(p, "indexes=on")
            return
        await _hand_to_app_owner(p, "indexes=on")
        daemon = await asyncpg.connect(p.as_(p.daemon))
        try:
            await daemon.execute("VACUUM public.items_p0")
            await daemon.execute("REINDEX TABLE CONCURRENTLY public.items_p0")
            for sql in (
                "ALTER TABLE public.items_p0 SET (autovacuum_enabled = false)",
                "CREATE INDEX ON public.items_p0 (id)",
                "SELECT * FROM public.items_p0",
                "REINDEX TABLE public.bystander",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await daemon.execute(sql)
        finally:
            await daemon.close()


async def test_tables_owned_by_a_superuser_are_refused(pg_server: PgServer) -> None:
    async with setup(pg_server) as p:
        with pytest.raises(AssertionError, match="belongs to the superuser"):
            await psql_file(
                p.dsn,
                ROLES_SQL,
                f"daemon={p.daemon}",
                f"tables={p.spec.qualified}",
                "maintenance=on",
            )
