"""deploy/sql/roles.sql grants exactly enough: the daemon works, applications can use the gate."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ruvectord.audit import Signer
from ruvectord.clock import ManualClock
from ruvectord.healing.strategies.throttle_ingestion import ensure_guard
from ruvectord.postgres.migrations import MigrationError, ensure_current
from ruvectord.postgres.pool import Database
from ruvectord.postgres.sampler import Sampler
from ruvectord.postgres.store import Store
from tests.conftest import PgServer, options
from tests.helpers import make_config
from tests.roles import insert_one, parties


async def test_roles_sql_is_enough_for_the_daemon_and_for_applications(
    pg_server: PgServer, tmp_path: Path
) -> None:
    async with parties(pg_server) as p:
        db = await Database.connect(options(p.as_(p.daemon)))
        try:
            # the schema is current: the daemon's role needs no right to migrate
            await ensure_current(db, may_migrate=True)
            config = make_config(p.as_(p.daemon), tmp_path, p.spec)
            signer = Signer(Ed25519PrivateKey.generate())
            store = Store(db, signer)
            await store.register_key(signer, "test")
            cid = (await store.sync_collections(config))["items"]
            snap = await Sampler(db, config.collections[0]).sample(ManualClock().now(), cid)
            assert len(snap.partitions) == 4
            assert await ensure_guard(db, cid, lock_timeout_ms=1000) == "installed now"
            assert await ensure_guard(db, cid, lock_timeout_ms=1000) == "installed"
            event = await store.record_event(
                {
                    "collection": "items",
                    "event_type": "audit",
                    "metadata": {"test": True},
                    "created_at": ManualClock().now(),
                }
            )
            assert event >= 1
        finally:
            await db.close()

        client = await asyncpg.connect(p.as_(p.app))
        try:
            gate = await client.fetchval("SELECT ruvector_integrity_gate('items', 'search')")
            assert '"response": "allow"' in gate
            # through the guard trigger, with nothing but INSERT on the table
            await insert_one(client, p.spec)
        finally:
            await client.close()


async def test_a_least_privilege_daemon_says_who_must_migrate(pg_server: PgServer) -> None:
    async with parties(pg_server) as p:
        admin = await asyncpg.connect(p.dsn)
        try:
            # the newest migration looks unapplied (whichever number it has)
            await admin.execute(
                "DELETE FROM ruvector.schema_migrations "
                "WHERE version = (SELECT max(version) FROM ruvector.schema_migrations)"
            )
        finally:
            await admin.close()
        db = await Database.connect(options(p.as_(p.daemon)))
        try:
            try:
                await ensure_current(db, may_migrate=True)
            except MigrationError as exc:
                message = str(exc)
            else:
                raise AssertionError("a daemon role could migrate")
            assert "ruvectord migrate --admin-dsn" in message
            assert f"{p.daemon} may not" in message or "may not create roles" in message
        finally:
            await db.close()
