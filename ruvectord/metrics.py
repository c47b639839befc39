"""Every Prometheus metric in one place, and the small HTTP endpoint that serves them.

Healing metric names are exactly the self-healing design's; the sensor's are
`ruvector_integrity_*`. Each daemon owns its own registry, so several can live in one test
process. The endpoint is a minimal HTTP/1.1 responder on anyio (no thread, no framework):
`/metrics` for Prometheus, `/status` for the last decision of every collection as JSON.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import SocketStream
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from ruvectord import __version__
from ruvectord.logs import get_logger

log = get_logger("ruvectord.metrics")

STATE_VALUE = {"normal": 0, "stress": 1, "critical": 2}


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.info = Info("ruvectord", "ruvectord build and node", registry=r)
        self.info.info({"version": __version__})
        self.up = Gauge("ruvectord_database_up", "1 when the database answers", registry=r)
        self.leader = Gauge(
            "ruvectord_actor",
            "1 when this daemon holds the actor lock and may execute healing actions",
            registry=r,
        )
        self.reloads = Counter(
            "ruvectord_config_reloads_total", "SIGHUP reloads by result", ["result"], registry=r
        )
        # ---- the sensor
        self.lambda_cut = Gauge(
            "ruvector_integrity_lambda_cut",
            "Normalised minimum cut of the contracted graph (1 = fully connected)",
            ["collection"],
            registry=r,
        )
        self.lambda_cut_raw = Gauge(
            "ruvector_integrity_lambda_cut_raw",
            "Minimum cut value over effective capacities, before normalisation",
            ["collection"],
            registry=r,
        )
        self.lambda2 = Gauge(
            "ruvector_integrity_lambda2",
            "Algebraic connectivity of the contracted graph (drift signal only)",
            ["collection"],
            registry=r,
        )
        self.state = Gauge(
            "ruvector_integrity_state",
            "Integrity state: 0 normal, 1 stress, 2 critical",
            ["collection"],
            registry=r,
        )
        self.witness_edges = Gauge(
            "ruvector_integrity_witness_edges",
            "Edges crossing the minimum cut",
            ["collection"],
            registry=r,
        )
        self.sample_duration = Histogram(
            "ruvector_integrity_sample_duration_seconds",
            "Time to sample Postgres and compute the integrity signal",
            ["collection"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.sample_errors = Counter(
            "ruvector_integrity_sample_errors_total",
            "Samples that failed (the collection is retried next interval)",
            ["collection", "reason"],
            registry=r,
        )
        self.transitions = Counter(
            "ruvector_integrity_transitions_total",
            "State changes",
            ["collection", "from_state", "to_state"],
            registry=r,
        )
        # ---- the actuator (names from the self-healing design)
        self.healing_attempts = Counter(
            "ruvector_healing_attempts_total",
            "Healing attempts",
            ["collection", "strategy"],
            registry=r,
        )
        self.healing_success = Counter(
            "ruvector_healing_success_total",
            "Verified healing attempts",
            ["collection", "strategy"],
            registry=r,
        )
        self.healing_duration = Histogram(
            "ruvector_healing_duration_seconds",
            "Duration of healing attempts, execute to verified or rolled back",
            ["collection", "strategy"],
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.healing_active = Gauge(
            "ruvector_healing_active", "1 while a healing action runs", ["collection"], registry=r
        )
        self.healing_cooldown = Gauge(
            "ruvector_healing_cooldown",
            "1 while healing waits for min_healing_interval",
            ["collection"],
            registry=r,
        )
        self.healing_success_rate = Gauge(
            "ruvector_healing_success_rate",
            "Verified attempts / attempts over the learning window",
            ["collection"],
            registry=r,
        )
        self.healing_avg_improvement = Gauge(
            "ruvector_healing_avg_improvement",
            "Mean relative lambda_cut improvement per attempt over the learning window",
            ["collection"],
            registry=r,
        )
        self.healing_ttr = Gauge(
            "ruvector_healing_time_to_recovery_seconds",
            "Mean time from degradation to a verified healing, over the learning window",
            ["collection"],
            registry=r,
        )
        self.healing_enabled = Gauge(
            "ruvector_healing_enabled", "1 when automatic healing is on", ["collection"], registry=r
        )
        self.rollback_failures = Counter(
            "ruvector_healing_rollback_failures_total",
            "Rollbacks that failed (a human must look)",
            ["collection", "strategy"],
            registry=r,
        )

    def set_node(self, node: str) -> None:
        self.info.info({"version": __version__, "node": node})

    def forget_collection(self, collection: str) -> None:
        for gauge in (
            self.lambda_cut,
            self.lambda_cut_raw,
            self.lambda2,
            self.state,
            self.witness_edges,
            self.healing_active,
            self.healing_cooldown,
            self.healing_success_rate,
            self.healing_avg_improvement,
            self.healing_ttr,
            self.healing_enabled,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(collection)

    def render(self) -> bytes:
        return generate_latest(self.registry)


# --------------------------------------------------------------------------- HTTP endpoint

_MAX_REQUEST = 8192


async def serve_http(
    metrics: Metrics,
    host: str,
    port: int,
    status: Callable[[], dict[str, Any]],
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve /metrics and /status until cancelled; reports the bound port when started."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)
    log.info("metrics_listening", address=f"{host}:{bound}")
    task_status.started(bound)

    async def handle(stream: SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(5):
                    request = b""
                    while b"\r\n\r\n" not in request and len(request) < _MAX_REQUEST:
                        request += await stream.receive(4096)
            except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return
            line = request.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split()
            method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
            path = path.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                code, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif path == "/metrics":
                code, ctype, body = "200 OK", CONTENT_TYPE_LATEST, metrics.render()
            elif path in ("/status", "/health"):
                code, ctype = "200 OK", "application/json"
                body = json.dumps(status(), default=str).encode() + b"\n"
            else:
                code, ctype, body = "404 Not Found", "text/plain", b"try /metrics or /status\n"
            head = (
                f"HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            try:
                await stream.send(head + (b"" if method == "HEAD" else body))
            except (anyio.BrokenResourceError, OSError):
                return

    await listener.serve(handle)
