"""Process-tree samples of workers (RSS, CPU) with psutil, reading only our own trees.

Descendants come from `/proc/<pid>/task/<tid>/children`, so a sample costs a few
/proc reads per worker process, not a scan of every process on the host.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TreeSample:
    """Resources of one worker and all of its descendants at one moment."""

    rss_bytes: int
    cpu_seconds: float
    processes: int
    at: float  # time.monotonic()
    fds: int | None = None  # open file descriptors of the root process alone


def _read_proc(path: str) -> bytes | None:
    """A small /proc file in three system calls (`open()` adds fstat, ioctl and lseek)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        data = _read_proc(f"/proc/{pid}/task/{tid}/children")
        if data:
            kids.extend(int(k) for k in data.split())
    return kids


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _rss(pid: int) -> int | None:
    data = _read_proc(f"/proc/{pid}/statm")
    try:
        return int(data.split()[1]) * _PAGE_BYTES if data else None
    except (ValueError, IndexError):
        return None


def _walk(root: int, read: Callable[[int], T | None], seen: set[int]) -> list[T]:
    """`read(pid)` of `root` and of every live descendant, each pid once, root first.

    Empty once `root` is gone; a descendant that is gone (`read` gives None) is skipped
    with its subtree. Every pid visited is added to `seen`.
    """
    first = read(root)
    if first is None:
        return []
    seen.add(root)
    found = [first]
    stack = _children(root)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        value = read(pid)
        if value is not None:
            found.append(value)
            stack.extend(_children(pid))
    return found


def tree_rss(root: int) -> int | None:
    """Resident bytes of `root` and every descendant, or None once `root` is gone.

    What `max_memory_restart` checks (how often: runtime.policy.memory.next_check_s):
    one `/proc/PID/statm` read per process (the figure psutil's `memory_info().rss`
    reads too), no CPU times.
    """
    sizes = _walk(root, _rss, set())
    return sum(sizes) if sizes else None


_PROCS: dict[int, Any] = {}  # psutil.Process per pid: built once (it reads /proc to check identity)


def _usage(pid: int) -> tuple[int, float] | None:
    import psutil  # loaded on the first sample, not at start-up

    try:
        proc = _PROCS.get(pid)
        if proc is None:
            proc = _PROCS[pid] = psutil.Process(pid)
        with proc.oneshot():
            cpu = proc.cpu_times()
            return proc.memory_info().rss, cpu.user + cpu.system
    except psutil.Error:
        _PROCS.pop(pid, None)
        return None


def _fds(pid: int) -> int | None:
    """Open fds of one process (a listing of /proc/PID/fd), None if it cannot be read."""
    import psutil

    proc = _PROCS.get(pid)
    try:
        return None if proc is None else proc.num_fds()
    except psutil.Error:
        return None


def forget_gone(alive: set[int]) -> None:
    """Drop cached process handles of pids no longer sampled."""
    for pid in [p for p in _PROCS if p not in alive]:
        del _PROCS[pid]


def sample_tree(root: int, now: float, seen: set[int] | None = None) -> TreeSample | None:
    """RSS and CPU time of `root` and every descendant, or None once it is gone."""
    usages = _walk(root, _usage, set() if seen is None else seen)
    if not usages:
        return None
    return TreeSample(
        rss_bytes=sum(rss for rss, _cpu in usages),
        cpu_seconds=sum(cpu for _rss, cpu in usages),
        processes=len(usages),
        at=now,
        fds=_fds(root),
    )


def sample_trees(
    roots: Iterable[int], now: float = 0.0, seen: set[int] | None = None
) -> dict[int, TreeSample]:
    """One sample per live root pid (`seen` collects every pid visited)."""
    out: dict[int, TreeSample] = {}
    for root in roots:
        sample = sample_tree(root, now, seen)
        if sample is not None:
            out[root] = sample
    return out


def cpu_percent(before: TreeSample | None, after: TreeSample) -> float | None:
    """CPU use between two samples, in percent of one core."""
    if before is None or after.at <= before.at:
        return None
    return round(
        100.0 * max(0.0, after.cpu_seconds - before.cpu_seconds) / (after.at - before.at), 1
    )


def tree_connections(root: int, ports: frozenset[int]) -> int | None:
    """Established TCP connections on `ports` (the app's listeners) that `root` and its
    descendants hold: the requests in flight, as the kernel sees them; None if it is gone."""
    import psutil

    pids = _walk(root, lambda pid: pid if os.path.exists(f"/proc/{pid}") else None, set())
    if not pids:
        return None
    count = 0
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        count += sum(
            1
            for c in conns
            if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port in ports
        )
    return count


class Sampler:
    """Keeps the latest sample of each worker and the CPU % since the one before."""

    def __init__(self) -> None:
        self.latest: dict[int, TreeSample] = {}
        self.cpu: dict[int, float | None] = {}
        self.connections: dict[int, int] = {}  # pid -> connections in flight on its ports
        self.last_at = 0.0

    def sample(
        self, pids: Iterable[int], now: float, ports: dict[int, frozenset[int]] | None = None
    ) -> dict[int, TreeSample]:
        """Sample every tree in `pids`; with `ports` (pid -> its app's TCP ports), also count
        the connections each tree holds on them."""
        seen: set[int] = set()
        fresh = sample_trees(pids, now, seen)
        forget_gone(seen)
        self.cpu = {pid: cpu_percent(self.latest.get(pid), s) for pid, s in fresh.items()}
        self.latest = fresh
        self.connections = {
            pid: held
            for pid, app_ports in (ports or {}).items()
            if pid in fresh and (held := tree_connections(pid, app_ports)) is not None
        }
        self.last_at = now
        return fresh
