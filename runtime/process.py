"""Spawning, reaping and stopping worker processes (the only place that forks or waits).

A worker is forked and exec'd by hand rather than with `subprocess`, because the
systemd socket-activation protocol wants `LISTEN_PID` to be the worker's own pid,
which is only known between fork and exec. The child also gets its own process
group and a parent-death signal, so it never outlives a killed master.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from runtime.errors import SD_LISTEN_FDS_START

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
EXEC_FAILED_CODE = 127
GROUP_POLL_S = 0.02

_libc = ctypes.CDLL(None, use_errno=True)


def release_startup_memory() -> None:
    """Collect start-up garbage (config parsing, imports) and give freed heap back to the OS."""
    import gc

    gc.collect()
    trim = getattr(_libc, "malloc_trim", None)  # glibc; absent on musl
    if trim is not None:
        trim(0)


def set_child_subreaper() -> bool:
    """Adopt orphaned descendants (what PID 1 gets for free), so they are reaped here."""
    if os.getpid() == 1:
        return True
    return int(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0


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
            name = signal.Signals(self.signal).name if self.signal in _SIGNALS else str(self.signal)
            return f"signal {name}"
        return f"code {self.code}"


_SIGNALS = {s.value for s in signal.Signals}


@dataclass(slots=True)
class SpawnRequest:
    """Everything needed to fork and exec one worker."""

    argv: Sequence[str]
    cwd: str
    env: Mapping[str, str]
    stdout_fd: int
    stderr_fd: int
    listen_fds: Sequence[int] = ()


def _child(req: SpawnRequest, parent_pid: int) -> None:
    """Runs in the forked child: only async-signal-tolerant os calls, then exec."""
    try:
        os.setpgid(0, 0)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(EXEC_FAILED_CODE)
        for sig in (
            signal.SIGCHLD,
            signal.SIGPIPE,
            signal.SIGXFSZ,
            signal.SIGINT,
            signal.SIGTERM,
            signal.SIGHUP,
            signal.SIGQUIT,
            signal.SIGUSR1,
            signal.SIGTTIN,
            signal.SIGTTOU,
        ):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        count = len(req.listen_fds)
        # Move every fd we hand down above the target range first, so no dup2 clobbers one.
        floor = SD_LISTEN_FDS_START + count
        out, err = (
            fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in (req.stdout_fd, req.stderr_fd)
        )
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in req.listen_fds]
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for i, fd in enumerate(moved):
            os.dup2(fd, SD_LISTEN_FDS_START + i, inheritable=True)
        env = dict(req.env)
        if count:
            env["LISTEN_PID"] = str(os.getpid())
        os.chdir(req.cwd)
        os.execvpe(req.argv[0], list(req.argv), env)
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            msg = f"runtime: cannot start {req.argv[0]!r}: {exc}\n".encode(errors="replace")
            os.write(2, msg)
    os._exit(EXEC_FAILED_CODE)


def spawn(req: SpawnRequest) -> int:
    """Fork and exec one worker in its own process group; return its pid."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child execs or exits
        _child(req, parent)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also in the parent, so a kill right away reaches the group
    return pid


class Reaper:
    """The master's only `waitpid` caller: routes each status to its worker, reaps strangers.

    As PID 1 (or a subreaper) orphaned grandchildren are re-parented to us; they are
    reaped here and ignored, never mistaken for a worker.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: dict[int, Callable[[ExitStatus], None]] = {}
        self.strangers_reaped = 0

    def install(self) -> None:
        # uvloop refuses add_signal_handler(SIGCHLD) (libuv keeps it for its own
        # subprocesses, which we never use), so a plain handler wakes the loop instead.
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
                self.strangers_reaped += 1
                continue
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
