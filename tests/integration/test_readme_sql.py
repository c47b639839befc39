"""The README's "Operating from SQL" block -- the design's own examples -- run as written,
statement by statement, by an operator against a real daemon running as the least-privilege
role from deploy/sql/roles.sql."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import asyncpg
import pytest
import yaml

from ruvectord.scenarios.collection import CollectionSpec
from tests.chaos.test_chaos import _until, daemon
from tests.conftest import PgServer
from tests.roles import parties

README = Path(__file__).parents[2] / "README.md"
SPEC = CollectionSpec(table="embeddings", partitions=4, rows_per_partition=5, index=False)


def _statements() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Operating from SQL") :]
    block = re.search(r"```sql\n(.*?)```", section, re.S)
    assert block is not None
    body = "\n".join(
        line for line in block.group(1).splitlines() if not line.lstrip().startswith("--")
    )
    return [s.strip() for s in body.split(";") if s.strip()]


@pytest.mark.slow
async def test_the_design_examples_work_as_written(pg_server: PgServer, tmp_path: Path) -> None:
    statements = await anyio.to_thread.run_sync(_statements)
    assert len(statements) == 9
    async with parties(pg_server, SPEC) as p:
        cfg = tmp_path / "ruvectord.yaml"
        await anyio.Path(cfg).write_text(
            yaml.safe_dump(
                {
                    "database": {"dsn": p.as_(p.daemon)},
                    "daemon": {"state_directory": str(tmp_path / "state")},
                    "metrics": {"enabled": False},
                    "logging": {"format": "json"},
                    "integrity": {"sample_interval_seconds": 0.5},
                    "collections": [
                        {
                            "name": "embeddings",
                            "table": "public.embeddings",
                            "vector_column": "embedding",
                        }
                    ],
                }
            )
        )
        admin = await asyncpg.connect(p.dsn)
        op = await asyncpg.connect(p.as_(p.operator))
        try:
            async with daemon(cfg, p.dsn, tmp_path / "d.log"):
                await _until(
                    admin,
                    "SELECT ruvector.actor_alive() AND EXISTS (SELECT 1 FROM ruvector.strategies)",
                    60,
                )
                # the actions the examples name: 123 pending approval, and one to roll back
                cid = await admin.fetchval(
                    "SELECT id FROM ruvector.collections WHERE name = 'embeddings'"
                )
                seeded: list[tuple[int, str, str, dict[str, list[str]]]] = [
                    (123, "rebalance_partitions", "pending_approval", {}),
                    (124, "rebalance_partitions", "succeeded", {"legs": [], "batches": []}),
                ]
                for action, strategy, status, data in seeded:
                    await admin.execute(
                        "INSERT INTO ruvector.healing_actions (id, collection_id, problem_class,"
                        " problem_details, strategy_name, status, reversible, integrity_state,"
                        " initial_lambda, rollback_data, actor, created_at, updated_at,"
                        " expires_at) OVERRIDING SYSTEM VALUE VALUES ($1, $2,"
                        ' \'HotspotCongestion\', \'{"partition_ids": [], "partition_names": [],'
                        " \"load_ratio\": 3.0}', $3, $4, true, 'stress', 0.4, $5, 'node-a',"
                        " now(), now(), now() + interval '1 hour')",
                        action,
                        cid,
                        strategy,
                        status,
                        json.dumps(data),
                    )
                for sql in statements:
                    rows = await op.fetch(sql)
                    value = rows[0][0] if rows and len(rows[0]) == 1 else None
                    if sql.startswith("SELECT ruvector_healing_"):
                        # a request: the acting daemon carries it out
                        outcome = json.loads(
                            await op.fetchval("SELECT ruvector_healing_wait($1, 60)", value)
                        )
                        assert outcome["status"] == "done", (sql, outcome)
                assert (
                    await admin.fetchval(
                        "SELECT status FROM ruvector.healing_actions WHERE id = 123"
                    )
                    == "aborted"
                )
                assert (
                    await admin.fetchval(
                        "SELECT status FROM ruvector.healing_actions WHERE id = 124"
                    )
                    == "rolled_back"
                )
        finally:
            await op.close()
            await admin.close()
