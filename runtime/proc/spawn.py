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
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runtime.config.spec import AppSpec, RunAs
from runtime.errors import SD_LISTEN_FDS_START
from runtime.proc.ipc import (
    CHANNEL_ENV,
    RUNTIME_CHANNEL_ENV,
    SERIALIZATION_ENV,
    close_child_end,
    make_channel,
)
from runtime.proc.libc import set_parent_death_signal
from runtime.proc.listeners import AppListeners
from runtime.proc.pipes import make_pipe
from runtime.proc.sockets import listen_env

EXEC_FAILED_CODE = 127
RUNTIME_KEYS = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET")
PORTS_ENV = "RUNTIME_PORTS"  # PORT=FD,... for the preloads
DRAIN_ENV = "RUNTIME_DRAIN_MS"  # how long the Python preload's drain may take at most
DRAIN_MARGIN_MS = 500  # ...so that the worker dies of SIGTERM before kill_timeout's SIGKILL
_PRELOAD_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "preload")
NODE_PRELOAD = os.path.join(_PRELOAD_DIR, "node.cjs")
PYTHON_PRELOAD = os.path.join(_PRELOAD_DIR, "python")  # holds only sitecustomize.py
# Signals the master handles or ignores, back to their defaults in the child before exec.
RESET_SIGNALS = (
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
)


@dataclass(slots=True)
class SpawnRequest:
    """Everything needed to fork and exec one worker."""

    argv: Sequence[str]
    cwd: str
    env: Mapping[str, str]
    stdout_fd: int
    stderr_fd: int
    pass_fds: Sequence[int] = ()  # placed at 3, 4, ...: the listeners, then the IPC channel
    listen_count: int = 0  # how many of pass_fds are listeners (LISTEN_FDS, LISTEN_PID)
    run_as: RunAs | None = None  # uid/gid to switch to before exec (the master is root)


def _child(req: SpawnRequest, parent_pid: int) -> None:
    """Runs in the forked child: only async-signal-tolerant os calls, then exec."""
    try:
        os.setpgid(0, 0)
        set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != parent_pid:
            os._exit(EXEC_FAILED_CODE)
        for sig in RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)  # the master's loop pipe: no signal of ours may reach it
        signal.pthread_sigmask(signal.SIG_SETMASK, set())  # blocked since before the fork
        # Move every fd we hand down above the target range first, so no dup2 clobbers one.
        floor = SD_LISTEN_FDS_START + len(req.pass_fds)
        out, err = (
            fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in (req.stdout_fd, req.stderr_fd)
        )
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in req.pass_fds]
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for i, fd in enumerate(moved):
            os.dup2(fd, SD_LISTEN_FDS_START + i, inheritable=True)
        env = dict(req.env)
        if req.listen_count:
            env["LISTEN_PID"] = str(os.getpid())
        if req.run_as is not None:
            _become(req.run_as)
        os.chdir(req.cwd)
        os.execvpe(req.argv[0], list(req.argv), env)
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            msg = f"runtime: cannot start {req.argv[0]!r}: {exc}\n".encode(errors="replace")
            os.write(2, msg)
    os._exit(EXEC_FAILED_CODE)


def _become(who: RunAs) -> None:
    """Drop to `who` in the child: supplementary groups, then the group, then the user."""
    try:
        os.initgroups(who.user, who.gid)
    except OSError:
        os.setgroups([who.gid])  # a uid with no password entry
    os.setgid(who.gid)
    os.setuid(who.uid)


def spawn(req: SpawnRequest) -> int:
    """Fork and exec one worker in its own process group; return its pid."""
    parent = os.getpid()
    # Every signal stays blocked across the fork until the child has reset the master's
    # handlers: a stop signal sent at once then kills the child (the default action)
    # instead of running the master's handler in it, which writes to the loop's wakeup
    # fd that the child shares, so the master took a worker's SIGTERM for its own.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child execs or exits
            _child(req, parent)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also in the parent, so a kill right away reaches the group
    return pid


@dataclass(frozen=True, slots=True)
class WorkerEnv:
    """What the master adds to every worker's environment, besides the app's own."""

    base: Mapping[str, str]
    notify_socket: str | None
    listen_fds: tuple[int, ...] = ()
    listen_names: tuple[str, ...] = ()
    listen_ports: tuple[int, ...] = ()  # per listener: its TCP port, 0 for a Unix socket


def worker_environment(spec: AppSpec, slot: int, wenv: WorkerEnv) -> dict[str, str]:
    """The full environment of one worker (README.md, "What each worker gets")."""
    env = {
        key: value
        for key, value in wenv.base.items()
        if spec.inherit_env and not any(part in key for part in spec.filter_env)
    }
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
    for key in (
        *RUNTIME_KEYS,
        PORTS_ENV,
        DRAIN_ENV,
        CHANNEL_ENV,
        SERIALIZATION_ENV,
        RUNTIME_CHANNEL_ENV,
    ):
        env.pop(key, None)
    env.update(listen_env(len(wenv.listen_fds), wenv.listen_names))  # LISTEN_PID: in the child
    if wenv.notify_socket:
        env["NOTIFY_SOCKET"] = wenv.notify_socket
    if spec.node:  # the IPC channel goes right after the listeners
        env[CHANNEL_ENV] = str(SD_LISTEN_FDS_START + len(wenv.listen_fds))
        env[SERIALIZATION_ENV] = "json"
        env[RUNTIME_CHANNEL_ENV] = "1"
    if spec.exec_mode == "cluster" and spec.preload and any(wenv.listen_ports):
        env.update(preload_env(env, wenv.listen_ports))
        env[DRAIN_ENV] = str(drain_limit_ms(spec.kill_timeout_ms))
    elif spec.node and spec.preload:  # no port to adopt: the node preload reports metrics
        env["NODE_OPTIONS"] = node_options(env)
    return env


def drain_limit_ms(kill_timeout_ms: int) -> int:
    """The longest drain the Python preload may run on SIGTERM: kill_timeout less a margin,
    so a worker that drains to the end still dies of its SIGTERM, not of the SIGKILL."""
    return max(0, kill_timeout_ms - DRAIN_MARGIN_MS)


def node_options(env: Mapping[str, str]) -> str:
    """The user's NODE_OPTIONS with the node preload required after them."""
    return f'{env.get("NODE_OPTIONS", "")} --require "{NODE_PRELOAD}"'.strip()


def preload_env(env: Mapping[str, str], ports: Sequence[int]) -> dict[str, str]:
    """`RUNTIME_PORTS` and the two preloads (runtime/preload/): a worker's `listen(PORT)`
    or `bind((host, PORT))` on a pre-bound port adopts the inherited socket."""
    listed = ",".join(f"{port}={SD_LISTEN_FDS_START + i}" for i, port in enumerate(ports) if port)
    python_path = os.pathsep.join(p for p in (PYTHON_PRELOAD, env.get("PYTHONPATH")) if p)
    return {PORTS_ENV: listed, "NODE_OPTIONS": node_options(env), "PYTHONPATH": python_path}


@dataclass(frozen=True, slots=True)
class Forked:
    """A forked worker before the event loop owns it: pid, pipe read ends, start time."""

    slot: int
    pid: int
    stdout_fd: int
    stderr_fd: int
    started_at: float  # time.monotonic()
    channel: socket.socket | None = None  # the master's end of a node worker's IPC channel


def fork_worker(spec: AppSpec, slot: int, wenv: WorkerEnv) -> Forked:
    """Fork/exec one worker with fresh stdout/stderr pipes (no event loop needed)."""
    channel, child_end = make_channel() if spec.node else (None, None)
    out_r, out_w = make_pipe()
    err_r, err_w = make_pipe()
    extra = () if child_end is None else (child_end,)
    req = SpawnRequest(
        argv=spec.argv,
        cwd=spec.cwd,
        env=worker_environment(spec, slot, wenv),
        stdout_fd=out_w,
        stderr_fd=err_w,
        pass_fds=(*wenv.listen_fds, *extra),
        listen_count=len(wenv.listen_fds),
        run_as=spec.run_as,
    )
    try:
        pid = spawn(req)
    except BaseException:
        if channel is not None:
            channel.close()
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
        close_child_end(child_end)
    return Forked(slot, pid, out_r, err_r, time.monotonic(), channel)


def worker_env(
    base: Mapping[str, str],
    notify: str | None,
    listeners: AppListeners | None,
    slot: int,
    *,
    pending: bool = False,
) -> WorkerEnv:
    """What the master adds for one slot: NOTIFY_SOCKET and the slot's listeners (a
    reload's own, with `pending`). ListenError if a socket must be bound again and cannot."""
    if listeners is None:
        return WorkerEnv(base=base, notify_socket=notify)
    listeners.ensure_slot(slot)
    return WorkerEnv(
        base=base,
        notify_socket=notify,
        listen_fds=tuple(listeners.fds_for_slot(slot, pending=pending)),
        listen_names=tuple(listeners.names_for_slot(slot, pending=pending)),
        listen_ports=tuple(a.port if a.kind != "unix" else 0 for a in listeners.addresses),
    )
