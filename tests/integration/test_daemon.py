"""The daemon process: systemd protocol, /metrics, SIGHUP reload, SIGTERM shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
        return body.decode()


class Notifications:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.5)
        self.seen: list[str] = []

    def wait_for(self, field: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.seen:
                if field in msg.split("\n"):
                    self.seen.remove(msg)
                    return msg
            try:
                self.seen.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        raise AssertionError(f"no {field} within {timeout} s; got {self.seen}")


@pytest.fixture
def daemon_env(tmp_path: Path) -> Iterator[tuple[Path, Notifications, int]]:
    notify = Notifications(tmp_path / "notify.sock")
    port = _free_port()
    cfg = tmp_path / "ruvectord.yaml"
    cfg.write_text(
        f"""
daemon: {{state_directory: {tmp_path / "state"}, shutdown_timeout_seconds: 10}}
metrics: {{listen_address: "127.0.0.1:{port}"}}
logging: {{format: json}}
integrity: {{sample_interval_seconds: 0.5}}
collections:
  - {{name: ghost, table: public.ghost, vector_column: embedding}}
"""
    )
    yield cfg, notify, port
    notify.sock.close()


def test_daemon_lifecycle_under_systemd_protocol(
    daemon_env: tuple[Path, Notifications, int], tmp_path: Path, server_root: Path
) -> None:
    cfg, notify, port = daemon_env
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "1000000",
    }
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ruvectord.cli",
            "run",
            "-c",
            str(cfg),
            "--embedded",
            str(server_root / "pgdata"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        ready = notify.wait_for("READY=1")
        assert "STATUS=monitoring 1 collection" in ready
        notify.wait_for("WATCHDOG=1", timeout=5)
        notify.wait_for("WATCHDOG=1", timeout=5)  # keeps coming, at half of WATCHDOG_USEC

        metrics = _get(f"http://127.0.0.1:{port}/metrics")
        assert "ruvectord_info" in metrics
        assert (
            'ruvector_integrity_sample_errors_total{collection="ghost",reason="collection"}'
            in metrics
        )
        status = json.loads(_get(f"http://127.0.0.1:{port}/status"))
        assert status["collections"]["ghost"]["error"] == "table public.ghost does not exist"
        deadline = time.monotonic() + 10
        while not status["actor"]["acting"] and time.monotonic() < deadline:
            time.sleep(0.2)
            status = json.loads(_get(f"http://127.0.0.1:{port}/status"))
        assert status["actor"] == {"acting": True, "why_not": None}  # alone on its database

        # a broken file on SIGHUP: logged, old config kept, still serving
        cfg.write_text("integrity:\n  sample_interval_seconds: -5\n")
        proc.send_signal(signal.SIGHUP)
        notify.wait_for("READY=1", timeout=10)
        time.sleep(0.5)
        assert proc.poll() is None
        assert "ghost" in json.loads(_get(f"http://127.0.0.1:{port}/status"))["collections"]
        text = (tmp_path / "daemon.log").read_text()
        reload_line = next(
            json.loads(line) for line in text.splitlines() if '"config_reload_failed"' in line
        )
        assert reload_line["errors"] == [
            f"integrity.sample_interval_seconds: -5 is not >= 0.1 ({cfg}, line 2)"
        ]

        # SIGTERM: STOPPING=1, exit 0 within the shutdown timeout
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", timeout=10)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 10
        assert '"daemon_stopped"' in (tmp_path / "daemon.log").read_text()
        # the embedded server was stopped with the daemon
        assert not (server_root / "pgdata" / "postmaster.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
