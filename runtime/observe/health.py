"""Whether the apps are up: the /health answer, and the state words the dashboard shows.

Two views of the same slots. `/health` is for the platform's probe: 200 only while every
slot (but those stopped by hand) is online and ready, else 503 with the worst reason.
The `state` of an app and of the runtime is for people: it tells a crash that is about
to be retried (`waiting restart`) from an app that has given up (`down`), and an app
that still serves with some instances gone (`degraded`) from one that does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runtime.observe.view import AppView, SlotView
from runtime.policy.lifecycle import AppStatus

# worst first: the reason /health gives when several apps are unwell
REASONS = ("draining", "errored", "stopped", "waiting restart", "starting", "reloading")
# worst first: the runtime's state is its worst app's (apps stopped by hand left out)
STATES = ("down", "degraded", "waiting restart", "starting", "reloading", "ok")
ENDED = frozenset({AppStatus.ERRORED, AppStatus.STOPPED, AppStatus.STOPPING})


def slot_ready(slot: SlotView) -> bool:
    """Online with a live worker: ONLINE is set only once the worker is ready (READY=1,
    health path or min_uptime), including a READY=1 that came after listen_timeout."""
    worker = slot.worker
    return slot.status is AppStatus.ONLINE and worker is not None and worker.alive


def app_problem(app: AppView) -> str | None:
    """Why this app does not count as up for /health, or None when it does.

    Instances stopped through the control API are left out: an operator who stops a
    background worker by hand has not made the container unhealthy.
    """
    slots = [s for s in app.slots.values() if not s.manual_stop]
    if any(s.status is AppStatus.ERRORED for s in slots):
        return "errored"
    unready = [s for s in slots if not slot_ready(s)]
    if not unready:
        return None
    if app.reloading:
        return None if len(unready) < len(slots) else "reloading"
    statuses = {s.status for s in unready}
    if statuses & {AppStatus.STOPPED, AppStatus.STOPPING}:
        return "stopped"
    if AppStatus.WAITING_RESTART in statuses:
        return "waiting restart"
    return "starting"


def health(apps: Iterable[AppView], draining: bool) -> tuple[int, dict[str, Any]]:
    """The /health status code and body."""
    if draining:
        return 503, {"status": "draining"}
    problems = {app.spec.name: p for app in apps if (p := app_problem(app)) is not None}
    if not problems:
        return 200, {"status": "ok"}
    worst = min(problems.values(), key=REASONS.index)
    return 503, {"status": worst, "apps": problems}


def app_state(app: AppView) -> str:
    """One of STATES, or `stopped` when every instance was stopped by hand.

    `down` and `degraded` are for instances that ended (errored, or stopped on their own
    and not restarted) with none or some of the others still serving; `waiting restart`
    is a crash that will be retried after its delay.
    """
    slots = [s for s in app.slots.values() if not s.manual_stop]
    if not slots:
        return "stopped" if app.slots else "ok"
    ready = [s for s in slots if slot_ready(s)]
    if len(ready) == len(slots):
        return "ok"
    statuses = {s.status for s in slots if not slot_ready(s)}
    if statuses & ENDED:
        return "degraded" if ready else "down"
    if app.reloading:
        return "reloading"
    if AppStatus.WAITING_RESTART in statuses:
        return "waiting restart"
    return "starting"


def runtime_state(states: Iterable[str], *, draining: bool, stopping: bool) -> str:
    """The header's word: `stopping` / `draining`, else the worst app state (or `ok`)."""
    if stopping:
        return "stopping"
    if draining:
        return "draining"
    return min((s for s in states if s in STATES), key=STATES.index, default="ok")
