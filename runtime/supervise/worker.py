"""One running worker process: its pid, pipes, readiness and exit, as the app sees it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.config.spec import AppSpec
from runtime.logs.sink import LogSink, WorkerLogs
from runtime.observe.appmetrics import AppMetrics
from runtime.observe.identity import app_version
from runtime.proc.ipc import Channel
from runtime.proc.reaper import ExitStatus, Reaper
from runtime.proc.spawn import Forked


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
    )  # READY=1 on NOTIFY_SOCKET, or process.send('ready')
    listening: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )  # the node preload saw a server listen on an inherited socket
    stopping: bool = False
    status_text: str | None = None
    restart_pending: bool = False
    channel: Channel | None = None  # node's IPC channel (process.send)
    version: str | None = None  # the app's version when this worker started (observe.identity)
    app_metrics: AppMetrics = field(default_factory=AppMetrics)  # its latest own report

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

    def mark_listening(self) -> None:
        if not self.listening.done():
            self.listening.set_result(None)


def adopt_worker(
    spec: AppSpec,
    forked: Forked,
    *,
    sink: LogSink,
    reaper: Reaper,
    loop: asyncio.AbstractEventLoop,
    on_exit: Callable[[Worker, ExitStatus], None],
    on_message: Callable[[Worker, object], None],
    pending: tuple[bytes, bytes] = (b"", b""),
) -> Worker:
    """Wire a forked worker's pipes to the log sink, its IPC channel to `on_message`, and
    its exit to the reaper."""
    logs = WorkerLogs(
        sink,
        app=spec.name,
        instance=forked.slot,
        pid=forked.pid,
        stdout_fd=forked.stdout_fd,
        stderr_fd=forked.stderr_fd,
        pending=pending,
    )
    age = time.monotonic() - forked.started_at
    worker = Worker(
        app=spec.name,
        slot=forked.slot,
        pid=forked.pid,
        started_at=loop.time() - age,
        logs=logs,
        exited=loop.create_future(),
        version=app_version(spec),
    )
    if forked.channel is not None:
        worker.channel = Channel(forked.channel, lambda message: on_message(worker, message))
        worker.channel.start(loop)
    reaper.watch(forked.pid, lambda status: on_exit(worker, status))
    return worker
