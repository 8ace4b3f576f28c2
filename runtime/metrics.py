"""Process-tree samples of workers (RSS, CPU) with psutil, one /proc pass per tick."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psutil


@dataclass(frozen=True, slots=True)
class TreeSample:
    """Resources of one worker and all of its descendants."""

    rss_bytes: int
    cpu_seconds: float
    processes: int


def _snapshot() -> tuple[dict[int, list[int]], dict[int, tuple[int, float]]]:
    children: dict[int, list[int]] = {}
    usage: dict[int, tuple[int, float]] = {}
    for proc in psutil.process_iter(["ppid", "memory_info", "cpu_times"]):
        info = proc.info
        mem, cpu = info.get("memory_info"), info.get("cpu_times")
        if mem is None or cpu is None:
            continue  # vanished or not ours to read
        children.setdefault(info["ppid"], []).append(proc.pid)
        usage[proc.pid] = (mem.rss, cpu.user + cpu.system)
    return children, usage


def sample_trees(roots: Iterable[int]) -> dict[int, TreeSample]:
    """RSS and CPU time of each root pid's whole process tree."""
    children, usage = _snapshot()
    samples: dict[int, TreeSample] = {}
    for root in roots:
        if root not in usage:
            continue
        rss, cpu, count = 0, 0.0, 0
        stack = [root]
        seen: set[int] = set()
        while stack:
            pid = stack.pop()
            if pid in seen or pid not in usage:
                continue
            seen.add(pid)
            pid_rss, pid_cpu = usage[pid]
            rss, cpu, count = rss + pid_rss, cpu + pid_cpu, count + 1
            stack.extend(children.get(pid, ()))
        samples[root] = TreeSample(rss_bytes=rss, cpu_seconds=cpu, processes=count)
    return samples
