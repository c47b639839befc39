"""A systemd notification socket for tests: what a daemon tells systemd (READY, STATUS,
WATCHDOG, STOPPING), received on a real AF_UNIX datagram socket as systemd would."""

from __future__ import annotations

import socket
import time
from pathlib import Path


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

    def wait_for_status(self, part: str, timeout: float = 30) -> str:
        """The first STATUS= line containing `part`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.seen:
                for line in msg.split("\n"):
                    if line.startswith("STATUS=") and part in line:
                        self.seen.remove(msg)
                        return line.removeprefix("STATUS=")
            try:
                self.seen.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        raise AssertionError(f"no STATUS with {part!r} within {timeout} s; got {self.seen}")

    def collect(self, seconds: float) -> list[str]:
        """Every message already queued or received within `seconds`, taken off the queue."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.seen.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        got, self.seen = self.seen, []
        return got
