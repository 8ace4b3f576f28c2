"""The load no peer can see: connections waiting in the master's own listening sockets.

The master holds every listener, so it can read each accept queue: connections the
kernel has completed for the app that no worker has taken yet (TCP_INFO on a TCP
listener, sock_diag for a Unix one; `runtime.proc.backlog`). Reading a queue costs a
microsecond or two and touches nothing on the data path. `LoadSampler.sample` reads
every queue twice a second (`SAMPLE_EVERY_S`); from those samples come:

- per listener (and per slot, in reuseport mode): the backlog now, and its high-water
  mark since the last scrape (`take_peaks`);
- per app: saturation, the share of the last `WINDOW_S` seconds in which any of its
  queues held a connection: the autoscaler's signal;
- per slot: how long its own queue has held connections without shrinking, "seconds
  since it last accepted" (0 while it takes what arrives).
"""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from runtime.proc.backlog import open_diag, tcp_backlog, unix_backlog
from runtime.proc.listeners import AppListeners
from runtime.proc.sockets import Listener

SAMPLE_EVERY_S = 0.5  # 20 samples per window: enough for saturation, nothing at idle
WINDOW_S = 10.0


@dataclass(frozen=True, slots=True)
class QueueKey:
    """One accept queue: the app, the listener as `list` shows it, the slot (reuseport)."""

    app: str
    listener: str
    slot: int | None


Listeners = tuple[str, AppListeners | None]  # an app's name and its listeners


def queues(name: str, listeners: AppListeners | None) -> Iterator[tuple[QueueKey, Listener]]:
    """Every listening socket of app `name` the master holds, with its key."""
    if listeners is None or listeners.suspended:
        return
    for listener in listeners.shared:
        yield QueueKey(name, str(listener), None), listener
    for slot, own in sorted(listeners.per_slot.items()):
        for listener in own:
            yield QueueKey(name, str(listener), slot), listener


class LoadSampler:
    """Backlog samples of every app's listeners, and what they add up to."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self.backlog: dict[QueueKey, int] = {}
        self._peaks: dict[QueueKey, int] = {}
        self._busy: dict[str, deque[tuple[float, bool]]] = {}  # app -> (at, queued)
        self._stuck: dict[tuple[str, int], tuple[float, int]] = {}  # since, depth
        self._diag: socket.socket | None = None

    def _depth(self, listener: Listener) -> int | None:
        try:
            if listener.address.kind != "unix":
                return tcp_backlog(listener.sock)[0]
            if self._diag is None:
                self._diag = open_diag()
            found = unix_backlog(listener.sock, diag=self._diag)
            return None if found is None else found[0]
        except (OSError, ValueError):  # closed meanwhile, or the kernel does not tell
            return None

    def sample(self, apps: Iterable[Listeners], now: float) -> None:
        """Read every queue once; remember depths, peaks, busy time and stuck slots."""
        seen: set[QueueKey] = set()
        for name, listeners in apps:
            busy = False
            for key, listener in queues(name, listeners):
                depth = self._depth(listener)
                if depth is None:
                    continue
                seen.add(key)
                self.backlog[key] = depth
                self._peaks[key] = max(depth, self._peaks.get(key, 0))
                busy = busy or depth > 0
                if key.slot is not None:
                    self._track_stuck((key.app, key.slot), depth, now)
            history = self._busy.setdefault(name, deque())
            history.append((now, busy))
            while history and history[0][0] < now - self.window_s:
                history.popleft()
        for gone in self.backlog.keys() - seen:
            del self.backlog[gone]
            self._peaks.pop(gone, None)

    def _track_stuck(self, slot: tuple[str, int], depth: int, now: float) -> None:
        since, before = self._stuck.get(slot, (now, 0))
        if depth == 0 or depth < before:
            self._stuck[slot] = (now, depth)  # empty, or a worker took some: accepting
        else:
            self._stuck[slot] = (since, depth)

    def take_peaks(self) -> dict[QueueKey, int]:
        """The high-water mark of each queue since the last call (a scrape), then reset."""
        peaks, self._peaks = self._peaks, dict(self.backlog)
        return peaks

    def saturation(self, app: str) -> float:
        """The share of the last window in which some queue of `app` held a connection."""
        history = self._busy.get(app)
        if not history:
            return 0.0
        return sum(1 for _, busy in history if busy) / len(history)

    def accept_idle_s(self, app: str, slot: int, now: float) -> float:
        """How long the slot's own queue has held connections without shrinking."""
        since, depth = self._stuck.get((app, slot), (now, 0))
        return round(now - since, 3) if depth else 0.0

    def app_backlog(self, app: str) -> int:
        """Connections waiting for `app` now, over all its queues."""
        return sum(depth for key, depth in self.backlog.items() if key.app == app)

    def close(self) -> None:
        if self._diag is not None:
            with contextlib.suppress(OSError):
                self._diag.close()
            self._diag = None
