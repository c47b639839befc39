"""A real Prometheus (Debian's package) scrapes a real daemon process through an injected
hotspot, with deploy/prometheus/ruvectord.rules.yml loaded, and the Grafana dashboard's queries
run against what it collected.

Prometheus listens on 127.0.0.1 only, on a free port, with its storage in the test's temporary
directory; it scrapes and evaluates every second. The rules are the shipped file with every
`for:` set to HOLD and every range window to WINDOW (`shorten_rules`), so what takes half an
hour in production takes seconds here; value thresholds are unchanged.

1. healing.enabled: false; the daemon also watches `ghost`, a table that does not exist.
   A burst of writes on one partition: the integrity and healing series arrive,
   RuVectorProlongedDegradation fires for the collection (degraded, no attempt),
   RuVectorHealingDisabled for the acting daemon and RuVectorSampleErrors for ghost.
2. The burst ends: the collection recovers and RuVectorProlongedDegradation clears.
3. SIGHUP with healing enabled, a second burst: throttle_ingestion is attempted and verified,
   so the healing counters, the throttle level and the time to recovery carry real values.
4. Every dashboard query (variables filled in as Grafana would) parses and returns data,
   every rule evaluated without error, and once all is calm only ghost's alert is firing.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc
import pytest
import yaml

from ruvectord.scenarios.collection import CollectionSpec, create_collection
from ruvectord.scenarios.workload import Workload
from tests.helpers import connect, free_port
from tests.prometheus.support import (
    INSTALL,
    RULES,
    load_dashboard,
    load_rules,
    queries,
    shorten_rules,
    substitute,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None, reason=f"needs prometheus on PATH; {INSTALL}"
    ),
]

SPEC = CollectionSpec(partitions=8, rows_per_partition=20)
JOB = "ruvectord-scrape-test"  # the rules select jobs named *ruvectord*
HOLD, WINDOW = "3s", "10s"
T = TypeVar("T")


def _fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body: bytes = resp.read()
            return resp.status, body
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


@dataclass
class Prometheus:
    base: str

    async def api(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        status, body = await anyio.to_thread.run_sync(_fetch, url)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {}  # not the API's JSON: the assertion below shows what came instead
        assert status == 200 and answer.get("status") == "success", (url, status, body[:500])
        return answer["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (await self.api("/api/v1/query", query=expr))["result"]
        return result

    async def value(self, expr: str) -> float | None:
        """The value of a query that yields one series, None while it yields none."""
        result = await self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    async def alerts(self, state: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self.api("/api/v1/alerts"))["alerts"]
        return [a for a in found if state in (None, a["state"])]

    async def alert(self, name: str, collection: str, state: str) -> dict[str, Any] | None:
        for a in await self.alerts(state):
            if a["labels"]["alertname"] == name and a["labels"].get("collection") == collection:
                return a
        return None


async def until(what: str, check: Callable[[], Awaitable[T | None]], limit: float) -> T:
    """Poll `check` (Prometheus answers over HTTP: nothing to wait on) until it returns a value."""
    with anyio.move_on_after(limit):
        while (found := await check()) is None:  # noqa: ASYNC110
            await anyio.sleep(0.5)
        return found
    raise AssertionError(f"not within {limit:g} s: {what}")


@asynccontextmanager
async def _process(cmd: list[str], log: Path) -> AsyncIterator[anyio.abc.Process]:
    out = await anyio.to_thread.run_sync(lambda: log.open("ab"))
    try:
        async with await anyio.open_process(cmd, stdout=out, stderr=subprocess.STDOUT) as proc:
            try:
                yield proc
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    with anyio.move_on_after(15) as waited:
                        await proc.wait()
                    if waited.cancelled_caught:
                        proc.kill()
                        await proc.wait()
    finally:
        await anyio.to_thread.run_sync(out.close)


def _daemon_config(tmp: Path, port: int, *, healing: bool) -> str:
    return yaml.safe_dump(
        {
            "daemon": {
                "state_directory": str(tmp / "state"),
                "node_name": "scrape-test",
                "shutdown_timeout_seconds": 5,
            },
            "metrics": {"listen_address": f"127.0.0.1:{port}"},
            "logging": {"format": "json"},
            "integrity": {
                "sample_interval_seconds": 0.5,
                "degrade_samples": 1,
                "cooldown_seconds": 0,
                "recovery_hold_seconds": 1,
                "budgets": {"max_queue": 8},
            },
            "healing": {
                "enabled": healing,
                "min_healing_interval_seconds": 0,
                "max_attempts_per_window": 100000,
                "ineffective_after": 0,
                "settle_seconds": 1,
                # let go in three 1 s steps: the test waits for the throttle to be gone
                "throttle": {"retry_after_seconds": 0.2, "lift_hold_seconds": 1},
            },
            "collections": [
                {"name": "items", "table": "public.items", "vector_column": "embedding"},
                {"name": "ghost", "table": "public.ghost", "vector_column": "embedding"},
            ],
        }
    )


def _prometheus_config(tmp: Path, target: str) -> str:
    return yaml.safe_dump(
        {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(tmp / "ruvectord.rules.yml")],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
        }
    )


@asynccontextmanager
async def prometheus(tmp: Path, target: str) -> AsyncIterator[Prometheus]:
    rules = shorten_rules(await anyio.Path(RULES).read_text(), hold=HOLD, window=WINDOW)
    await anyio.Path(tmp / "ruvectord.rules.yml").write_text(rules)
    await anyio.Path(tmp / "prometheus.yml").write_text(_prometheus_config(tmp, target))
    port = free_port()
    cmd = [
        "prometheus",
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    async with _process(cmd, tmp / "prometheus.log") as proc:
        base = f"http://127.0.0.1:{port}"

        async def ready() -> bool | None:
            assert proc.returncode is None, "prometheus exited; see prometheus.log"
            status, _ = await anyio.to_thread.run_sync(_fetch, f"{base}/-/ready")
            return True if status == 200 else None

        await until("prometheus is ready", ready, 30)
        yield Prometheus(base)


@asynccontextmanager
async def hot_writers(dsn: str, vector: bool, n: int = 6) -> AsyncIterator[Workload]:
    """A burst of writes on one partition, as the demo and the chaos tests inject it."""
    work = Workload(dsn, SPEC, vector=vector)
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(lambda: work.writer([3], rows_per_statement=10))
        yield work
        tg.cancel_scope.cancel()


def _data(result: list[dict[str, Any]]) -> list[float]:
    values = [v for r in result for v in ([r["value"]] if "value" in r else r["values"])]
    return [float(v[1]) for v in values]


async def _run(dsn: str, tmp: Path, daemon_log: Path) -> None:
    started = time.monotonic()
    conn = await connect(dsn)
    try:
        vector = await create_collection(conn, SPEC)
    finally:
        await conn.close()
    port = free_port()
    cfg = anyio.Path(tmp / "ruvectord.yaml")
    await cfg.write_text(_daemon_config(tmp, port, healing=False))
    cmd = [sys.executable, "-m", "ruvectord.cli", "run", "-c", str(cfg), "--dsn", dsn]
    sel = f'job="{JOB}", collection="items"'
    async with (
        _process(cmd, daemon_log) as daemon,
        prometheus(tmp, f"127.0.0.1:{port}") as prom,
    ):
        # ---- 1. the series arrive; with healing disabled, a hotspot is prolonged degradation
        await until(
            "lambda_cut of items in Prometheus",
            lambda: prom.value(f"ruvector_integrity_lambda_cut{{{sel}}}"),
            60,
        )
        strategies = await prom.query(f"ruvector_healing_attempts_total{{{sel}}}")
        assert strategies and _data(strategies) == [0.0] * len(strategies), strategies
        async with hot_writers(dsn, vector):

            async def degraded_alerts() -> dict[str, dict[str, Any]] | None:
                found = {
                    "prolonged": await prom.alert(
                        "RuVectorProlongedDegradation", "items", "firing"
                    ),
                    "disabled": await prom.alert("RuVectorHealingDisabled", "items", "firing"),
                    "errors": await prom.alert("RuVectorSampleErrors", "ghost", "firing"),
                }
                if any(a is None for a in found.values()):
                    return None
                return {k: a for k, a in found.items() if a is not None}

            fired = await until("the degradation alerts fire", degraded_alerts, 45)
            prolonged = fired["prolonged"]
            assert prolonged["labels"] == {
                "alertname": "RuVectorProlongedDegradation",
                "job": JOB,
                "collection": "items",
                "severity": "critical",
            }
            assert "`ruvectord status items`" in prolonged["annotations"]["description"]
            assert float(prolonged["value"]) in (1.0, 2.0)
            assert await prom.value(f"max(ruvector_integrity_state{{{sel}}})") in (1.0, 2.0)
            assert await prom.value(f"sum(ruvector_healing_attempts_total{{{sel}}})") == 0.0
            assert await prom.value(f"ruvector_healing_enabled{{{sel}}}") == 0.0
            assert fired["disabled"]["labels"]["instance"] == f"127.0.0.1:{port}"
            assert fired["errors"]["labels"]["reason"] == "collection"

        # ---- 2. the burst ends: integrity recovers and the alert clears
        async def cleared() -> bool | None:
            if await prom.value(f"ruvector_integrity_state{{{sel}}}") != 0.0:
                return None
            gone = await prom.alert("RuVectorProlongedDegradation", "items", "firing") is None
            return True if gone else None

        await until("RuVectorProlongedDegradation clears after recovery", cleared, 45)
        assert await prom.alert("RuVectorProlongedDegradation", "items", "pending") is None

        # ---- 3. healing on (SIGHUP), a second burst: an attempt, verified
        await cfg.write_text(_daemon_config(tmp, port, healing=True))
        daemon.send_signal(signal.SIGHUP)
        await until(
            "healing enabled in Prometheus",
            lambda: prom.value(f"ruvector_healing_enabled{{{sel}}} == 1"),
            30,
        )
        async with hot_writers(dsn, vector):
            await until(
                "a verified healing in Prometheus",
                lambda: prom.value(f"sum(ruvector_healing_success_total{{{sel}}}) >= 1"),
                60,
            )

        async def calm() -> bool | None:
            state = await prom.value(f"ruvector_integrity_state{{{sel}}}")
            throttle = await prom.value(f"max(ruvector_healing_throttle_pct{{{sel}}})")
            return True if (state, throttle) == (0.0, 0.0) else None

        await until("recovery with the throttle lifted", calm, 45)
        throttled = await prom.value(
            f"max(max_over_time(ruvector_healing_throttle_pct{{{sel}}}[5m]))"
        )
        assert throttled is not None and throttled > 0, "no throttle level was ever scraped"
        ttr = await prom.value(f"ruvector_healing_time_to_recovery_seconds{{{sel}}}")
        assert ttr is not None and ttr > 0
        ttv = await prom.value(f"ruvector_healing_time_to_verification_seconds{{{sel}}}")
        assert ttv is not None and ttv > 0

        # ---- 4. the dashboard's queries, as Grafana sends them, all return data
        board = await anyio.to_thread.run_sync(load_dashboard)
        now = time.time()
        values = {
            "job": JOB,
            "collection": ".*",  # "All"
            "__rate_interval": "5s",
            "__range": f"{math.ceil(time.monotonic() - started)}s",
        }
        empty = []
        span = {"start": str(now - 30), "end": str(now), "step": "1"}
        for q in queries(board):
            expr = substitute(q.expr, values)
            # an instant query for each (it parses: else `api` fails), and a range query as
            # Grafana sends it for a time-series target; each must hold a number, not only NaN
            results = {"query": await prom.query(expr)}
            if not q.instant:
                results["query_range"] = (
                    await prom.api("/api/v1/query_range", query=expr, **span)
                )["result"]
            for how, result in results.items():
                if not any(not math.isnan(v) for v in _data(result)):
                    empty.append(f"{q.panel} [{q.ref_id}] by {how}: {expr}")
        assert empty == [], "dashboard queries without data:\n" + "\n".join(empty)

        groups = (await prom.api("/api/v1/rules"))["groups"]
        health = {
            r["name"]: (r["health"], r.get("lastError", "")) for g in groups for r in g["rules"]
        }
        assert set(health) == {r["alert"] for r in await anyio.to_thread.run_sync(load_rules)}
        assert {h for h, _ in health.values()} == {"ok"}, health

        async def only_ghost() -> bool | None:
            firing = {
                (a["labels"]["alertname"], a["labels"].get("collection"))
                for a in await prom.alerts("firing")
            }
            return True if firing == {("RuVectorSampleErrors", "ghost")} else None

        await until("only ghost's sample errors fire once all is calm", only_ghost, 20)


async def test_prometheus_scrapes_the_daemon_fires_and_clears_and_serves_the_dashboard(
    dsn: str, tmp_path: Path
) -> None:
    log = tmp_path / "daemon.log"
    try:
        await _run(dsn, tmp_path, log)
    except (AssertionError, ExceptionGroup) as exc:  # a group when raised under the writers
        text = await anyio.Path(log).read_text() if await anyio.Path(log).exists() else ""
        tail = "\n".join(text.splitlines()[-30:])
        why = "\n".join(_messages(exc))
        raise AssertionError(f"{why}\n--- the daemon's log, last lines:\n{tail}") from exc


def _messages(exc: BaseException) -> list[str]:
    if isinstance(exc, BaseExceptionGroup):
        return [m for sub in exc.exceptions for m in _messages(sub)]
    return [f"{type(exc).__name__}: {exc}"]
