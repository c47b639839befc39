"""Host memory: parsed from /proc/meminfo and cgroup v2 files, read once for all collections
within max_age, and read again after the clock moves either way past it."""

from __future__ import annotations

from pathlib import Path

import anyio

from ruvectord.postgres.sampler import HostMemory

MEMINFO = "MemTotal:       {total} kB\nMemFree:          100 kB\nMemAvailable:   {avail} kB\n"


def _write(root: Path, total: int, avail: int, current: str | None) -> None:
    (root / "meminfo").write_text(MEMINFO.format(total=total, avail=avail))
    (root / "cgroup").mkdir(exist_ok=True)
    if current is not None:
        (root / "cgroup" / "memory.current").write_text(current)
        (root / "cgroup" / "memory.max").write_text("max\n")


async def host(root: Path, total: int, avail: int, current: str | None = None) -> None:
    await anyio.to_thread.run_sync(_write, root, total, avail, current)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_one_reading_serves_every_collection_within_max_age(tmp_path: Path) -> None:
    await host(tmp_path, 1000, 400, "2048\n")
    clock = Clock()
    memory = HostMemory(1.0, clock, tmp_path / "meminfo", tmp_path / "cgroup")
    first = await memory.read()
    assert first is not None
    assert (first.total_bytes, first.available_bytes) == (1000 * 1024, 400 * 1024)
    assert (first.cgroup_current, first.cgroup_max) == (2048, None)
    await host(tmp_path, 1000, 100)
    clock.now += 0.5
    assert await memory.read() is first  # the same host, half a second later
    clock.now += 0.5
    later = await memory.read()
    assert later is not None and later.available_bytes == 100 * 1024


async def test_a_clock_that_moved_back_reads_again(tmp_path: Path) -> None:
    await host(tmp_path, 1000, 400)
    clock = Clock()
    memory = HostMemory(1.0, clock, tmp_path / "meminfo", tmp_path / "cgroup")
    await memory.read()
    await host(tmp_path, 1000, 50)
    clock.now -= 5
    again = await memory.read()
    assert again is not None and again.available_bytes == 50 * 1024


async def test_no_meminfo_is_no_reading(tmp_path: Path) -> None:
    memory = HostMemory(1.0, Clock(), tmp_path / "absent", tmp_path)
    assert await memory.read() is None
