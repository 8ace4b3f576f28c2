"""The master's first steps, before its event loop exists: sockets bound, workers forked.

Importing asyncio costs the master more than everything else it does at start
(bench/RESULTS.md, "Start-up"), so the workers are forked before that: they boot while
the master imports, a connection made meanwhile waits in a listener's backlog, a
READY=1 waits in the notify socket, and output waits in the pipes. The signals the
master handles are held pending until its loop has handlers for them. Nothing here
imports asyncio.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import tempfile
from collections import deque
from dataclasses import dataclass, field

from runtime.config.load import Ecosystem
from runtime.control.bind import bind_control
from runtime.errors import RuntimeUserError
from runtime.logs.formats import Source
from runtime.proc.libc import set_child_subreaper
from runtime.proc.listeners import AppListeners, bind_apps
from runtime.proc.notify import allow_other_users, bind_notify, notify_socket_path
from runtime.proc.spawn import Forked, fork_worker, worker_env

# what the start-up relay keeps for the log ring: the ring's own bound (logs.ring, which
# imports asyncio, so it is not imported here)
FORWARDED_MAX_BYTES = 2 << 20

HELD_SIGNALS = frozenset(
    {
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGQUIT,
        signal.SIGHUP,
        signal.SIGUSR1,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGCHLD,
    }
)


@dataclass(slots=True)
class Early:
    """Everything bound and forked before the event loop, for the supervisor to take over."""

    listeners: dict[str, AppListeners | None]
    notify_path: str
    notify_sock: socket.socket | None
    control_sock: socket.socket | None = None
    control_path: str = ""  # where control_sock answers (bound under another name)
    notify_dir: str | None = None
    workers: dict[str, list[Forked]] = field(default_factory=dict)  # per app
    announced: bool = False  # runtime_started/worker_started already written (runtime.boot.relay)
    announcements: list[dict[str, object]] = field(default_factory=list)  # those, for the ring
    pending: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # pid: partial lines
    # lines already forwarded (source, stream, timestamp, block), for the log ring: the
    # newest FORWARDED_MAX_BYTES of them (`remember`), handed over once (`take_forwarded`)
    forwarded: deque[tuple[Source, str, str, bytes]] = field(default_factory=deque)
    forwarded_bytes: int = 0
    unwritten: list[bytes] = field(default_factory=list)  # formatted, stdout has not taken it yet

    def remember(self, source: Source, stream: str, ts: str, block: bytes) -> None:
        """Keep a forwarded block for the log ring, dropping the oldest past the bound."""
        self.forwarded.append((source, stream, ts, block))
        self.forwarded_bytes += len(block)
        while self.forwarded_bytes > FORWARDED_MAX_BYTES and len(self.forwarded) > 1:
            self.forwarded_bytes -= len(self.forwarded.popleft()[3])

    def take_forwarded(self) -> list[tuple[Source, str, str, bytes]]:
        """The blocks kept for the log ring, once: the master's memory does not keep them."""
        taken = list(self.forwarded)
        self.forwarded.clear()
        self.forwarded_bytes = 0
        return taken

    def close(self) -> None:
        """Undo it all (a failure before the loop took over)."""
        for listeners in self.listeners.values():
            if listeners is not None:
                listeners.close()
        for sock, path in (
            (self.notify_sock, self.notify_path),
            (self.control_sock, self.control_path),
        ):
            if sock is not None:
                sock.close()
                with contextlib.suppress(OSError):
                    os.unlink(path)
        if self.notify_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self.notify_dir)
        release_signals()


def hold_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)


def release_signals() -> None:
    """Deliver what arrived meanwhile (call once the loop's handlers are installed)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)


def notify_path(control_path: str | None) -> tuple[str, str | None]:
    """NOTIFY_SOCKET beside the control socket; a private temp dir when there is none."""
    if control_path:
        return control_path.removesuffix(".sock") + ".notify", None
    directory = tempfile.mkdtemp(prefix="runtime-notify-")
    return notify_socket_path(directory), directory


def start_early(eco: Ecosystem, control_path: str | None) -> Early:
    """Bind the control socket, the listeners and the notify socket, then fork every worker.

    Any failure before the fork undoes what was bound and raises a one-line user error.
    """
    hold_signals()
    path, directory = notify_path(control_path)
    early = Early(listeners={}, notify_path=path, notify_sock=None, notify_dir=directory)
    try:
        early.control_path = control_path or ""
        early.control_sock = bind_control(control_path) if control_path else None
        early.listeners = bind_apps(eco.file, eco.apps)
        try:
            early.notify_sock = bind_notify(path)
            if any(spec.run_as is not None for spec in eco.apps):
                allow_other_users(path)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise RuntimeUserError(f"notify socket {path}: {reason} (set --control PATH)") from None
    except BaseException:
        early.close()
        raise
    set_child_subreaper()
    base = dict(os.environ)
    for spec in (s for s in eco.apps if s.autostart):
        bound = early.listeners[spec.name]
        early.workers[spec.name] = [
            fork_worker(spec, slot, worker_env(base, path, bound, slot))
            for slot in range(spec.instances)
        ]
    return early
