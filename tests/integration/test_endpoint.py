"""The metrics endpoint on real sockets: bad clients, failing handlers and a process out of file
descriptors are logged and survived; the endpoint keeps answering."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ruvectord.metrics import Endpoint, Metrics, open_endpoint

ROOT = Path(__file__).parents[2]


class Served:
    def __init__(self, portal: BlockingPortal, endpoint: Endpoint, metrics: Metrics) -> None:
        self.portal = portal
        self.endpoint = endpoint
        self.metrics = metrics
        self.port = endpoint.port

    def get(self, path: str, method: str = "GET") -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                body: bytes = resp.read()
                return resp.status, body
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


def _status_that_fails_once() -> Any:
    calls = {"n": 0}

    def status() -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in the status callback")
        return {"collections": {}}

    return status


@pytest.fixture
def served() -> Iterator[Served]:
    metrics = Metrics()
    with start_blocking_portal() as portal:
        bound = portal.call(open_endpoint, "127.0.0.1", 0)
        endpoint = Endpoint(bound.listener, max_connections=4, deadline=1.0)
        future, scope = portal.start_task(_serve, endpoint, metrics, _status_that_fails_once())
        try:
            yield Served(portal, endpoint, metrics)
        finally:
            portal.call(scope.cancel)
            portal.call(endpoint.aclose)
        assert future.exception() is None or future.cancelled()


async def _serve(
    endpoint: Endpoint,
    metrics: Metrics,
    status: Any,
    *,
    task_status: anyio.abc.TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED,
) -> None:
    with anyio.CancelScope() as scope:
        task_status.started(scope)
        await endpoint.serve(metrics, status)


def test_errors_in_a_request_are_answered_and_serving_goes_on(served: Served) -> None:
    code, body = served.get("/status")
    assert (code, body) == (500, b"status unavailable; see the daemon's log\n")
    assert served.get("/status") == (200, b'{"collections": {}}\n')
    assert served.get("/health")[0] == 200
    assert served.get("/metrics", method="POST")[0] == 405
    assert served.get("/nope")[0] == 404
    assert served.get("/metrics", method="HEAD") == (200, b"")
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")  # e.g. a TLS client
        assert s.recv(100).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    code, body = served.get("/metrics")
    assert code == 200 and b"ruvectord_info" in body


def test_status_serves_the_latest_graphs_only_when_asked() -> None:
    def status(*, graphs: bool = False) -> dict[str, Any]:
        graph = {"nodes": [{"index": 0}], "edges": []} if graphs else None
        return {
            "collections": {"items": {"state": "normal", **({"graph": graph} if graph else {})}}
        }

    with start_blocking_portal() as portal:
        bound = portal.call(open_endpoint, "127.0.0.1", 0)
        endpoint = Endpoint(bound.listener, max_connections=4, deadline=1.0)
        _, scope = portal.start_task(_serve, endpoint, Metrics(), status)
        try:
            served = Served(portal, endpoint, Metrics())
            code, body = served.get("/status?graph=1")
            assert code == 200
            assert json.loads(body)["collections"]["items"]["graph"]["nodes"] == [{"index": 0}]
            for path in ("/status", "/health", "/health?graph=1", "/status?graph=0"):
                code, body = served.get(path)
                assert code == 200 and "graph" not in json.loads(body)["collections"]["items"]
        finally:
            portal.call(scope.cancel)
            portal.call(endpoint.aclose)


def test_a_slow_client_is_dropped_at_the_deadline(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        started = time.monotonic()
        assert s.recv(1) == b""
        took = time.monotonic() - started
    assert 0.9 <= took <= 2.5, took
    assert served.get("/metrics")[0] == 200


def test_idle_connections_are_evicted_for_new_ones_and_the_cap_holds(served: Served) -> None:
    held = [socket.create_connection(("127.0.0.1", served.port), timeout=5) for _ in range(40)]
    try:
        code, body = served.get("/metrics")  # answered at once, not after 40 deadlines
        assert code == 200
        assert served.endpoint.open_connections <= 4
        assert b'ruvectord_http_connections_dropped_total{reason="evicted"}' in body
    finally:
        for s in held:
            s.close()


# Serves an Endpoint in a process whose descriptor limit is nearly used up, so that accept()
# itself fails with EMFILE while the clients below are connected.
_STARVED = """
import json, os, resource, anyio
from ruvectord.logs import setup_logging
from ruvectord.metrics import Endpoint, Metrics, open_endpoint

async def main():
    setup_logging("info", "json")
    bound = await open_endpoint("127.0.0.1", 0)
    endpoint = Endpoint(bound.listener, max_connections=64, deadline=1.0)
    in_use = len(os.listdir("/proc/self/fd"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 6, hard))
    print(json.dumps({"port": endpoint.port}), flush=True)
    await endpoint.serve(Metrics(), lambda: {"ok": True})

anyio.run(main)
"""


def test_running_out_of_descriptors_is_logged_and_survived(tmp_path: Path) -> None:
    log = (tmp_path / "out.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", _STARVED],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    held: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(30)]
        time.sleep(1.5)  # accepts fail with EMFILE; the first ones pass their deadline
        assert proc.poll() is None
        for s in held:
            s.close()
        held = []
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, "the endpoint never recovered"
                time.sleep(0.2)
        assert proc.poll() is None
    finally:
        for s in held:
            s.close()
        proc.terminate()
        proc.wait(timeout=10)
        log.seek(0)
        stderr = log.read()
        log.close()
    out = proc.stdout.read() if proc.stdout else ""
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert "metrics_accept_failed" in events, (out, stderr)
    assert "Traceback" not in stderr, stderr


def test_open_endpoint_names_the_key_when_the_address_is_taken() -> None:
    from ruvectord.errors import EndpointError

    async def go(port: int) -> None:
        with pytest.raises(EndpointError) as exc:
            await open_endpoint("127.0.0.1", port)
        assert str(exc.value) == (
            f"metrics.listen_address 127.0.0.1:{port}: address already in use "
            "(another process listens there: stop it or choose another port)"
        )

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        anyio.run(go, taken.getsockname()[1])


def test_nothing_is_left_open(served: Served) -> None:
    for _ in range(3):
        assert served.get("/metrics")[0] == 200
    deadline = time.monotonic() + 3
    while served.endpoint.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served.endpoint.open_connections == 0
