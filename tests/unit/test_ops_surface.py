"""What the operator's tools see: metric names, log lines, the systemd unit."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import structlog

from ruvectord.logs import (
    get_logger,
    redact,
    register_dsn_secrets,
    register_secret,
    setup_logging,
)
from ruvectord.metrics import Metrics
from ruvectord.postgres.pool import ConnectOptions

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


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, as stdout under an interactive shell does."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


SECRET = "Hunter2-fed9c1"  # as read from database.password_file
DSN_SECRET = "dsn-Secret-77a0"


def _connect(options: ConnectOptions) -> None:
    # asyncpg-style failure: the message is harmless, the frame's locals are not
    raise ConnectionRefusedError(f"connect call failed ({options.dsn.rsplit('@', 1)[1]})")


@pytest.mark.parametrize(
    ("fmt", "stream"),
    [
        ("json", io.StringIO()),
        ("console", io.StringIO()),
        ("auto", _Terminal()),  # console, with colours
        ("auto", io.StringIO()),  # JSON
    ],
    ids=["json", "console", "auto-terminal", "auto-pipe"],
)
def test_no_renderer_prints_a_secret_even_in_tracebacks(
    restore_logging: None, fmt: str, stream: io.StringIO
) -> None:
    register_secret(SECRET)
    options = ConnectOptions(
        dsn=f"postgresql://app:{DSN_SECRET}@db:5432/vectors",
        password=SECRET,
        statement_timeout=5,
        connect_timeout=5,
        retries=1,
        min_size=1,
        max_size=1,
    )
    register_dsn_secrets(options.dsn)
    setup_logging("info", fmt, stream=stream)
    log = get_logger("ruvectord.test", collection="items")
    try:
        _connect(options)
    except ConnectionRefusedError:
        log.exception("database_unreachable", options=options, note=f"token {SECRET} rejected")
    try:
        _connect(options)
    except ConnectionRefusedError:
        # a library logging through stdlib, with its own traceback and the DSN in the text
        logging.getLogger("asyncpg.pool").exception("lost %s", options.dsn)
    out = stream.getvalue()
    assert SECRET not in out and DSN_SECRET not in out, out
    assert "database_unreachable" in out and "asyncpg.pool" in out and "lost " in out
    assert out.count("Traceback (most recent call last)") == 2  # plain text, both of them
    assert "ConnectionRefusedError: connect call failed (db:5432/vectors)" in out
    assert "╭" not in out  # no rich panel (which is where local variables were shown)


def test_registered_secrets_are_masked_in_every_escaped_form() -> None:
    secret = "p@ss w\\ord'é"
    register_secret(secret)
    register_secret("ab")  # too short to mask without masking everything
    text = " | ".join([secret, repr(secret), json.dumps(secret), quote(secret, safe=""), "abc"])
    masked = redact(text)
    assert "p@ss" not in masked and "ord" not in masked, masked
    assert masked.endswith("abc")
    assert redact("postgresql://u:p@ss@h/db?password=zz&x=1 postgres://h:5432/db") == (
        "postgresql://u:***@h/db?password=***&x=1 postgres://h:5432/db"
    )
    assert redact("""{'password': 'x y', "passwd": "z"} PGPASSWORD=q host=db user=x""") == (
        """{'password': ***, "passwd": ***} PGPASSWORD=*** host=db user=x"""
    )


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed on this machine",
)
def test_the_systemd_unit_verifies_as_the_readme_installs_it(tmp_path: Path) -> None:
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
    # The README's steps: a virtualenv, pip install (which creates <venv>/bin/ruvectord from
    # [project.scripts]), the unit copied into place. Build exactly that under a private root.
    readme = (ROOT / "README.md").read_text()
    venv_match = re.search(r"^python3 -m venv (/\S+)$", readme, re.M)
    unit_dir_match = re.search(
        r"^install -m 0644 deploy/systemd/ruvectord\.service (/\S+)$", readme, re.M
    )
    assert venv_match and unit_dir_match, "the README's install steps changed shape"
    venv, unit_dir = venv_match.group(1), unit_dir_match.group(1)
    assert 'ruvectord = "ruvectord.cli:main"' in (ROOT / "pyproject.toml").read_text()
    root = tmp_path / "root"
    units = next(
        p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()
    )
    shutil.copytree(units, root / str(units).lstrip("/"), symlinks=True)
    for link in ("/bin", "/sbin", "/lib"):  # merged-/usr hosts: keep the layout
        if Path(link).is_symlink():
            (root / link.lstrip("/")).symlink_to(os.readlink(link))
    kill = Path(shutil.which("kill") or "/bin/kill").resolve()  # ExecReload runs /bin/kill
    (root / str(kill.parent).lstrip("/")).mkdir(parents=True, exist_ok=True)
    shutil.copy2(kill, root / str(kill).lstrip("/"))
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root / venv.lstrip("/"))], check=True
    )
    # the console script pip generated for this checkout, as `pip install` would put it there
    shutil.copy2(Path(sys.executable).with_name("ruvectord"), root / venv.lstrip("/") / "bin")
    target = root / unit_dir.lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "deploy/systemd/ruvectord.service", target / "ruvectord.service")

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["systemd-analyze", "verify", f"--root={root}", "ruvectord.service"],
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = verify()
    assert done.returncode == 0, done.stderr
    assert "ruvectord.service" not in done.stderr, done.stderr
    # and the check has teeth: without the installed entry point the unit does not verify
    (root / venv.lstrip("/") / "bin" / "ruvectord").unlink()
    done = verify()
    assert done.returncode != 0 and f"{venv}/bin/ruvectord is not executable" in done.stderr


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
