"""Rolling replacement of an app's workers: the side effects of `policy.rollout`.

Per slot: start the replacement, wait until it is ready, then stop the old worker
gracefully. A replacement that dies or is not ready in time is stopped, the old worker
keeps serving, and the rollout ends there, reported as failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from runtime.policy.lifecycle import AppStatus
from runtime.policy.restart import reset_state
from runtime.policy.rollout import (
    Action,
    Event,
    KillReplacement,
    OldStopped,
    ReloadFinished,
    ReplacementFailed,
    ReplacementReady,
    StartReplacement,
    StopOld,
    plan_rollout,
    step_rollout,
)

if TYPE_CHECKING:
    from runtime.supervise.app import App, Slot
    from runtime.supervise.worker import Worker


async def rolling_reload(app: App, slots: Sequence[int] | None = None) -> bool:
    """Reload `slots` (default: all) one at a time; one reload per app at a time."""
    if app.reloading:
        app.app_event("reload_skipped", level="warning", reason="a reload is already running")
        return False
    app.reloading = True
    try:
        rollout, actions = plan_rollout(sorted(app.slots) if slots is None else slots)
        while True:
            for action in actions:
                if isinstance(action, ReloadFinished):
                    _report(app, action)
                    return action.ok
            event = await _run(app, actions)
            if event is None:
                return False
            rollout, actions = step_rollout(rollout, event)
    finally:
        app.reloading = False


async def replace_slot(app: App, slot: Slot) -> bool:
    """Replace one slot's worker with zero downtime (memory limit); False if it failed."""
    if app.reloading:
        return False  # the running reload replaces it anyway
    app.reloading = True
    try:
        event = await _start_replacement(app, slot.index)
        if isinstance(event, ReplacementReady):
            await _stop_old(app, slot.index)
            return True
        if slot.replacing is not None:
            await app.stop_worker(slot.replacing)
            slot.replacing = None
        return False
    finally:
        app.reloading = False


def _report(app: App, done: ReloadFinished) -> None:
    if done.ok:
        app.app_event("reload_done", slots=list(done.reloaded))
    else:
        app.app_event(
            "reload_failed",
            level="error",
            slot=done.failed_slot,
            reason=done.reason,
            reloaded=list(done.reloaded),
        )


async def _run(app: App, actions: Sequence[Action]) -> Event | None:
    event: Event | None = None
    for action in actions:
        if app.ctx.shutting_down():
            return None
        if isinstance(action, StartReplacement):
            event = await _start_replacement(app, action.slot)
        elif isinstance(action, StopOld):
            event = await _stop_old(app, action.slot)
        elif isinstance(action, KillReplacement):
            slot = app.slots.get(action.slot)
            if slot is not None and slot.replacing is not None:
                await app.stop_worker(slot.replacing)
                slot.replacing = None
    return event


async def _start_replacement(app: App, index: int) -> Event:
    slot = app.slots.get(index)
    if slot is None:
        return ReplacementFailed(index, "slot removed")
    if slot.worker is None or not slot.worker.alive:
        if slot.timer is not None:
            slot.timer.cancel()
        slot.restart_state = reset_state()
        fresh = app.spawn_into(slot)  # nothing to overlap with: start it in place
        if await fresh.ready and fresh.alive:
            return ReplacementReady(index)
        return ReplacementFailed(index, not_ready_reason(fresh))
    new = app.spawn_worker(slot)
    slot.replacing = new
    if await new.ready and new.alive:
        return ReplacementReady(index)
    return ReplacementFailed(index, not_ready_reason(new))


async def _stop_old(app: App, index: int) -> Event:
    slot = app.slots.get(index)
    if slot is None or slot.replacing is None:  # started in place: nothing old to stop
        return OldStopped(index)
    old, new = slot.worker, slot.replacing
    slot.worker, slot.replacing = new, None
    slot.restarts += 1
    slot.restart_state = reset_state()
    slot.status = AppStatus.ONLINE
    if old is not None and old.alive:
        await app.stop_worker(old)
    return OldStopped(index)


def not_ready_reason(worker: Worker) -> str:
    if worker.exited.done():
        return f"exited with {worker.exited.result().describe()}"
    return "not ready within listen_timeout"
