"""The rolling zero-downtime reload, one instance slot at a time.

For each slot: start a replacement, wait until it is ready, then stop the old worker
gracefully. A replacement that dies or never becomes ready (the supervisor reports
both as `ReplacementFailed`) is killed, the old worker keeps serving, and the rollout
ends there as failed: unlike pm2, an old worker is never stopped for a broken build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True, slots=True)
class StartReplacement:
    """Spawn a new worker for `slot` next to the old one and watch it for readiness."""

    slot: int


@dataclass(frozen=True, slots=True)
class StopOld:
    """Stop the old worker of `slot` gracefully (TERM, kill_timeout, KILL)."""

    slot: int


@dataclass(frozen=True, slots=True)
class KillReplacement:
    """Kill the replacement of `slot` (it may be dead already); the old worker stays."""

    slot: int


@dataclass(frozen=True, slots=True)
class ReloadFinished:
    """The rollout is over; `reloaded` lists the slots that now run the new worker."""

    ok: bool
    reloaded: tuple[int, ...]
    failed_slot: int | None = None
    reason: str | None = None


Action = StartReplacement | StopOld | KillReplacement | ReloadFinished


@dataclass(frozen=True, slots=True)
class ReplacementReady:
    """The replacement of `slot` is ready (READY=1, health path, or listen_timeout)."""

    slot: int


@dataclass(frozen=True, slots=True)
class ReplacementFailed:
    """The replacement of `slot` died or did not become ready in time."""

    slot: int
    reason: str


@dataclass(frozen=True, slots=True)
class OldStopped:
    """The old worker of `slot` has exited (and been reaped)."""

    slot: int


Event = ReplacementReady | ReplacementFailed | OldStopped

Phase = Literal["replacing", "stopping_old", "finished"]


@dataclass(frozen=True, slots=True)
class Rollout:
    """Where the rollout is: `slots[index]` is in `phase`; `done` were reloaded."""

    slots: tuple[int, ...]
    index: int = 0
    phase: Phase = "replacing"
    done: tuple[int, ...] = ()

    @property
    def current(self) -> int | None:
        """The slot being reloaded, None once finished."""
        return None if self.phase == "finished" else self.slots[self.index]

    @property
    def finished(self) -> bool:
        """True once `ReloadFinished` has been emitted."""
        return self.phase == "finished"


def plan_rollout(slots: Sequence[int]) -> tuple[Rollout, list[Action]]:
    """Start the rollout over `slots` in the given order (a repeated slot counts once)."""
    unique = tuple(dict.fromkeys(slots))
    if not unique:
        return Rollout((), phase="finished"), [ReloadFinished(ok=True, reloaded=())]
    return Rollout(unique), [StartReplacement(unique[0])]


def step_rollout(r: Rollout, event: Event) -> tuple[Rollout, list[Action]]:
    """Advance on one event; an event for another slot or phase is ignored (no actions)."""
    if r.finished or event.slot != r.current:
        return r, []
    if r.phase == "replacing" and isinstance(event, ReplacementReady):
        return replace(r, phase="stopping_old"), [StopOld(event.slot)]
    if r.phase == "replacing" and isinstance(event, ReplacementFailed):
        return _fail(r, event.slot, event.reason)
    if r.phase == "stopping_old" and isinstance(event, OldStopped):
        return _next_slot(r, event.slot)
    return r, []


def _fail(r: Rollout, slot: int, reason: str) -> tuple[Rollout, list[Action]]:
    """Kill the replacement of `slot` and report the rollout failed there."""
    finished = replace(r, phase="finished")
    return finished, [
        KillReplacement(slot),
        ReloadFinished(ok=False, reloaded=r.done, failed_slot=slot, reason=reason),
    ]


def _next_slot(r: Rollout, slot: int) -> tuple[Rollout, list[Action]]:
    """Record `slot` as reloaded and start the next one, or finish."""
    done = (*r.done, slot)
    if r.index + 1 == len(r.slots):
        return replace(r, phase="finished", done=done), [ReloadFinished(ok=True, reloaded=done)]
    nxt = r.index + 1
    return Rollout(r.slots, nxt, "replacing", done), [StartReplacement(r.slots[nxt])]
