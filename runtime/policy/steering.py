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

What the kernel queued on a slot whose worker died unasked, before the master steered
away from it, is handed over (`hand_over_queue`, where the kernel can move it); the
ready workers that can take another slot's socket serve it meanwhile (`covering_slots`)
until the slot's next worker is ready.
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


def covering_slots(
    states: Mapping[int, SlotState], *, left_alone: frozenset[int] = frozenset()
) -> dict[int, frozenset[int]]:
    """Which slots' workers serve the sockets of which others: every slot without a ready
    worker (dead, starting, backing off, errored) is covered by every ready slot, so what
    the kernel queued on its sockets before it was steered away is served now rather than
    when, or if, its next worker is ready. `left_alone`: slots whose sockets are another's
    business (a reload's replacement starting beside the worker, a slot stopped on purpose
    after its queue was drained). A slot with no ready slot to cover it is not listed."""
    ready = frozenset(i for i, state in states.items() if state is SlotState.READY)
    if not ready:
        return {}
    return {
        i: ready
        for i, state in states.items()
        if state is not SlotState.READY and i not in left_alone
    }
