"""What the operator's tools see: metric names, log lines, the systemd unit."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ruvectord.logs import get_logger, redact, setup_logging
from ruvectord.metrics import Metrics

ROOT = Path(__file__).parents[2]

# exactly the self-healing design's names, and the sensor's
SEED_METRICS = [
    "ruvector_healing_attempts_total",
    "ruvector_healing_success_total",
    "ruvector_healing_duration_seconds",
    "ruvector_healing_active",
    "ruvector_healing_cooldown",
    "ruvector_healing_success_rate",
    "ruvector_healing_avg_improvement",
    "ruvector_healing_time_to_recovery_seconds",
    "ruvector_healing_enabled",
    "ruvector_integrity_lambda_cut",
    "ruvector_integrity_lambda2",
    "ruvector_integrity_state",
    "ruvector_integrity_sample_duration_seconds",
    "ruvector_integrity_sample_errors_total",
]


def test_metric_names_and_labels_match_the_design() -> None:
    m = Metrics()
    m.healing_attempts.labels("embeddings", "throttle_ingestion").inc()
    m.healing_success.labels("embeddings", "throttle_ingestion").inc()
    m.healing_duration.labels("embeddings", "throttle_ingestion").observe(1.5)
    for gauge in (
        m.healing_active,
        m.healing_cooldown,
        m.healing_success_rate,
        m.healing_avg_improvement,
        m.healing_ttr,
        m.healing_enabled,
        m.lambda_cut,
        m.lambda2,
        m.state,
    ):
        gauge.labels("embeddings").set(1)
    m.sample_duration.labels("embeddings").observe(0.01)
    m.sample_errors.labels("embeddings", "database").inc()
    text = m.render().decode()
    for name in SEED_METRICS:
        assert re.search(rf"^{name}(_bucket|_count)?\{{collection=\"embeddings\"", text, re.M), name
    assert (
        'ruvector_healing_attempts_total{collection="embeddings",strategy="throttle_ingestion"} 1.0'
    ) in text


def test_log_lines_are_json_utc_and_never_carry_a_password() -> None:
    out = io.StringIO()
    setup_logging("info", "json", stream=out)
    get_logger("t", collection="items").info(
        "database_unreachable",
        error="could not connect to postgresql://app:hunter2@db/x",
        dsn="host=db password=hunter2 user=app",
    )
    line = json.loads(out.getvalue())
    assert line["event"] == "database_unreachable" and line["collection"] == "items"
    assert line["timestamp"].endswith("Z")
    assert "hunter2" not in out.getvalue()
    assert line["error"] == "could not connect to postgresql://app:***@db/x"
    assert redact("postgresql://u@h/db?sslmode=require&password=p1") == (
        "postgresql://u@h/db?sslmode=require&password=***"
    )


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed on this machine",
)
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (ROOT / "deploy/systemd/ruvectord.service").read_text()
    for needed in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "ExecReload=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ReadWritePaths=/var/lib/ruvectord",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
        "User=ruvectord",
    ):
        assert needed in unit, needed
    # systemd checks that ExecStart exists: point it at this checkout's entry point
    exe = Path(sys.executable).with_name("ruvectord")
    local = tmp_path / "ruvectord.service"
    local.write_text(unit.replace("/usr/bin/ruvectord", str(exe)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "ruvectord.service" not in done.stderr, done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_embedded_refuses_a_directory_its_user_cannot_enter(tmp_path: Path) -> None:
    from ruvectord.embedded import EmbeddedError, EmbeddedPostgres

    private = Path("/root") / f".ruvectord-test-{os.getpid()}"
    private.mkdir(mode=0o700)
    try:
        if (Path("/root").stat().st_mode & 0o001) != 0:
            pytest.skip("/root is searchable by others on this machine")
        with pytest.raises(
            EmbeddedError, match=r"which cannot enter /root/\.ruvectord-test-\d+; use a directory"
        ):
            EmbeddedPostgres(private / "pgdata").init()
        assert Path("/root").stat().st_mode & 0o001 == 0  # and nothing was chmod-ed
    finally:
        shutil.rmtree(private, ignore_errors=True)
