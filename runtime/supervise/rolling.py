"""Rolling replacement of an app's workers: the side effects of `policy.rollout`.

Per slot: start the replacement, wait until it is ready, then stop the old worker
gracefully. A replacement that dies or is not ready in time is stopped, the old worker
keeps serving, and the rollout ends there, reported as failed.

The app is seen through `Rollable`: every change to a slot goes through one of its
methods (`App` implements them), so this module and `app` do not import each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

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
from runtime.proc.reaper import ExitStatus
from runtime.supervise.worker import Worker


class Rollable(Protocol):
    """What a rolling reload needs of an app."""

    def shutting_down(self) -> bool: ...

    def start_replacement(self, index: int) -> Worker | None:
        """Spawn the slot's next worker (in place when nothing runs there); None: no slot."""
        ...

    def promote_replacement(self, index: int) -> Worker | None:
        """Make the ready replacement the slot's worker; the old worker, to retire, or None."""
        ...

    async def retire(self, old: Worker) -> None:
        """Stop a replaced worker once it has served what was queued for it."""
        ...

    async def discard_replacement(self, index: int) -> None:
        """Stop the slot's replacement (if any) and forget it; the old worker stays."""
        ...

    async def stop_worker(self, worker: Worker) -> ExitStatus: ...

    def app_event(self, name: str, *, level: str = "info", **fields: Any) -> None: ...


async def rolling_reload(app: Rollable, slots: Sequence[int]) -> ReloadFinished | None:
    """Reload `slots` one at a time; the first failure stops the rollout (and is reported).

    Returns how it ended (which slots were reloaded), or None when a stop cut it short.
    """
    rollout, actions = plan_rollout(slots)
    while True:
        event: Event | None = None
        for action in actions:
            if isinstance(action, ReloadFinished):
                _report(app, action)
                return action
            if app.shutting_down():
                await app.discard_replacement(rollout.slots[rollout.index])
                return None
            event = await _run(app, action) or event
        if event is None:
            return None
        rollout, actions = step_rollout(rollout, event)


async def replace_slot(app: Rollable, index: int) -> bool:
    """Replace one slot's worker with zero downtime (memory limit); False if it failed."""
    event = await _start_replacement(app, index)
    if isinstance(event, ReplacementReady):
        await _stop_old(app, index)
        return True
    await app.discard_replacement(index)
    return False


async def _run(app: Rollable, action: Action) -> Event | None:
    """One action; the event it produced (a kill produces none)."""
    if isinstance(action, StartReplacement):
        return await _start_replacement(app, action.slot)
    if isinstance(action, StopOld):
        return await _stop_old(app, action.slot)
    if isinstance(action, KillReplacement):
        await app.discard_replacement(action.slot)
    return None


def _report(app: Rollable, done: ReloadFinished) -> None:
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


async def _start_replacement(app: Rollable, index: int) -> Event:
    new = app.start_replacement(index)
    if new is None:
        return ReplacementFailed(index, "slot removed")
    if await new.ready and new.alive:
        return ReplacementReady(index)
    return ReplacementFailed(index, not_ready_reason(new))


async def _stop_old(app: Rollable, index: int) -> Event:
    old = app.promote_replacement(index)
    if old is not None:
        await app.retire(old)
    return OldStopped(index)


def not_ready_reason(worker: Worker) -> str:
    """Why a replacement failed, for `reload_failed`."""
    if worker.exited.done():
        return f"exited with {worker.exited.result().describe()}"
    return "not ready within listen_timeout"
