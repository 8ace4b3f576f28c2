"""Where an app's new connections go, and the waits that keep queued ones from being reset.

Steering (reuseport mode): after every change of a slot's state the app calls `update`,
which steers new connections to the slots `policy.steering` names. When no slot will
serve and no worker still holds the sockets, they are closed, so clients are refused
rather than left hanging; the next worker's start binds them again.

Covering (reuseport mode, node workers): on the same updates, the ready workers whose
node preload serves an inherited socket are passed the sockets of every slot without a
ready worker (`policy.steering.covering_slots`, sent over the IPC channel), and serve
what the kernel queued there before the slot was steered away: a killed worker's queue
is served at once instead of by its replacement 50-100 ms later. They let those sockets
go when the slot's own worker is ready again (or the master closes them).

Draining: before a worker that owns sockets of its own is stopped (a reload's old
worker, a scaled-down or stopped slot), new connections are steered away from them and
`drain` waits, the worker still accepting, until their accept queues are empty. A
connection queued there is served, never reset by the close that follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from structlog.typing import FilteringBoundLogger

from runtime.policy.steering import covering_slots, receiving_slots
from runtime.proc.ipc import COVER_CMD, UNCOVER_CMD
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
        # a slot's socket -> (the slot, the workers of other slots serving it): covers
        self._covers: dict[Listener, tuple[int, set[Worker]]] = {}
        if listeners is not None:
            listeners.before_close = self._uncover

    def update(self, slots: Mapping[int, Slot], *, may_refuse: bool = True) -> None:
        """Steer new connections to the slots that will serve them (or refuse them all),
        and have the ready workers cover the slots without one (reuseport).

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
        if listeners.steered:
            self._cover(listeners, slots)

    def _cover(self, listeners: AppListeners, slots: Mapping[int, Slot]) -> None:
        """Pass each slot's sockets to the workers that should cover it and do not yet;
        the ones covering a slot that needs it no more (its own worker is ready again, or
        it was stopped on purpose) let go."""
        left_alone = frozenset(
            index for index, slot in slots.items() if slot.replacing is not None or slot.manual_stop
        )
        plan = covering_slots({i: slot.state for i, slot in slots.items()}, left_alone=left_alone)
        for _, covering in self._covers.values():
            covering.difference_update([w for w in covering if not w.alive])
        for index in slots:
            coverers = [
                worker
                for i in sorted(plan.get(index, ()))
                if (worker := slots[i].worker) is not None
                and worker.channel is not None
                and worker.listening.done()  # a node preload serving an inherited socket
            ]
            for listener in listeners.slot_sockets(index):
                if index not in plan:
                    self._uncover(listener)
                elif coverers:
                    self._cover_socket(index, listener, coverers)

    def _cover_socket(self, slot: int, listener: Listener, coverers: list[Worker]) -> None:
        """Send `listener` to each of `coverers` not serving it yet."""
        covering = self._covers.setdefault(listener, (slot, set()))[1]
        message: dict[str, object] = {"cmd": COVER_CMD, "slot": slot, "port": listener.address.port}
        for worker in coverers:
            if worker in covering or worker.channel is None:
                continue
            if worker.channel.send_socket(message, listener.fileno()):
                covering.add(worker)

    def _uncover(self, listener: Listener) -> None:
        """The workers covering `listener` let it go (its slot's worker is back, or the
        master is about to close it)."""
        slot, covering = self._covers.pop(listener, (0, set()))
        for worker in covering:
            if worker.alive and worker.channel is not None:
                worker.channel.send({"cmd": UNCOVER_CMD, "slot": slot})

    def covered_by(self, slot: int) -> list[int]:
        """The pids of the live workers serving `slot`'s sockets now."""
        return sorted(
            {
                worker.pid
                for index, covering in self._covers.values()
                if index == slot
                for worker in covering
                if worker.alive
            }
        )

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
