"""One instance number of an app and what runs in it, and what every app shares."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from runtime.logs.sink import LogSink
from runtime.policy.lifecycle import AppStatus
from runtime.policy.restart import RestartState, reset_state
from runtime.policy.steering import SlotState
from runtime.proc.reaper import Reaper
from runtime.supervise.worker import Worker

EXIT_HISTORY = 10


@dataclass
class AppContext:
    """What every app shares with the master."""

    loop: asyncio.AbstractEventLoop
    sink: LogSink
    reaper: Reaper
    base_env: Mapping[str, str]
    notify_socket: str | None
    shutting_down: Callable[[], bool]
    changed: Callable[[], None]
    next_id: Callable[[], int]
    recent_output: Callable[[str, int], list[bytes]]  # (app, pid): its last lines, from the ring


@dataclass(eq=False)
class Slot:
    """One instance number of an app and whatever currently runs in it."""

    index: int
    id: int = 0
    worker: Worker | None = None
    status: AppStatus = AppStatus.LAUNCHING
    restart_state: RestartState = field(default_factory=reset_state)
    timer: asyncio.TimerHandle | None = None
    ended: bool = False
    failed: bool = False
    restarts: int = 0
    replacing: Worker | None = None
    manual_stop: bool = False  # stopped through the control API: not an ending for auto-exit
    spawn_failures: int = 0  # forks in a row that failed (EAGAIN, EMFILE...), for the backoff
    exits: deque[tuple[float, int | None, int | None]] = field(
        default_factory=lambda: deque(maxlen=EXIT_HISTORY)
    )

    @property
    def state(self) -> SlotState:
        """What the slot can do with a new connection now (runtime.policy.steering)."""
        alive = self.worker is not None and self.worker.alive
        if alive and self.status is AppStatus.ONLINE:
            return SlotState.READY
        if alive and self.status is AppStatus.LAUNCHING:
            return SlotState.STARTING
        if self.status is AppStatus.WAITING_RESTART:
            return SlotState.WAITING
        return SlotState.IDLE

    def live_workers(self) -> list[Worker]:
        """The slot's running processes: its worker and a replacement starting beside it."""
        return [w for w in (self.worker, self.replacing) if w is not None and w.alive]

    def cancel_timer(self) -> None:
        """Drop a scheduled restart (the slot is being started, stopped or removed now)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
