"""The machine the runtime runs on, as /status's `host` object and the dashboard's host panel.

CPUs (the host's, and what affinity and the cgroup quota leave: what `instances: max`
means), the load average, memory (the host's, and the cgroup limit when there is one)
and the versions of the runtime, Python and Node. The cgroup files are read at most every
LIMITS_TTL_S; `node --version` runs once, the first time it is asked for, without
blocking the loop (a child the reaper reaps like any stranger).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import signal
from typing import Any

import psutil

from runtime import __version__
from runtime.config.cpus import (
    CGROUP_ROOT,
    PROC_SELF_CGROUP,
    affinity_count,
    cgroup_cpu_limit,
    own_cgroup_dirs,
    read_text,
)

LIMITS_TTL_S = 30.0  # a `docker update` of the limits shows within this
NODE_TIMEOUT_S = 5.0  # `node --version` that has not answered by then counts as no node
MAX_VERSION_BYTES = 64
UNLIMITED_BYTES = 1 << 60  # cgroup v1 says "no limit" with a number near 2**63
UNKNOWN = "-"


def _limit_bytes(text: str | None) -> int | None:
    """A memory.max / memory.limit_in_bytes value in bytes; None for `max` or no limit."""
    if text is None or not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value < UNLIMITED_BYTES else None


def cgroup_memory_limit(
    cgroup_root: str = CGROUP_ROOT, *, proc_self_cgroup: str = PROC_SELF_CGROUP
) -> int | None:
    """The tightest memory limit of our cgroups (v2 `memory.max`, v1
    `memory.limit_in_bytes`) in bytes, or None when there is none."""
    limits = [
        limit
        for directory in own_cgroup_dirs(cgroup_root, proc_self_cgroup, "memory")
        for name in ("memory.max", "memory.limit_in_bytes")
        if (limit := _limit_bytes(read_text(os.path.join(directory, name)))) is not None
    ]
    return min(limits, default=None)


class NodeVersion:
    """`node --version`, asked once on first use: None while it runs, `-` without node."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float = NODE_TIMEOUT_S) -> None:
        self._loop = loop
        self.timeout_s = timeout_s
        self._value: str | None = None
        self._fd: int | None = None
        self.pid = 0  # the child's, once started (the master's reaper reaps it)
        self._out = b""
        self._timer: asyncio.TimerHandle | None = None

    def get(self) -> str | None:
        if self._value is None and self._fd is None:
            self._start()
        return self._value

    def _start(self) -> None:
        node = shutil.which("node")
        if node is None:
            self._value = UNKNOWN
            return
        read_fd, write_fd = os.pipe()
        try:
            self.pid = os.posix_spawn(
                node,
                [node, "--version"],
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, write_fd, 1),
                    (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                ],
                setsigmask=(),  # not the signals the master holds while it starts
            )
        except OSError:
            os.close(read_fd)
            self._value = UNKNOWN
            return
        finally:
            os.close(write_fd)
        self._fd = read_fd
        os.set_blocking(read_fd, False)
        self._loop.add_reader(read_fd, self._read)
        self._timer = self._loop.call_later(self.timeout_s, self._finish, True)

    def _read(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, MAX_VERSION_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._out += data
        if data and len(self._out) <= MAX_VERSION_BYTES:
            return
        self._finish(len(self._out) > MAX_VERSION_BYTES)

    def _finish(self, failed: bool) -> None:
        """EOF: keep what it said; too much output or the timeout: `-`. Close the pipe."""
        if self._fd is None:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = None
        if self._timer is not None:
            self._timer.cancel()
        if failed:  # the pipe is still open: node has not exited, its pid is its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        text = self._out.decode("utf-8", "replace").strip()
        self._value = text if text and not failed and "\n" not in text else UNKNOWN

    def close(self) -> None:
        """Stop waiting for an answer (the web server is closing)."""
        if self._fd is not None:
            self._finish(True)


class Host:
    """The `host` object of /status: limits cached for LIMITS_TTL_S, the rest read each time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.node = NodeVersion(loop)
        self._limits: dict[str, Any] = {}
        self._limits_at = -LIMITS_TTL_S

    def _read_limits(self) -> dict[str, Any]:
        now = self._loop.time()
        if now - self._limits_at >= LIMITS_TTL_S:
            quota = cgroup_cpu_limit()
            usable = affinity_count() if quota is None else min(affinity_count(), quota)
            self._limits = {
                "cpus": os.cpu_count(),
                "cpus_usable": max(1, usable),
                "cpu_quota": quota,
                "memory_limit_bytes": cgroup_memory_limit(),
            }
            self._limits_at = now
        return self._limits

    def facts(self) -> dict[str, Any]:
        """CPUs, load, memory and versions, JSON-ready."""
        limits = self._read_limits()
        memory = psutil.virtual_memory()
        try:
            load = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            load = None
        return {
            "hostname": platform.node(),
            "cpus": limits["cpus"],
            "cpus_usable": limits["cpus_usable"],
            "cpu_quota": limits["cpu_quota"],
            "load": load,
            "memory_total_bytes": memory.total,
            "memory_available_bytes": memory.available,
            "memory_limit_bytes": limits["memory_limit_bytes"],
            "versions": {
                "runtime": __version__,
                "python": platform.python_version(),
                "node": self.node.get(),
            },
        }
