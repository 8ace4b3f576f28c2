"""The master's only `waitpid` caller, and how a worker ended (`ExitStatus`)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a worker ended: an exit code or the signal that killed it."""

    code: int | None
    signal: int | None

    @classmethod
    def from_wait(cls, status: int) -> ExitStatus:
        if os.WIFSIGNALED(status):
            return cls(code=None, signal=os.WTERMSIG(status))
        return cls(code=os.waitstatus_to_exitcode(status), signal=None)

    @property
    def clean(self) -> bool:
        return self.code == 0

    def describe(self) -> str:
        if self.signal is not None:
            return f"signal {signal_name(self.signal)}"
        return f"code {self.code}"


def signal_name(number: int) -> str:
    """`SIGTERM` for 15; the number itself for one without a name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


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
