"""Builders shared by the integration tests: configs, runtimes and monitors on a real database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ruvectord.audit import Signer
from ruvectord.clock import ManualClock
from ruvectord.config import Config
from ruvectord.integrity.monitor import CollectionMonitor, Cycle, Healer, Runtime
from ruvectord.metrics import Metrics
from ruvectord.postgres.pool import Database, init_connection
from ruvectord.postgres.sampler import Sampler
from ruvectord.postgres.store import Store
from ruvectord.scenarios.collection import (
    CollectionSpec,
    create_collection,
    flush_stats,
    hot,
    insert_rows,
)


def make_config(
    dsn: str,
    state_dir: Path,
    spec: CollectionSpec | None = None,
    **sections: Any,
) -> Config:
    spec = spec or CollectionSpec()
    data: dict[str, Any] = {
        "database": {"dsn": dsn, "connect_retries": 1, "statement_timeout_seconds": 10},
        "daemon": {"state_directory": str(state_dir), "node_name": "test-node"},
        "metrics": {"listen_address": "127.0.0.1:0"},
        "integrity": {"sample_interval_seconds": 1, "lambda2_enabled": True},
        "collections": [
            {"name": spec.table, "table": spec.qualified, "vector_column": "embedding"}
        ],
    }
    for section, values in sections.items():
        if isinstance(values, list):  # e.g. collections=[...]: replaced, not merged
            data[section] = values
            continue
        merged = dict(data.get(section, {}))
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        data[section] = merged
    return Config.model_validate(data)


@dataclass
class Harness:
    config: Config
    db: Database
    store: Store
    runtime: Runtime
    clock: ManualClock
    metrics: Metrics
    ids: dict[str, int]

    def monitor(self, name: str, healer: Healer | None = None) -> CollectionMonitor:
        c = self.config.collection(name)
        return CollectionMonitor(self.runtime, c, self.ids[name], Sampler(self.db, c), healer)


async def harness(db: Database, config: Config, clock: ManualClock | None = None) -> Harness:
    clock = clock or ManualClock()
    metrics = Metrics()
    signer = Signer(Ed25519PrivateKey.generate())
    store = Store(db, signer)
    await store.register_key(signer, "test")
    ids = await store.sync_collections(config)
    rt = Runtime(config, clock, metrics, store)
    return Harness(config, db, store, rt, clock, metrics, ids)


async def hot_sample(
    conn: asyncpg.Connection,
    h: Harness,
    monitor: CollectionMonitor,
    spec: CollectionSpec,
    *,
    shard: int = 3,
    background: int = 5,
) -> Cycle:
    """One second of a write burst on one partition, made visible, then one sample."""
    await insert_rows(conn, spec, hot(spec, shard, 600, background=background))
    await flush_stats(conn)
    h.clock.advance(1)
    return await monitor.cycle()


@asynccontextmanager
async def collection(dsn: str, spec: CollectionSpec) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a database holding a freshly created collection."""
    conn = await connect(dsn)
    try:
        await create_collection(conn, spec)
        yield conn
    finally:
        await conn.close()


async def connect(dsn: str) -> asyncpg.Connection:
    """A plain connection, with json/jsonb decoded as the daemon's pool does."""
    conn = await asyncpg.connect(dsn, timeout=10)
    await init_connection(conn)
    return conn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


ROOT = Path(__file__).parents[1]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment a CLI test runs in: none of the runner's RUVECTORD_* or PG* variables
    (they would be configuration), times in UTC (tables show local times, with their zone)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUVECTORD_", "PG"))}
    return {**env, "TZ": "UTC", **extra}


async def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`ruvectord ARGS` as a user would run it; a traceback in its output fails the test."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ruvectord.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env=cli_env(**env),
        )

    done = await anyio.to_thread.run_sync(run)
    assert "Traceback" not in done.stderr, done.stderr
    return done
