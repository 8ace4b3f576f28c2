"""The workers' first lines, forwarded while the master is still importing its event loop.

After `runtime.boot.early` has forked the workers, the main thread announces them and
imports the event loop's modules (asyncio, uvloop, structlog, the supervisor), while a
helper thread (the only thread the master ever starts, gone before the loop runs)
forwards every complete line they print, in the same format the log sink writes. The
announcements are written with the formatter directly, before structlog is imported
(`runtime.logs.events` renders the same bytes afterwards). What is left of a line is
handed to the worker's `WorkerLogs`, which goes on from there, so no line is lost,
split or merged.
The master's signals stay held meanwhile (`runtime.boot.early`), so nothing else can happen.
"""

from __future__ import annotations

import os
import select
import stat
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from runtime.boot.early import Early
from runtime.config.load import Ecosystem
from runtime.logs.formats import (
    STDERR,
    STDOUT,
    Chunk,
    LogFormat,
    Source,
    make_formatter,
    prefix_width,
    utc_timestamp,
)

RELAY_SWITCH_INTERVAL_S = 0.0005
READ_SIZE = 1 << 16
MAX_LINE = 64 * 1024


@dataclass(slots=True)
class _Stream:
    source: Source
    stream: str
    pending: bytes = b""
    open: bool = True


class Relay:
    """Forwards complete lines from every early worker's pipes to `fd`."""

    def __init__(self, early: Early, eco: Ecosystem, fmt: LogFormat, fd: int = 1) -> None:
        self.early = early
        self.eco = eco
        self.fd = fd
        widest = prefix_width((spec.name, spec.most_instances) for spec in eco.apps)
        self.formatter = make_formatter(fmt, widest)
        self.unwritten: list[bytes] = []  # formatted output stdout has not taken yet
        self.streams: dict[int, _Stream] = {}
        for app, forked in early.workers.items():
            for f in forked:
                source = Source(app, f.slot, f.pid)
                self.streams[f.stdout_fd] = _Stream(source, STDOUT)
                self.streams[f.stderr_fd] = _Stream(source, STDERR)

    def announce(self) -> None:
        """`runtime_started` and one `worker_started` per worker, as the supervisor would."""
        ts = utc_timestamp()
        names = [spec.name for spec in self.eco.apps]
        said: list[tuple[str, str | None, int | None, int, dict[str, object]]] = [
            ("runtime_started", None, None, os.getpid(), {"apps": names})
        ]
        for app, forked in self.early.workers.items():
            said += [("worker_started", app, f.slot, f.pid, {"restarts": 0}) for f in forked]
        self._write([self.formatter.event(ts, "info", *s) for s in said])
        for name, app_name, instance, pid, fields in said:
            where: dict[str, object] = {} if app_name is None else {"app": app_name}
            if instance is not None:
                where["instance"] = instance
            self.early.announcements.append(
                {"timestamp": ts, "level": "info", **where, "pid": pid, "event": name, **fields}
            )
        self.early.announced = True

    def run_until(self, done_fd: int) -> None:
        """Forward lines until `done_fd` is readable (the imports have finished).

        While stdout will not take what is formatted, no more is read from the workers
        (their pipes fill and they wait, as under the log sink), and nothing blocks: what
        is left when the imports end goes to the sink (`Early.unwritten`).
        """
        while True:
            stuck = bool(self.unwritten)
            fds = [
                fd
                for fd, s in self.streams.items()
                if s.open and len(s.pending) <= MAX_LINE and not stuck
            ]
            readable, writable, _ = select.select([done_fd, *fds], [self.fd] if stuck else [], [])
            if done_fd in readable:
                return
            if writable:
                self._flush()
            for fd in readable:
                self._forward(fd)

    def _forward(self, fd: int) -> None:
        s = self.streams[fd]
        data = os.read(fd, READ_SIZE)
        if not data:
            s.open = False  # EOF: WorkerLogs sees it too, and flushes the pending part
            return
        data = s.pending + data
        end = data.rfind(b"\n")
        if end < 0:
            s.pending = data
            return
        s.pending = data[end + 1 :]
        out: list[Chunk] = []
        ts, block = utc_timestamp(), data[: end + 1]
        self.formatter.lines_into(out, s.source, s.stream, ts, block, MAX_LINE)
        self._write(out)
        self.early.remember(s.source, s.stream, ts, block)

    def _write(self, pieces: list[Chunk] | list[bytes]) -> None:
        self.unwritten.append(b"".join(pieces))
        self._flush()

    def _flush(self) -> None:
        """Write what stdout takes now, without blocking (stdout is non-blocking meanwhile)."""
        while self.unwritten:
            data = self.unwritten[0]
            try:
                written = os.write(self.fd, data)
            except BlockingIOError:
                return
            except OSError:
                self.unwritten.clear()  # stdout is gone: the log sink will find out and count it
                return
            if written < len(data):
                self.unwritten[0] = data[written:]
            else:
                self.unwritten.pop(0)

    def pending(self, stdout_fd: int, stderr_fd: int) -> tuple[bytes, bytes]:
        """The partial lines of one worker, for its WorkerLogs."""
        return self.streams[stdout_fd].pending, self.streams[stderr_fd].pending


def relay_while(load: Callable[[], None], early: Early, eco: Ecosystem, fmt: LogFormat) -> Relay:
    """Run `load` (imports) here while a helper thread forwards lines, until it returns."""
    relay = Relay(early, eco, fmt)
    was_blocking = os.get_blocking(relay.fd)
    mode = os.fstat(relay.fd).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        os.set_blocking(relay.fd, False)  # the log sink does the same: never block on stdout
    relay.announce()
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    failure: list[BaseException] = []

    def forward() -> None:
        try:
            relay.run_until(done_r)
        except BaseException as exc:
            failure.append(exc)

    # The importing thread holds the GIL; a short switch interval lets the helper take it
    # within half a millisecond of a worker's line arriving, instead of up to 5 ms.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(RELAY_SWITCH_INTERVAL_S)
    helper = threading.Thread(target=forward, name="runtime-relay", daemon=True)
    try:
        helper.start()
        try:
            load()
        finally:
            os.write(done_w, b"x")
            helper.join()  # the helper has returned: the pipes are ours again
    finally:
        sys.setswitchinterval(interval)
        os.close(done_r)
        os.close(done_w)
        os.set_blocking(relay.fd, was_blocking)
    early.unwritten = relay.unwritten
    for forked in early.workers.values():
        for f in forked:
            early.pending[f.pid] = relay.pending(f.stdout_fd, f.stderr_fd)
    if failure:
        raise failure[0]
    return relay
