"""Stopping workers: signals to a process or its group, and the one stop helper."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from runtime.proc.reaper import ExitStatus

if TYPE_CHECKING:  # psutil is imported at the master's exit only
    import psutil

GROUP_POLL_S = 0.02


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
    ask: Callable[[], bool] | None = None,
) -> ExitStatus:
    """The one stop helper: signal, wait `kill_timeout_s`, SIGKILL, and always await the exit.

    With `treekill` the whole process group gets the signals, and what is left of it
    after the leader exits gets the rest of the timeout, then SIGKILL. `ask`, when given,
    asks the worker another way first (pm2's `'shutdown'` message); if it returns True
    no signal is sent before the SIGKILL.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + kill_timeout_s
    if not exited.done():
        if ask is None or not ask():
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


async def stop_descendants(grace_s: float) -> int:
    """At the master's exit: every process still below it gets SIGTERM, then SIGKILL after
    `grace_s`. As PID 1 or a subreaper the master inherits what a worker left behind, even
    a child that called setsid() and ignores SIGTERM; none of it may outlive the master.
    Returns how many there were."""
    import psutil  # at the exit only; metrics import it anyway

    try:
        left = psutil.Process().children(recursive=True)
    except psutil.Error:
        return 0
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while (alive := [p for p in left if _running(p)]) and loop.time() < deadline:
        await asyncio.sleep(GROUP_POLL_S)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return len(left)


def _running(proc: psutil.Process) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
