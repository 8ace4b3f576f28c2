"""Which of an app's slots take new connections (pure): the steering decision.

In `reuseport` mode each slot has its own socket, and only the slots named here receive
new connections (`runtime.proc.listeners` attaches the program). A connection that lands
on a slot is served by that slot's worker, so a slot without one must get none:

- the ready slots, when there are any (a worker that is up and ready);
- else the slots whose worker is starting: it will accept soon;
- else the slots waiting to restart: connections queue on them for the returning worker,
  as on a shared socket while workers restart;
- else none (every slot stopped or errored): the app's sockets are closed, so clients are
  refused instead of left hanging, and bound again when a worker starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class SlotState(StrEnum):
    """What a slot can do with a connection now."""

    READY = "ready"  # a worker that is up and ready accepts it
    STARTING = "starting"  # a worker is starting and will accept it
    WAITING = "waiting"  # no worker until a restart delay has passed
    IDLE = "idle"  # stopped, stopping, errored, or being removed: nobody will


def receiving_slots(states: Mapping[int, SlotState]) -> frozenset[int]:
    """The slots new connections go to; empty means none will serve: refuse them."""
    for wanted in (SlotState.READY, SlotState.STARTING, SlotState.WAITING):
        chosen = frozenset(slot for slot, state in states.items() if state is wanted)
        if chosen:
            return chosen
    return frozenset()


def hand_over_queue(
    slot: int, receiving: frozenset[int] | None, *, migrates: bool, replacing: bool
) -> bool:
    """Whether a slot whose worker died unasked closes its sockets at once (and gets fresh
    ones), so that the kernel moves what is queued on them to the receiving slots.

    Only where the kernel moves them (`net.ipv4.tcp_migrate_req=1`; without it the close
    would reset them, and they wait for the slot's next worker instead), only when other
    slots receive (else there is nowhere to move them), and not while a replacement is
    starting beside the slot's worker (a rolling reload owns the sockets then).
    """
    if not migrates or replacing or not receiving:
        return False
    return slot not in receiving
