"""A real streaming standby of an embedded primary, made with pg_basebackup.

Used by the replication tests and available to the demo: pause its replay and the primary's
replication edge degrades exactly as a lagging production replica's would.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from ruvectord.embedded import SERVICE_USER, EmbeddedPostgres


@dataclass
class StreamingPair:
    primary: EmbeddedPostgres
    standby: EmbeddedPostgres

    @classmethod
    def create(
        cls, root: Path, *, primary_port: int = 5432, standby_port: int = 5433
    ) -> StreamingPair:
        primary = EmbeddedPostgres(root / "primary", port=primary_port)
        primary.start()
        standby_dir = root / "standby"
        standby_dir.mkdir(parents=True, mode=0o700)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVICE_USER)
            os.chown(standby_dir, entry.pw_uid, entry.pw_gid)
        primary.run(
            "pg_basebackup",
            [
                "-D",
                str(standby_dir),
                "-d",
                f"host={primary.socket_dir} port={primary.port} user=postgres "
                "application_name=standby1",
                "-R",  # standby.signal + primary_conninfo
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        )
        standby = EmbeddedPostgres(standby_dir, port=standby_port)
        standby.start()
        return cls(primary, standby)

    def destroy(self) -> None:
        self.standby.destroy()
        self.primary.destroy()
