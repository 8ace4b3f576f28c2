"""Reaping and stopping worker processes (the only place that waits for them).

Forking lives in `runtime.proc.spawn`; this module adds what needs the event loop: the one
`waitpid` caller and the one stop helper.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

from runtime.proc.spawn import (
    EXEC_FAILED_CODE,
    ExitStatus,
    SpawnRequest,
    release_startup_memory,
    set_child_subreaper,
    spawn,
)

__all__ = [
    "EXEC_FAILED_CODE",
    "ExitStatus",
    "Reaper",
    "SpawnRequest",
    "kill_group_now",
    "release_startup_memory",
    "set_child_subreaper",
    "signal_worker",
    "spawn",
    "stop_process",
    "wait_group_gone",
]

GROUP_POLL_S = 0.02


class Reaper:
    """The master's only `waitpid` caller: routes each status to its worker, reaps strangers.

    As PID 1 (or a subreaper) orphaned grandchildren are re-parented to us; they are
    reaped here and ignored, never mistaken for a worker.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: dict[int, Callable[[ExitStatus], None]] = {}

    def install(self) -> None:
        # A plain handler wakes the loop on both loops: uvloop (RUNTIME_LOOP) refuses
        # add_signal_handler(SIGCHLD), which libuv keeps for its own subprocesses.
        signal.signal(signal.SIGCHLD, self._on_sigchld)
        self.reap()

    def _on_sigchld(self, _signum: int, _frame: object) -> None:
        self._loop.call_soon_threadsafe(self.reap)

    def uninstall(self) -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    def watch(self, pid: int, on_exit: Callable[[ExitStatus], None]) -> None:
        self._waiters[pid] = on_exit

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            callback = self._waiters.pop(pid, None)
            if callback is None:
                continue  # an orphan re-parented to us (PID 1 / subreaper): reaped, ignored
            callback(ExitStatus.from_wait(status))


def signal_worker(pid: int, sig: int, *, group: bool) -> bool:
    """Send `sig` to a worker (its whole process group with `group`); False if it is gone."""
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process is left in the group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def wait_group_gone(pgid: int, timeout_s: float) -> bool:
    """Poll until the process group is empty or the timeout passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while group_alive(pgid):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(GROUP_POLL_S)
    return True


async def stop_process(
    pid: int,
    exited: asyncio.Future[ExitStatus],
    *,
    kill_timeout_s: float,
    treekill: bool,
    sig: int = signal.SIGTERM,
) -> ExitStatus:
    """The one stop helper: signal, wait `kill_timeout_s`, SIGKILL, and always await the exit.

    With `treekill` the whole process group gets the signals, and what is left of it
    after the leader exits gets the rest of the timeout, then SIGKILL.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + kill_timeout_s
    if not exited.done():
        signal_worker(pid, sig, group=treekill)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), kill_timeout_s)
        if not exited.done():
            signal_worker(pid, signal.SIGKILL, group=treekill)
    status = await asyncio.shield(exited)
    if treekill:
        remaining = max(0.0, deadline - loop.time())
        if not await wait_group_gone(pid, remaining):
            signal_worker(pid, signal.SIGKILL, group=True)
    return status


def kill_group_now(pgid: int) -> None:
    """SIGKILL a worker's whole group (SIGQUIT, second signal, leftovers)."""
    signal_worker(pgid, signal.SIGKILL, group=True)
