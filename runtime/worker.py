"""One running worker process: its pid, pipes, readiness and exit, as the app sees it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from runtime.logs import LogSink, WorkerLogs, make_pipe
from runtime.process import ExitStatus, Reaper, SpawnRequest, spawn
from runtime.spec import AppSpec


@dataclass(frozen=True, slots=True)
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
    if wenv.listen_fds:
        env["LISTEN_FDS"] = str(len(wenv.listen_fds))
        env["LISTEN_FDNAMES"] = ":".join(wenv.listen_names)
    if wenv.notify_socket:
        env["NOTIFY_SOCKET"] = wenv.notify_socket
    return env


@dataclass(eq=False)
class Worker:
    """A live (or just ended) worker process of one app slot."""

    app: str
    slot: int
    pid: int
    started_at: float
    logs: WorkerLogs
    exited: asyncio.Future[ExitStatus]
    ready: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    notified: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )  # READY=1 arrived on NOTIFY_SOCKET
    stopping: bool = False
    status_text: str | None = None
    restart_pending: bool = False

    def __str__(self) -> str:
        return f"{self.app}#{self.slot} pid {self.pid}"

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    def mark_ready(self, value: bool = True) -> None:
        if not self.ready.done():
            self.ready.set_result(value)

    def mark_notified(self) -> None:
        if not self.notified.done():
            self.notified.set_result(None)


def start_worker(
    spec: AppSpec,
    slot: int,
    wenv: WorkerEnv,
    *,
    sink: LogSink,
    reaper: Reaper,
    loop: asyncio.AbstractEventLoop,
    on_exit: Callable[[Worker, ExitStatus], None],
) -> Worker:
    """Fork/exec one worker with its pipes wired to the log sink and its exit to the reaper."""
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
    exited: asyncio.Future[ExitStatus] = loop.create_future()
    logs = WorkerLogs(sink, app=spec.name, instance=slot, pid=pid, stdout_fd=out_r, stderr_fd=err_r)
    worker = Worker(
        app=spec.name,
        slot=slot,
        pid=pid,
        started_at=loop.time(),
        logs=logs,
        exited=exited,
    )
    reaper.watch(pid, lambda status: on_exit(worker, status))
    return worker
