"""How many CPUs this container may really use: affinity and the cgroup CPU quota.

`os.cpu_count()` is the host's core count; pm2 uses it and over-forks in
containers limited with `--cpus` (pm2 issue #4347). We take the smallest of the
affinity mask and the cgroup v2 `cpu.max` / v1 `cpu.cfs_quota_us` quota.
`own_cgroup_dirs` finds other controllers' directories too (the dashboard reads the
memory limit there).
"""

from __future__ import annotations

import os

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_SELF_CGROUP = "/proc/self/cgroup"
# where cgroup v1 mounts a controller's hierarchy under the root (cpu is often co-mounted)
V1_MOUNTS = {"cpu": ("cpu", "cpu,cpuacct"), "memory": ("memory",)}


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quota_cpus(quota: str, period: str) -> int | None:
    """ceil(quota / period), or None for `max` / -1 / anything unreadable."""
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:
        return None
    return max(1, -(-q // p))  # ceil(q / p) in integers


def _v2_limit(directory: str) -> int | None:
    text = read_text(os.path.join(directory, "cpu.max"))
    if text is None or len(text.split()) != 2:
        return None
    quota, period = text.split()
    return _quota_cpus(quota, period)


def _v1_limit(directory: str) -> int | None:
    quota = read_text(os.path.join(directory, "cpu.cfs_quota_us"))
    period = read_text(os.path.join(directory, "cpu.cfs_period_us"))
    if quota is None or period is None:
        return None
    return _quota_cpus(quota, period)


def own_cgroup_dirs(root: str, proc_self_cgroup: str, controller: str = "cpu") -> list[str]:
    """The directories that may hold our `controller` limits (v2 and v1): the root, our
    cgroup and its parents."""
    join = os.path.join
    root = os.path.normpath(root)
    mounts = [join(root, name) for name in V1_MOUNTS[controller]]
    dirs = [root, *mounts]
    text = read_text(proc_self_cgroup) or ""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        controllers = parts[1].split(",")
        bases = [root] if parts[1] == "" else []
        if controller in controllers:
            bases = [*mounts, join(root, parts[1])]
        relative = parts[2].strip("/")
        for base in bases:
            node = os.path.normpath(join(base, relative)) if relative else base
            while node != base and node.startswith(base + os.sep):
                dirs.append(node)
                node = os.path.dirname(node)
    return dirs


def cgroup_cpu_limit(
    cgroup_root: str = CGROUP_ROOT, *, proc_self_cgroup: str = PROC_SELF_CGROUP
) -> int | None:
    """The tightest CPU quota of our cgroups (v2 or v1) in whole CPUs, or None if unlimited."""
    limits = [
        limit
        for directory in own_cgroup_dirs(cgroup_root, proc_self_cgroup)
        for limit in (_v2_limit(directory), _v1_limit(directory))
        if limit is not None
    ]
    return min(limits, default=None)


def affinity_count() -> int:
    """CPUs this process may be scheduled on (the host count where affinity is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_count(
    cgroup_root: str = CGROUP_ROOT,
    *,
    proc_self_cgroup: str = PROC_SELF_CGROUP,
    affinity: int | None = None,
) -> int:
    """min(affinity, cgroup quota), never below 1: what `instances: max` means."""
    count = affinity if affinity is not None else affinity_count()
    limit = cgroup_cpu_limit(cgroup_root, proc_self_cgroup=proc_self_cgroup)
    if limit is not None:
        count = min(count, limit)
    return max(1, count)
