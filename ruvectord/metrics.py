"""Every Prometheus metric in one place, and the small HTTP endpoint that serves them.

Healing metric names are exactly the self-healing design's; the sensor's are
`ruvector_integrity_*`. Each daemon owns its own registry, so several can live in one test
process. The endpoint serves `/metrics` for Prometheus and `/status` (and `/health`) for the
last decision of every collection as JSON; it is an attack surface for every local user, so it
bounds its connections before accept(), drops each one after a deadline and never lets an error
end the daemon (see `Endpoint`). h11 parses and writes HTTP/1.1 under a small anyio accept loop:
aiohttp, uvicorn and hypercorn all accept through asyncio's `create_server`, which accepts every
pending connection (a file descriptor each) before any limit of theirs applies.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import anyio
import h11
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup
from anyio.streams.stapled import MultiListener
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
from ruvectord.errors import EndpointError
from ruvectord.logs import get_logger

log = get_logger("ruvectord.metrics")

STATE_VALUE = {"normal": 0, "stress": 1, "critical": 2}
# why a sample failed: the collection as configured (a missing table, a bad column), the
# database (unreachable, an SQL error), the sample's time bound, or a bug of ours
SAMPLE_ERROR_REASONS = ("collection", "database", "timeout", "internal")
OPERATIONS = ("insert", "bulk_insert")  # what a throttle turns away


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
        self.http_dropped = Counter(
            "ruvectord_http_connections_dropped_total",
            "Metrics-endpoint connections closed unanswered: past the deadline, or evicted "
            "to make room while every slot was taken",
            ["reason"],
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
        self.healing_ttv = Gauge(
            "ruvector_healing_time_to_verification_seconds",
            "Mean time from the start of a degradation to a verified healing action, over the "
            "learning window (NaN: none yet)",
            ["collection"],
            registry=r,
        )
        self.healing_ttr = Gauge(
            "ruvector_healing_time_to_recovery_seconds",
            "Mean time from leaving normal to the return to normal (the recorded transitions), "
            "over the learning window (NaN: none yet)",
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

        # ---- what is held in force, read from the database with every sample (any daemon)
        self.last_sample = Gauge(
            "ruvector_integrity_last_sample_timestamp_seconds",
            "Unix time of the collection's last good sample",
            ["collection"],
            registry=r,
        )
        self.throttle_pct = Gauge(
            "ruvector_healing_throttle_pct",
            "Share of operations turned away by a throttle in force (0 = none)",
            ["collection", "operation"],
            registry=r,
        )
        self.throttle_expiry = Gauge(
            "ruvector_healing_throttle_lease_expiry_timestamp_seconds",
            "Unix time a throttle's lease runs out unless the acting daemon renews it",
            ["collection", "operation"],
            registry=r,
        )
        self.pending_approvals = Gauge(
            "ruvector_healing_pending_approvals",
            "Healing actions waiting for a human's approval",
            ["collection"],
            registry=r,
        )
        self.oldest_pending = Gauge(
            "ruvector_healing_oldest_pending_approval_seconds",
            "Age of the oldest action waiting for approval (0 = none)",
            ["collection"],
            registry=r,
        )
        self.approval_ttl = Gauge(
            "ruvector_healing_approval_ttl_seconds",
            "healing.approval_ttl_seconds: a pending approval expires after this",
            registry=r,
        )
        # ---- tenants: the top N of a multi-tenant collection, the rest as tenant="(other)"
        self.tenant_lambda_cut = Gauge(
            "ruvector_integrity_tenant_lambda_cut",
            "Normalised minimum cut of a tenant's own contracted graph",
            ["collection", "tenant"],
            registry=r,
        )
        self.tenant_state = Gauge(
            "ruvector_integrity_tenant_state",
            "A tenant's integrity state: 0 normal, 1 stress, 2 critical",
            ["collection", "tenant"],
            registry=r,
        )
        self.tenant_load = Gauge(
            "ruvector_integrity_tenant_operations_per_second",
            "A tenant's smoothed operations per second over its partitions (its rank's basis)",
            ["collection", "tenant"],
            registry=r,
        )
        self.tenant_throttle_pct = Gauge(
            "ruvector_healing_tenant_throttle_pct",
            "Share of a tenant's operations turned away by a throttle in force on it (0 = none)",
            ["collection", "tenant", "operation"],
            registry=r,
        )
        self._tenants: dict[str, set[str]] = {}  # collection -> tenants with series

    def set_node(self, node: str) -> None:
        self.info.info({"version": __version__, "node": node})

    def declare_collection(self, collection: str, strategies: list[str]) -> None:
        """Every per-collection series exists from the start, so an alert or a graph never
        sees a gap (or an absent series) before the first sample or the first healing."""
        for reason in SAMPLE_ERROR_REASONS:
            self.sample_errors.labels(collection, reason)
        for strategy in strategies:
            self.healing_attempts.labels(collection, strategy)
            self.healing_success.labels(collection, strategy)
            self.rollback_failures.labels(collection, strategy)
        for gauge in (
            self.healing_active,
            self.healing_cooldown,
            self.pending_approvals,
            self.oldest_pending,
        ):
            gauge.labels(collection).set(0)
        # not known until the loop has read what is recorded (NaN, not a misleading 0)
        for gauge in (
            self.healing_success_rate,
            self.healing_avg_improvement,
            self.healing_ttv,
            self.healing_ttr,
        ):
            gauge.labels(collection).set(math.nan)
        for op in OPERATIONS:
            self.throttle_pct.labels(collection, op).set(0)
            self.throttle_expiry.labels(collection, op).set(0)

    def forget_collection(self, collection: str, strategies: list[str]) -> None:
        """Drop every series of a collection that left the configuration (a stale series
        would keep an alert firing for something no longer watched)."""
        singles: tuple[Any, ...] = (
            self.lambda_cut,
            self.lambda_cut_raw,
            self.lambda2,
            self.state,
            self.witness_edges,
            self.sample_duration,
            self.healing_active,
            self.healing_cooldown,
            self.healing_success_rate,
            self.healing_avg_improvement,
            self.healing_ttv,
            self.healing_ttr,
            self.healing_enabled,
            self.last_sample,
            self.pending_approvals,
            self.oldest_pending,
        )
        keys: list[tuple[Any, tuple[str, ...]]] = [(m, ()) for m in singles]
        keys += [(m, (op,)) for m in (self.throttle_pct, self.throttle_expiry) for op in OPERATIONS]
        keys += [(self.sample_errors, (reason,)) for reason in SAMPLE_ERROR_REASONS]
        keys += [(self.transitions, (a, b)) for a in STATE_VALUE for b in STATE_VALUE if a != b]
        keys += [
            (m, (strategy,))
            for m in (
                self.healing_attempts,
                self.healing_success,
                self.healing_duration,
                self.rollback_failures,
            )
            for strategy in strategies
        ]
        for metric, rest in keys:
            with contextlib.suppress(KeyError):
                metric.remove(collection, *rest)
        for tenant in self.tenants(collection):
            self.forget_tenant(collection, tenant)
        self._tenants.pop(collection, None)

    def set_tenant(
        self, collection: str, tenant: str, lambda_cut: float, state: str, load: float
    ) -> None:
        self._tenants.setdefault(collection, set()).add(tenant)
        self.tenant_lambda_cut.labels(collection, tenant).set(lambda_cut)
        self.tenant_state.labels(collection, tenant).set(STATE_VALUE[state])
        self.tenant_load.labels(collection, tenant).set(load)

    def set_tenant_throttle(self, collection: str, tenant: str, operation: str, pct: int) -> None:
        self._tenants.setdefault(collection, set()).add(tenant)
        self.tenant_throttle_pct.labels(collection, tenant, operation).set(pct)

    def tenants(self, collection: str) -> set[str]:
        return set(self._tenants.get(collection, ()))

    def forget_tenant(self, collection: str, tenant: str) -> None:
        """A tenant left the top N (or the collection went): its series go too."""
        self._tenants.get(collection, set()).discard(tenant)
        for gauge in (self.tenant_lambda_cut, self.tenant_state, self.tenant_load):
            with contextlib.suppress(KeyError):
                gauge.remove(collection, tenant)
        for op in OPERATIONS:
            with contextlib.suppress(KeyError):
                self.tenant_throttle_pct.remove(collection, tenant, op)

    def render(self) -> bytes:
        return generate_latest(self.registry)


# --------------------------------------------------------------------------- HTTP endpoint

MAX_CONNECTIONS = 32
DEADLINE_SECONDS = 5.0
MAX_REQUEST_BYTES = 8192
_ACCEPT_RETRY_SECONDS = 0.5

# called as status() for /status and /health, status(graphs=True) for /status?graph=1: each
# collection's latest contracted graph too, from memory (the database keeps it at transitions
# and periodically only)
Status = Callable[..., dict[str, Any]]


async def open_endpoint(host: str, port: int) -> Endpoint:
    """Bind the metrics address, or raise `EndpointError` naming it and the config key."""
    try:
        listener = await anyio.create_tcp_listener(
            local_host=host, local_port=port, reuse_port=False
        )
    except OSError as exc:
        why = {
            errno.EADDRINUSE: "address already in use (another process listens there: "
            "stop it or choose another port)",
            errno.EACCES: "permission denied (ports below 1024 need privileges)",
            errno.EADDRNOTAVAIL: "no such address on this host",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        raise EndpointError(f"metrics.listen_address {_address(host, port)}: {why}") from None
    return Endpoint(listener)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(eq=False)
class _Connection:
    stream: SocketStream
    scope: anyio.CancelScope
    answered: bool = False


class Endpoint:
    """`/metrics`, `/status` and `/health` on a bound listener, bounded and deadline-guarded.

    At most `max_connections` sockets are open at once. A slot is taken before accept(); when
    none is free, the oldest connection that has not yet sent its request (or has been
    answered and is only lingering) is closed to make room, and the new one is accepted only
    then. Connections being answered are never evicted: if all slots are busy answering,
    further connections wait in the kernel's backlog without costing a file descriptor. Every
    connection is dropped `deadline` seconds after it was accepted, whatever it has sent.
    """

    def __init__(
        self,
        listener: MultiListener[SocketStream],
        *,
        max_connections: int = MAX_CONNECTIONS,
        deadline: float = DEADLINE_SECONDS,
    ) -> None:
        self.listener = listener
        self.deadline = deadline
        self.limiter = anyio.CapacityLimiter(max_connections)
        # connections that may be evicted, oldest first (a dict keeps insertion order)
        self._evictable: dict[_Connection, None] = {}

    @property
    def port(self) -> int:
        port: int = self.listener.extra(SocketAttribute.local_port)
        return port

    @property
    def open_connections(self) -> int:
        return int(self.limiter.borrowed_tokens)

    async def aclose(self) -> None:
        await self.listener.aclose()

    async def serve(self, metrics: Metrics, status: Status) -> None:
        """Answer requests until cancelled; an error in one connection never ends the loop."""
        host, port = self._local()
        log.info("metrics_listening", address=_address(host, port))
        async with anyio.create_task_group() as tg:
            for listener in self.listener.listeners:
                assert isinstance(listener, SocketListener)
                tg.start_soon(self._accept_loop, listener, tg, metrics, status)

    def _local(self) -> tuple[str, int]:
        addr = self.listener.listeners[0].extra(SocketAttribute.local_address)
        return (str(addr[0]), int(addr[1])) if isinstance(addr, tuple) else (str(addr), 0)

    async def _accept_loop(
        self, listener: SocketListener, tg: TaskGroup, metrics: Metrics, status: Status
    ) -> None:
        raw = listener.extra(SocketAttribute.raw_socket)
        while True:
            # a connection is pending in the kernel: only now is a slot worth freeing
            await anyio.wait_readable(raw)
            token = object()
            if self.limiter.available_tokens < 1 and self._evictable:
                oldest = next(iter(self._evictable))
                del self._evictable[oldest]
                oldest.scope.cancel()
            await self.limiter.acquire_on_behalf_of(token)
            try:
                stream = await listener.accept()
            except OSError as exc:
                # EMFILE and friends: the rest of the process ran out; back off, keep serving
                self.limiter.release_on_behalf_of(token)
                log.warning("metrics_accept_failed", error=f"{type(exc).__name__}: {exc}")
                await anyio.sleep(_ACCEPT_RETRY_SECONDS)
                continue
            except BaseException:
                self.limiter.release_on_behalf_of(token)
                raise
            tg.start_soon(self._serve_one, stream, token, metrics, status)

    async def _serve_one(
        self, stream: SocketStream, token: object, metrics: Metrics, status: Status
    ) -> None:
        c = _Connection(stream, anyio.CancelScope(deadline=anyio.current_time() + self.deadline))
        self._evictable[c] = None
        try:
            with c.scope:
                await self._exchange(c, metrics, status)
            if c.scope.cancelled_caught and not c.answered:
                reason = "deadline" if anyio.current_time() >= c.scope.deadline else "evicted"
                metrics.http_dropped.labels(reason).inc()
                log.debug("metrics_connection_dropped", reason=reason)
        except Exception as exc:
            log.warning("metrics_request_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._evictable.pop(c, None)
            await anyio.aclose_forcefully(stream)
            self.limiter.release_on_behalf_of(token)

    async def _exchange(self, c: _Connection, metrics: Metrics, status: Status) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        request: h11.Request | None = None
        try:
            request = await _next_request(conn, c.stream)
            if request is None:
                return  # the client went away without asking
            code, ctype, body = _route(request, metrics, status)
        except h11.RemoteProtocolError as exc:
            code, ctype, body = exc.error_status_hint, "text/plain", b"bad request\n"
        self._evictable.pop(c, None)  # being answered: not to be evicted
        try:
            out = conn.send(
                h11.Response(
                    status_code=code,
                    reason=HTTPStatus(code).phrase.encode(),
                    headers=[
                        ("Content-Type", ctype),
                        ("Content-Length", str(len(body))),
                        ("Connection", "close"),
                    ],
                )
            )
            if request is None or request.method != b"HEAD":
                out = (out or b"") + (conn.send(h11.Data(data=body)) or b"")
            out = (out or b"") + (conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            return  # h11 refuses to answer this exchange at all: just close
        try:
            await c.stream.send(out)
            c.answered = True
            # Linger until the client has read the answer and hung up (or the deadline):
            # closing at once could discard what the kernel has not sent yet.
            await c.stream.send_eof()
            self._evictable[c] = None
            while True:
                await c.stream.receive(4096)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return


async def _next_request(conn: h11.Connection, stream: SocketStream) -> h11.Request | None:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive(4096)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                data = b""
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            return event
        return None  # ConnectionClosed, or PAUSED without a request


def _route(request: h11.Request, metrics: Metrics, status: Status) -> tuple[int, str, bytes]:
    method = request.method.decode("latin-1")
    path, _, query = request.target.decode("latin-1").partition("?")
    if method not in ("GET", "HEAD"):
        return 405, "text/plain", b"GET only\n"
    if path == "/metrics":
        return 200, CONTENT_TYPE_LATEST, metrics.render()
    if path in ("/status", "/health"):
        try:
            graphs = path == "/status" and "graph=1" in query.split("&")
            body = json.dumps(status(graphs=True) if graphs else status(), default=str).encode()
            body += b"\n"
        except Exception as exc:
            log.warning("status_failed", error=f"{type(exc).__name__}: {exc}")
            return 500, "text/plain", b"status unavailable; see the daemon's log\n"
        return 200, "application/json", body
    return 404, "text/plain", b"try /metrics or /status\n"
