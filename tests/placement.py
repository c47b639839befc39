"""The proof that moving rows loses nothing: writers and searchers that check every answer.

Shared by the placement end-to-end and SIGKILL tests. While a strategy moves rows, 4 writers
insert (through `ruvector_route`, as an application that honours drains would) and update
existing rows' vectors, each write recorded once committed; 2 searchers run exact scans (every
row that existed throughout must be there exactly once), exact nearest-neighbour searches (a
row's own vector must find it) and index searches (never the same row twice). At the end the
collection must hold exactly the rows of the model -- same ids, same vectors, each once.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

import anyio
import asyncpg

from ruvectord.scenarios.collection import THROTTLED_SQLSTATE, CollectionSpec


@dataclass
class Tally:
    inserts: int = 0
    updates: int = 0
    searches: int = 0
    writer_errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


class Proof:
    def __init__(self, dsn: str, spec: CollectionSpec, *, vector: bool, seed: int = 7) -> None:
        self.dsn = dsn
        self.spec = spec
        self.vector = vector
        self.rng = random.Random(seed)
        self.tally = Tally()
        self.model: dict[int, str] = {}  # id -> vector text, as committed
        self.shards: dict[int, int] = {}  # id -> the shard it was written with
        self.initial: dict[int, str] = {}
        self.stable: list[int] = []  # initial rows no writer updates
        # set to end the writers and searchers after their current statement: a cancelled
        # insert may still commit, and its row would be missing from the model
        self.stopping = False

    async def snapshot(self, conn: asyncpg.Connection) -> dict[int, tuple[int, str]]:
        rows = await conn.fetch("SELECT id, shard, embedding::text AS e FROM public.items")
        out = {int(r["id"]): (int(r["shard"]), str(r["e"])) for r in rows}
        assert len(out) == len(rows), "a row is in the collection twice"
        return out

    async def start(self, conn: asyncpg.Connection) -> None:
        snap = await self.snapshot(conn)
        self.initial = {k: e for k, (_, e) in snap.items()}
        self.model = dict(self.initial)
        self.shards = {k: s for k, (s, _) in snap.items()}
        self.stable = sorted(k for k in self.initial if k % 4 == 3)

    def _vector(self) -> str:
        values = ",".join(f"{self.rng.random():.4f}" for _ in range(self.spec.dims))
        return f"[{values}]" if self.vector else f"{{{values}}}"

    async def writer(self, n: int, pause: float = 0.05) -> None:
        cast = "vector" if self.vector else "real[]"
        conn = await asyncpg.connect(self.dsn, timeout=10)
        mine = [k for k in self.initial if k % 4 == n % 3]  # never a stable row
        try:
            while not self.stopping:
                e = self._vector()
                try:
                    if self.rng.random() < 0.85:
                        shard = self.rng.randrange(self.spec.partitions)
                        row = await conn.fetchrow(
                            "INSERT INTO public.items (shard, embedding) "
                            f"VALUES (ruvector_route('items', $1::bigint), $2::{cast}) "
                            "RETURNING id, shard, embedding::text AS e",
                            shard,
                            e,
                        )
                        assert row is not None
                        self.model[int(row["id"])] = str(row["e"])
                        self.shards[int(row["id"])] = int(row["shard"])
                        self.tally.inserts += 1
                    else:
                        k = self.rng.choice(mine)
                        row = await conn.fetchrow(
                            f"UPDATE public.items SET embedding = $2::{cast} WHERE id = $1 "
                            "RETURNING embedding::text AS e",
                            k,
                            e,
                        )
                        if row is None:
                            self.tally.writer_errors.append(f"update of {k} found no row")
                        else:
                            self.model[k] = str(row["e"])
                            self.tally.updates += 1
                except asyncpg.PostgresError as exc:
                    if exc.sqlstate != THROTTLED_SQLSTATE:  # a throttle is no surprise
                        self.tally.writer_errors.append(f"{exc.sqlstate}: {exc}")
                await anyio.sleep(pause)
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close(timeout=5)

    async def exact_searcher(self, pause: float = 0.05) -> None:
        """Every initial row, exactly once, in every scan of the whole collection."""
        conn = await asyncpg.connect(self.dsn, timeout=10)
        top = max(self.initial)
        want = set(self.initial)
        try:
            while not self.stopping:
                ids = [
                    r["id"]
                    for r in await conn.fetch("SELECT id FROM public.items WHERE id <= $1", top)
                ]
                got = set(ids)
                if len(ids) != len(got):
                    self.tally.violations.append(f"scan returned {len(ids) - len(got)} twice")
                if want - got:
                    self.tally.violations.append(f"scan missed {sorted(want - got)[:5]}")
                self.tally.searches += 1
                await anyio.sleep(pause)
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close(timeout=5)

    async def knn_searcher(self, pause: float = 0.05) -> None:
        """Nearest neighbours of a stable row's own vector: exact (no index) must find the
        row; through the index never returns a row twice."""
        if not self.vector:
            return await self.exact_searcher(pause)
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            exact = False
            while not self.stopping:
                k = self.rng.choice(self.stable)
                # exact: an ORDER BY no index can serve, so every partition is scanned and
                # sorted (a SET of enable_indexscan would not reach a cached plan)
                order = "(embedding <-> $1::vector) + 0" if exact else "embedding <-> $1::vector"
                ids = [
                    r["id"]
                    for r in await conn.fetch(
                        f"SELECT id FROM public.items ORDER BY {order} LIMIT 10",
                        self.initial[k],
                    )
                ]
                if len(ids) != len(set(ids)):
                    self.tally.violations.append(f"kNN returned a row twice: {ids}")
                if exact and k not in ids:
                    self.tally.violations.append(f"exact kNN of row {k} missed it: {ids}")
                self.tally.searches += 1
                exact = not exact
                await anyio.sleep(pause)
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close(timeout=5)

    async def check(self, conn: asyncpg.Connection) -> dict[int, int]:
        """The collection holds exactly the model's rows; returns id -> shard now."""
        assert self.tally.writer_errors == [], self.tally.writer_errors[:5]
        assert self.tally.violations == [], self.tally.violations[:5]
        assert self.tally.searches > 0 and self.tally.inserts > 0
        snap = await self.snapshot(conn)
        assert set(snap) == set(self.model), (
            f"lost {sorted(set(self.model) - set(snap))[:5]}, "
            f"extra {sorted(set(snap) - set(self.model))[:5]}"
        )
        changed = [k for k, (_, e) in snap.items() if e != self.model[k]]
        assert changed == [], changed[:5]
        assert await checksum(conn) == model_checksum(self.model)
        return {k: s for k, (s, _) in snap.items()}


async def checksum(conn: asyncpg.Connection) -> str:
    """md5 over (id, vector) of every row, in id order."""
    value: str = await conn.fetchval(
        "SELECT md5(string_agg(id::text || ':' || embedding::text, ',' ORDER BY id)) "
        "FROM public.items"
    )
    return value


def model_checksum(model: dict[int, str]) -> str:
    text = ",".join(f"{k}:{model[k]}" for k in sorted(model))
    return hashlib.md5(text.encode()).hexdigest()


async def deadlock_storm(dsn: str, pairs: int = 6) -> None:
    """Pairs of sessions that deadlock each other over and over (deadlock_timeout 10 ms): a
    real fault that lowers lambda through the error rate, which no graph cause explains."""
    setup = await asyncpg.connect(dsn, timeout=10)
    try:
        await setup.execute(
            "CREATE TABLE IF NOT EXISTS deadlock_pad (id int PRIMARY KEY, v int);"
            "INSERT INTO deadlock_pad SELECT g, 0 FROM generate_series(1, $1 * 2) g "
            "ON CONFLICT DO NOTHING".replace("$1", str(pairs))
        )
    finally:
        await setup.close()

    async def pair(i: int) -> None:
        a = await asyncpg.connect(dsn, timeout=10)
        b = await asyncpg.connect(dsn, timeout=10)
        try:
            for c in (a, b):
                await c.execute("SET deadlock_timeout = '10ms'")
            x, y = 2 * i + 1, 2 * i + 2
            while True:

                async def side(c: asyncpg.Connection, first: int, second: int) -> None:
                    try:
                        async with c.transaction():
                            await c.execute(
                                "UPDATE deadlock_pad SET v = v + 1 WHERE id = $1", first
                            )
                            await anyio.sleep(0.005)
                            await c.execute(
                                "UPDATE deadlock_pad SET v = v + 1 WHERE id = $1", second
                            )
                    except asyncpg.DeadlockDetectedError:
                        pass

                async with anyio.create_task_group() as tg:
                    tg.start_soon(side, a, x, y)
                    tg.start_soon(side, b, y, x)
        finally:
            with anyio.CancelScope(shield=True):
                await a.close(timeout=5)
                await b.close(timeout=5)

    async with anyio.create_task_group() as tg:
        for i in range(pairs):
            tg.start_soon(pair, i)
