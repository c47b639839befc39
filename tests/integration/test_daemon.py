"""The daemon process: systemd protocol, /metrics, SIGHUP reload, SIGTERM shutdown, and what
it shows and survives: no password in any output during an outage, a metrics port that is
taken, and a local user holding 1500 connections to the metrics port."""

from __future__ import annotations

import json
import os
import pty
import resource
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import anyio
import pytest

from tests.helpers import free_port
from tests.notify import Notifications

ROOT = Path(__file__).parents[2]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
        return body.decode()


@pytest.fixture
def daemon_env(tmp_path: Path) -> Iterator[tuple[Path, Notifications, int]]:
    notify = Notifications(tmp_path / "notify.sock")
    port = free_port()
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
        # READY waits for the actor lock's first answer, so it says truthfully that it acts
        assert "STATUS=acting on 1 collection; no sample yet" in ready.split("\n")
        # and STATUS follows every cycle: what fails, said where `systemctl status` shows it
        failing = notify.wait_for_status(
            "sampling fails: ghost (table public.ghost does not exist)"
        )
        assert failing.startswith("acting on 1 collection;")
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
        lines = [json.loads(line) for line in (tmp_path / "daemon.log").read_text().splitlines()]
        assert any(line["event"] == "daemon_stopped" for line in lines)
        # letting go of the actor lock on the way out is news, not an error
        lost = [line for line in lines if line["event"] == "actor_lock_lost"]
        assert [(line["level"], line["reason"]) for line in lost] == [("info", "shutting down")]
        errors = {line["event"] for line in lines if line["level"] == "error"}
        assert errors == {"config_reload_failed"}, errors  # the broken file above, nothing else
        # the embedded server was stopped with the daemon
        assert not (server_root / "pgdata" / "postmaster.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


# --------------------------------------------------------------------------- secrets

DSN_SECRET = "dsn-Pw-4c1e2b"
FILE_SECRET = "file-Pw-93a7d0"


def _read_all(master: int, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def _run_cli(argv: list[str], *, terminal: bool, timeout: float = 90) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pipe, or on a pseudo-terminal (a TTY)."""
    cmd = [sys.executable, "-m", "ruvectord.cli", *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUVECTORD_", "PG"))}
    if not terminal:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        return done.returncode, done.stdout + done.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave
    )
    os.close(slave)
    try:
        out = _read_all(master, proc, timeout)
        return proc.wait(timeout=timeout), out.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("command", ["run", "status"])
@pytest.mark.parametrize("fmt", ["json", "console", "auto"])
def test_no_password_in_any_output_during_an_outage(tmp_path: Path, fmt: str, command: str) -> None:
    """A dead database, the password in the DSN and in password_file: the outage is logged and
    reported, and neither password appears anywhere, whatever the log format."""
    (tmp_path / "pw").write_text(FILE_SECRET + "\n")
    os.chmod(tmp_path / "pw", 0o600)
    closed_port = free_port()  # nothing listens there
    targets = {
        "closed port": f"postgresql://ruvectord:{DSN_SECRET}@127.0.0.1:{closed_port}/vectors",
        "missing socket directory": (
            f"postgresql://ruvectord:{DSN_SECRET}@/vectors?host={tmp_path}/no/such/dir"
        ),
    }
    for what, dsn in targets.items():
        cfg = tmp_path / "ruvectord.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "database": {
                        "dsn": dsn,
                        "password_file": str(tmp_path / "pw"),
                        "connect_retries": 1,
                        "connect_timeout_seconds": 2,
                    },
                    "daemon": {"state_directory": str(tmp_path / "state")},
                    "metrics": {"listen_address": "127.0.0.1:0"},
                    "logging": {"format": fmt},
                }
            )
        )
        # auto: on a terminal it is the console renderer, with colours
        code, out = _run_cli([command, "-c", str(cfg)], terminal=fmt == "auto")
        assert code == 1, (what, out)
        assert DSN_SECRET not in out and FILE_SECRET not in out, (what, out)
        assert "database_unreachable" in out, (what, out)
        assert "error: cannot reach PostgreSQL at " in out, (what, out)
        assert "Traceback" not in out, (what, out)
        if fmt != "json":
            assert not out.lstrip().startswith("{"), out  # really the console renderer


# --------------------------------------------------------------------------- metrics port


def test_a_metrics_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "ruvectord.yaml"
        cfg.write_text(
            f"daemon: {{state_directory: {tmp_path / 'state'}}}\n"
            f"metrics: {{listen_address: '127.0.0.1:{port}'}}\n"
            "logging: {format: json}\n"
        )
        done = subprocess.run(
            [sys.executable, "-m", "ruvectord.cli", "run", "-c", str(cfg)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done
    assert done.stderr == (
        f"error: metrics.listen_address 127.0.0.1:{port}: address already in use "
        "(another process listens there: stop it or choose another port)\n"
    )
    assert "Traceback" not in done.stdout


ATTACKERS = 1500
DAEMON_NOFILE = 256  # well below ATTACKERS: the endpoint must never need that many


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _timed_get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=10) as resp:
        resp.read()
        return resp.status, time.monotonic() - started


def _limit_nofile() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (DAEMON_NOFILE, hard))


def _attack(dsn: str, tmp_path: Path, report: dict[str, float]) -> None:
    notify = Notifications(tmp_path / "notify.sock")
    port = free_port()
    cfg = tmp_path / "ruvectord.yaml"
    cfg.write_text(
        json.dumps(
            {
                "database": {"dsn": dsn, "connect_retries": 1},
                "daemon": {"state_directory": str(tmp_path / "state")},
                "metrics": {"listen_address": f"127.0.0.1:{port}"},
                "logging": {"format": "json"},
                "integrity": {"sample_interval_seconds": 0.5},
            }
        )
    )
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ruvectord.cli", "run", "-c", str(cfg)],
        cwd=ROOT,
        env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")},
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_limit_nofile,
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = ATTACKERS + 512
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    base = f"http://127.0.0.1:{port}"
    held: list[socket.socket] = []
    try:
        notify.wait_for("READY=1")
        time.sleep(1.5)  # its own background connections (actor lock, LISTEN) settle first
        idle_fds = _open_fds(proc.pid)

        # a slow client: half a request, then silence; dropped at the deadline
        with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
            slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            assert slow.recv(1) == b""
            report["slow_client_dropped_after_s"] = time.monotonic() - started
        assert 4.0 <= report["slow_client_dropped_after_s"] <= 8.0, report

        # a local user opens 1500 connections and sends nothing
        started = time.monotonic()
        for _ in range(ATTACKERS):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        report["attackers_connected_in_s"] = time.monotonic() - started
        most = 0
        worst = 0.0
        for path in ("/metrics", "/status", "/health", "/metrics"):
            status, took = _timed_get(base + path)
            assert status == 200
            worst = max(worst, took)
            most = max(most, _open_fds(proc.pid))
        report["worst_answer_under_attack_s"] = worst
        report["daemon_fds_idle"] = idle_fds
        report["daemon_fds_max_under_attack"] = most
        assert worst < 3.0, report
        assert most <= idle_fds + 32 + 2, report  # the cap, not the attacker, decides
        assert proc.poll() is None
    finally:
        for s in held:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        metrics = _get(base + "/metrics")
        assert proc.poll() is None
        dropped = {
            line.split('reason="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("ruvectord_http_connections_dropped_total{")
        }
        report["dropped_evicted"] = dropped.get("evicted", 0.0)
        assert dropped.get("deadline", 0.0) >= 1 and dropped.get("evicted", 0.0) > 0, dropped
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        notify.sock.close()


@pytest.mark.slow
async def test_1500_idle_connections_neither_crash_nor_starve_the_daemon(
    dsn: str, tmp_path: Path
) -> None:
    report: dict[str, float] = {}
    await anyio.to_thread.run_sync(partial(_attack, dsn, tmp_path, report))
    print(json.dumps(report))  # noqa: T201 -- the numbers, for the record (pytest -s)
