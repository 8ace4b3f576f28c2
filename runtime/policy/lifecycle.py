"""App statuses, auto-exit of the master, and escalation of stop signals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from runtime.errors import EXIT_FAILED, EXIT_OK


class AppStatus(StrEnum):
    """The pm2 status names, as `list` and `/status` show them."""

    LAUNCHING = "launching"
    ONLINE = "online"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERRORED = "errored"
    WAITING_RESTART = "waiting restart"


@dataclass(frozen=True, slots=True)
class AppOutcome:
    """`ended`: nothing runs or is scheduled; `failed`: it ended errored or on a failed exit."""

    ended: bool
    failed: bool


def decide_auto_exit(outcomes: Mapping[str, AppOutcome], *, auto_exit: bool) -> int | None:
    """The master's exit code once every app has ended for good, else None (keep running).

    0 when every app ended cleanly (a one-shot job), 1 when at least one failed, so the
    platform restarts the container. Unlike pm2-runtime, an app in `waiting restart`
    has not ended, and no app at all (or `--no-auto-exit`) never exits.
    """
    if not auto_exit or not outcomes:
        return None
    if not all(outcome.ended for outcome in outcomes.values()):
        return None
    return EXIT_FAILED if any(outcome.failed for outcome in outcomes.values()) else EXIT_OK


class StopKind(StrEnum):
    """How to stop the workers: TERM then KILL after `kill_timeout`, or KILL at once."""

    GRACEFUL = "graceful"
    KILL = "kill"


GRACEFUL_SIGNALS = frozenset({"TERM", "INT"})
KILL_SIGNALS = frozenset({"QUIT"})


def decide_stop_signal(signal_name: str, already_stopping: bool) -> StopKind:
    """TERM/INT stop gracefully, or kill when a stop is already running; QUIT always kills.

    `signal_name` may carry the `SIG` prefix (`SIGTERM` or `TERM`); any other signal is a
    programming error and raises ValueError.
    """
    name = signal_name.upper().removeprefix("SIG")
    if name in KILL_SIGNALS:
        return StopKind.KILL
    if name in GRACEFUL_SIGNALS:
        return StopKind.KILL if already_stopping else StopKind.GRACEFUL
    raise ValueError(f"not a stop signal: {signal_name!r} (expected TERM, INT or QUIT)")
