"""Where an app's new connections go, and the waits that keep queued ones from being reset.

Steering (reuseport mode): after every change of a slot's state the app calls `update`,
which steers new connections to the slots `policy.steering` names. When no slot will
serve and no worker still holds the sockets, they are closed, so clients are refused
rather than left hanging; the next worker's start binds them again.

Draining: before a worker that owns sockets of its own is stopped (a reload's old
worker, a scaled-down or stopped slot), new connections are steered away from them and
`drain` waits, the worker still accepting, until their accept queues are empty. A
connection queued there is served, never reset by the close that follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from structlog.typing import FilteringBoundLogger

from runtime.policy.steering import receiving_slots
from runtime.proc.listeners import AppListeners
from runtime.proc.sockets import Listener
from runtime.proc.steer import SteerError
from runtime.supervise.slot import Slot
from runtime.supervise.worker import Worker

# A handshake the kernel steered to a socket just before the switch completes about one
# client round trip later, into that socket's queue: wait this long before trusting "empty".
DRAIN_SETTLE_S = 0.1
DRAIN_TIMEOUT_S = 5.0  # a worker that stops accepting does not hold a stop up longer
DRAIN_POLL_S = 0.005


class Traffic:
    """One app's listeners, steered by its slots' states."""

    def __init__(self, listeners: AppListeners | None, log: FilteringBoundLogger) -> None:
        self.listeners = listeners
        self.log = log

    def update(self, slots: Mapping[int, Slot], *, may_refuse: bool = True) -> None:
        """Steer new connections to the slots that will serve them (or refuse them all).

        `may_refuse=False` only steers: it is for the moment a worker is seen to exit,
        before its slot's next worker is decided, when no slot receiving must not yet
        mean closing the sockets.
        """
        listeners = self.listeners
        if listeners is None or listeners.suspended:
            return
        receiving = receiving_slots({index: slot.state for index, slot in slots.items()})
        if not receiving:
            if may_refuse and not any(slot.live_workers() for slot in slots.values()):
                listeners.suspend()
                self.log.info(
                    "listeners_closed", reason="no worker to serve: refused until one starts"
                )
            return
        if listeners.steered and receiving != listeners.receiving:
            try:
                listeners.steer(receiving)
            except SteerError as exc:
                self.log.warning("steer_failed", error=str(exc), slots=sorted(receiving))

    async def drain(self, sockets: Sequence[Listener], worker: Worker | None) -> int:
        """Wait until nothing is queued on `sockets` (steered away from already) while
        `worker` still accepts; at most DRAIN_TIMEOUT_S. Returns what is left queued."""
        if self.listeners is None or not sockets:
            return 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        await asyncio.sleep(DRAIN_SETTLE_S)
        while (left := self.listeners.queued(sockets)) and loop.time() < deadline:
            if worker is None or not worker.alive:
                break  # nobody accepts: what is queued waits for the slot's next worker
            await asyncio.sleep(DRAIN_POLL_S)
        return left
