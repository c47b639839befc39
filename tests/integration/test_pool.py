"""The pool gives connections back without asyncpg's reset query (postgres/pool.py,
keep_session): what must still hold is that no transaction outlives its user."""

from __future__ import annotations

from ruvectord.postgres.pool import Database, keep_session
from tests.conftest import options


async def test_a_connection_given_back_mid_transaction_is_rolled_back(dsn: str) -> None:
    db = await Database.connect(options(dsn, pool_min_size=1, pool_max_size=1))
    try:
        assert db.pool._reset is keep_session  # type: ignore[attr-defined]  # no reset query
        await db.execute("CREATE TABLE pool_probe (x int)")
        async with db.acquire() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            tx = conn.transaction()
            await tx.start()
            await conn.execute("INSERT INTO pool_probe VALUES (1)")
            # given back without commit or rollback, as a cancelled caller would
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid  # the one session
            assert not await conn.fetchval("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")
            assert await conn.fetchval("SELECT count(*) FROM pool_probe") == 0
    finally:
        await db.close()
