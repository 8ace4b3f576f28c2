"""Forking and exec'ing one worker, with no event loop needed (the master's start uses it too).

A worker is forked and exec'd by hand rather than with `subprocess`, because the
systemd socket-activation protocol wants `LISTEN_PID` to be the worker's own pid,
which is only known between fork and exec. The child also gets its own process
group and a parent-death signal, so it never outlives a killed master.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Mapping, Sequence

from runtime.config.spec import AppSpec
from runtime.errors import SD_LISTEN_FDS_START
from runtime.proc.sockets import listen_env
from runtime.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
else:
    import _signal  # the C module `signal` wraps: its enums would cost start-up time

PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
EXEC_FAILED_CODE = 127


def libc_function(name: str) -> Callable[..., int] | None:
    """A C library function that returns an int, or None where the library lacks it.

    Called through `_ctypes`, the C module that `ctypes` is written on: importing
    `ctypes` itself builds every C type class, which costs the master start-up time
    before its first fork (bench/RESULTS.md, "Start-up").
    """
    from _ctypes import FUNCFLAG_CDECL, FUNCFLAG_USE_ERRNO, CFuncPtr, _SimpleCData, dlopen

    class CInt(_SimpleCData):  # type: ignore[type-arg]
        _type_ = "i"

    class Function(CFuncPtr):
        _flags_ = FUNCFLAG_CDECL | FUNCFLAG_USE_ERRNO
        _restype_ = CInt

    class Library:
        _handle = dlopen(None, 0)  # type: ignore[arg-type]  # None: this process's symbols

    try:
        return Function((name, Library()))  # type: ignore[arg-type]
    except AttributeError:  # no such symbol (malloc_trim on musl)
        return None


_prctl = libc_function("prctl")


def release_startup_memory() -> None:
    """Collect start-up garbage (config parsing, imports) and give freed heap back to the OS."""
    import gc

    gc.collect()
    trim = libc_function("malloc_trim")  # glibc; absent on musl
    if trim is not None:
        trim(0)


def set_child_subreaper() -> bool:
    """Adopt orphaned descendants (what PID 1 gets for free), so they are reaped here."""
    if os.getpid() == 1:
        return True
    return _prctl is not None and _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


@record
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
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


@record(frozen=False)
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
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, _signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(EXEC_FAILED_CODE)
        for sig in (
            _signal.SIGCHLD,
            _signal.SIGPIPE,
            _signal.SIGXFSZ,
            _signal.SIGINT,
            _signal.SIGTERM,
            _signal.SIGHUP,
            _signal.SIGQUIT,
            _signal.SIGUSR1,
            _signal.SIGTTIN,
            _signal.SIGTTOU,
        ):
            _signal.signal(sig, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, set())
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


def grow_pipe(fd: int, size: int = PIPE_SIZE) -> None:
    """Ask for a bigger pipe buffer: fewer wake-ups per MiB; refusal (quota, EPERM) is fine."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, size)


def make_pipe() -> tuple[int, int]:
    """A pipe for a worker's stdout or stderr: `(read_fd, write_fd)`, 1 MiB buffer.

    Both ends are O_CLOEXEC so no other worker inherits them (a leaked write end would
    keep the pipe from ever reaching EOF); dup2 onto fd 1/2 in the child clears the flag.
    """
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    grow_pipe(read_fd)
    return read_fd, write_fd


@record
class WorkerEnv:
    """What the master adds to every worker's environment, besides the app's own."""

    base: Mapping[str, str]
    notify_socket: str | None
    listen_fds: tuple[int, ...] = ()
    listen_names: tuple[str, ...] = ()


def worker_environment(spec: AppSpec, slot: int, wenv: WorkerEnv) -> dict[str, str]:
    """The full environment of one worker (DESIGN.md, Workers)."""
    env = dict(wenv.base)
    env.update(spec.env)
    env["RUNTIME_APP"] = spec.name
    env["RUNTIME_INSTANCE"] = str(slot)
    env["NODE_APP_INSTANCE"] = str(slot)
    if spec.instance_var:
        env[spec.instance_var] = str(slot)
    if spec.increment_var:
        base = env.get(spec.increment_var, "0")
        try:
            env[spec.increment_var] = str(int(base) + slot)
        except ValueError:
            env[spec.increment_var] = base
    for key in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
        env.pop(key, None)
    env.update(listen_env(len(wenv.listen_fds), wenv.listen_names))  # LISTEN_PID: in the child
    if wenv.notify_socket:
        env["NOTIFY_SOCKET"] = wenv.notify_socket
    return env


@record
class Forked:
    """A forked worker before the event loop owns it: pid, pipe read ends, start time."""

    slot: int
    pid: int
    stdout_fd: int
    stderr_fd: int
    started_at: float  # time.monotonic()


def fork_worker(spec: AppSpec, slot: int, wenv: WorkerEnv) -> Forked:
    """Fork/exec one worker with fresh stdout/stderr pipes (no event loop needed)."""
    out_r, out_w = make_pipe()
    err_r, err_w = make_pipe()
    req = SpawnRequest(
        argv=spec.argv,
        cwd=spec.cwd,
        env=worker_environment(spec, slot, wenv),
        stdout_fd=out_w,
        stderr_fd=err_w,
        listen_fds=wenv.listen_fds,
    )
    try:
        pid = spawn(req)
    finally:
        os.close(out_w)
        os.close(err_w)
    return Forked(slot, pid, out_r, err_r, time.monotonic())
