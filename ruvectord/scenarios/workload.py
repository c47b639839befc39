"""Concurrent writers and readers against a collection, for the demo and the chaos tests.

Writers behave like a well-mannered client: when the throttle guard turns an insert away
(SQLSTATE RV429) they wait as long as its hint says, then carry on. Every task counts what
happened, so a scenario can report accepted, throttled and failed statements.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import anyio
import asyncpg

from ruvectord.scenarios.collection import THROTTLED_SQLSTATE, CollectionSpec

_RETRY = re.compile(r"retry after ([0-9.]+) s")


@dataclass
class Counts:
    inserted: int = 0
    throttled: int = 0
    failed: int = 0
    searches: int = 0
    errors: list[str] = field(default_factory=list)


class Workload:
    def __init__(self, dsn: str, spec: CollectionSpec, *, vector: bool, seed: int = 1) -> None:
        self.dsn = dsn
        self.spec = spec
        self.vector = vector
        self.rng = random.Random(seed)
        self.counts = Counts()

    def _embedding(self) -> str:
        values = ",".join(f"{self.rng.random():.4f}" for _ in range(self.spec.dims))
        return f"[{values}]" if self.vector else f"{{{values}}}"

    async def writer(
        self,
        shards: list[int],
        *,
        rows_per_statement: int = 1,
        pause: float = 0.0,
        max_backoff: float = 10.0,
    ) -> None:
        """Insert into the given shards until cancelled."""
        cast = "vector" if self.vector else "real[]"
        q = f'"{self.spec.schema}"."{self.spec.table}"'
        sql = (
            f"INSERT INTO {q} (shard, embedding) SELECT $1, e::{cast} FROM unnest($2::text[]) AS e"
        )
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            while True:
                shard = self.rng.choice(shards)
                batch = [self._embedding() for _ in range(rows_per_statement)]
                try:
                    await conn.execute(sql, shard, batch)
                    self.counts.inserted += rows_per_statement
                except asyncpg.PostgresError as exc:
                    if exc.sqlstate == THROTTLED_SQLSTATE:
                        self.counts.throttled += 1
                        m = _RETRY.search(getattr(exc, "hint", "") or "")
                        await anyio.sleep(min(max_backoff, float(m.group(1)) if m else 1.0))
                        continue
                    self.counts.failed += 1
                    self.counts.errors.append(str(exc))
                    await anyio.sleep(0.5)
                if pause:
                    await anyio.sleep(pause)
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close(timeout=5)

    async def reader(
        self, shards: list[int], *, pause: float = 0.05, everywhere: bool = False
    ) -> None:
        """Nearest-neighbour searches (by the vector index where pgvector exists): in one
        shard at a time, or `everywhere`, over the whole collection (every partition)."""
        q = f'"{self.spec.schema}"."{self.spec.table}"'
        where = "$1::int IS NOT NULL" if everywhere else "shard = $1"
        if self.vector:
            sql = f"SELECT id FROM {q} WHERE {where} ORDER BY embedding <-> $2::vector LIMIT 5"
        else:
            sql = f"SELECT id FROM {q} WHERE {where} AND $2::text IS NOT NULL LIMIT 5"
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            while True:
                await conn.fetch(sql, self.rng.choice(shards), self._embedding())
                self.counts.searches += 1
                await anyio.sleep(pause)
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close(timeout=5)
