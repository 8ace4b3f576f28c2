"""Whether and when a worker that exited is started again (pm2's `God.handleExit`).

Covers `autorestart`, `stop_exit_codes`, `restart_delay`, `exp_backoff_restart_delay`,
`min_uptime` and `max_restarts`. The supervisor keeps one `RestartState` per instance
slot and replaces it with the state carried by each decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from runtime.config.keys import default
from runtime.config.spec import AppSpec

BACKOFF_CAP_MS = 15_000
SPAWN_RETRY_MS = 100  # the first wait after a fork that failed
BACKOFF_RESET_S = 30.0  # pm2's EXP_BACKOFF_RESET_TIMER: a worker up this long resets the backoff
BACKOFF_FACTOR = 1.5
# A worker killed by a SIGTERM/SIGINT we did not send waits at least this long, so a
# platform that signals every process at once (Heroku) stops the master first.
EXTERNAL_TERM_GRACE_MS = 500
SIGINT_NUMBER = 2  # POSIX numbers: importing `signal` is not allowed in the pure core
SIGTERM_NUMBER = 15
EXTERNAL_TERM_SIGNALS = frozenset({SIGINT_NUMBER, SIGTERM_NUMBER})
# Shells (`/bin/sh -c`) and many runtimes report a death by signal N as exit code 128 + N.
# A clean exit 0 is how most servers answer a SIGTERM they caught: it counts too.
EXTERNAL_TERM_CODES = frozenset({0, *(128 + n for n in EXTERNAL_TERM_SIGNALS)})


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """The restart options of one app; `max_restarts` 0 (or less) disables the limit."""

    autorestart: bool = default("autorestart")
    restart_delay_ms: int = default("restart_delay")
    exp_backoff_restart_delay_ms: int = default("exp_backoff_restart_delay")
    max_restarts: int = default("max_restarts")
    min_uptime_ms: int = default("min_uptime")
    stop_exit_codes: frozenset[int] = default("stop_exit_codes")

    @classmethod
    def from_spec(cls, spec: AppSpec) -> RestartPolicy:
        """Take the restart options out of a validated app spec."""
        return cls(
            autorestart=spec.autorestart,
            restart_delay_ms=spec.restart_delay_ms,
            exp_backoff_restart_delay_ms=spec.exp_backoff_restart_delay_ms,
            max_restarts=spec.max_restarts,
            min_uptime_ms=spec.min_uptime_ms,
            stop_exit_codes=frozenset(spec.stop_exit_codes),
        )


@dataclass(frozen=True, slots=True)
class RestartState:
    """What one slot remembers between exits; `prev_backoff_ms` 0 means no backoff yet."""

    restarts: int = 0
    unstable_restarts: int = 0
    prev_backoff_ms: int = 0


@dataclass(frozen=True, slots=True)
class WorkerExit:
    """How a worker ended; `requested` means the supervisor asked it to stop."""

    code: int | None
    signal: int | None
    uptime_s: float
    requested: bool = False

    @property
    def failed(self) -> bool:
        """A non-zero exit code or a death by signal is a failure."""
        return self.signal is not None or self.code != 0


@dataclass(frozen=True, slots=True)
class Restart:
    """Start the slot again after `delay_ms`.

    `maybe_stopping` marks an exit that may be a platform's SIGTERM reaching the worker
    before the master (see `killed_externally`): the restart is only announced once the
    delay has passed without the master being told to stop.
    """

    delay_ms: int
    state: RestartState
    maybe_stopping: bool = False


@dataclass(frozen=True, slots=True)
class Stop:
    """The slot ended for good without being errored; `failed` tells auto-exit 0 from 1."""

    reason: str
    state: RestartState
    failed: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The slot is errored: it crashed `max_restarts` times in a row before `min_uptime`."""

    reason: str
    state: RestartState


Decision = Restart | Stop | GiveUp


def reset_state() -> RestartState:
    """The state after a manual restart or reload (pm2's `resetState`): counters and backoff."""
    return RestartState()


def decide_restart(policy: RestartPolicy, state: RestartState, exit: WorkerExit) -> Decision:
    """Decide what follows one worker exit.

    In order: a requested exit stops; an exit code in `stop_exit_codes` stops cleanly
    (the user declared it a normal end); `autorestart` off stops, `failed` when the
    exit failed. Otherwise an exit before `min_uptime` is unstable and the
    `max_restarts`-th unstable exit in a row gives up; a stable exit resets that count.
    """
    if exit.requested:
        return Stop("stop requested", state)
    if exit.signal is None and exit.code in policy.stop_exit_codes:
        return Stop(f"exit code {exit.code} is in stop_exit_codes", state)
    if not policy.autorestart:
        outcome = "failed" if exit.failed else "exited cleanly"
        return Stop(f"{outcome} with autorestart off", state, failed=exit.failed)
    unstable = exit.uptime_s * 1000 < policy.min_uptime_ms
    unstable_restarts = state.unstable_restarts + 1 if unstable else 0
    if policy.max_restarts > 0 and unstable_restarts >= policy.max_restarts:
        reason = (
            f"errored: {unstable_restarts} unstable restarts"
            f" (uptime under min_uptime {policy.min_uptime_ms} ms)"
        )
        return GiveUp(
            reason, RestartState(state.restarts, unstable_restarts, state.prev_backoff_ms)
        )
    delay_ms, backoff_ms = restart_delay(policy, state, exit)
    return Restart(
        delay_ms,
        RestartState(state.restarts + 1, unstable_restarts, backoff_ms),
        maybe_stopping=killed_externally(exit),
    )


def restart_delay(policy: RestartPolicy, state: RestartState, exit: WorkerExit) -> tuple[int, int]:
    """The delay before the restart and the backoff to remember, as `(delay_ms, backoff_ms)`."""
    if policy.exp_backoff_restart_delay_ms > 0:
        prev_ms = 0 if exit.uptime_s >= BACKOFF_RESET_S else state.prev_backoff_ms
        delay_ms = next_backoff_ms(policy.exp_backoff_restart_delay_ms, prev_ms)
        backoff_ms = delay_ms
    else:
        delay_ms, backoff_ms = policy.restart_delay_ms, 0
    if killed_externally(exit):
        delay_ms = max(delay_ms, EXTERNAL_TERM_GRACE_MS)
    return delay_ms, backoff_ms


def next_backoff_ms(initial_ms: int, prev_ms: int) -> int:
    """pm2's exponential backoff: `initial_ms` first, then `floor(min(cap, prev * 1.5))`.

    The cap is 15 s, or `initial_ms` itself when that is larger, so the sequence never
    shrinks (pm2 would drop from a 20 s first delay to 15 s).
    """
    if prev_ms <= 0:
        return initial_ms
    cap_ms = max(BACKOFF_CAP_MS, initial_ms)
    return math.floor(min(cap_ms, prev_ms * BACKOFF_FACTOR))


def spawn_retry_ms(failures: int) -> int:
    """The wait before forking again after `failures` forks in a row failed (EAGAIN under a
    pids limit, EMFILE...): pm2's backoff from SPAWN_RETRY_MS, capped at 15 s."""
    delay_ms = 0
    for _ in range(max(1, failures)):
        delay_ms = next_backoff_ms(SPAWN_RETRY_MS, delay_ms)
    return delay_ms


def killed_externally(exit: WorkerExit) -> bool:
    """An exit that may be a platform's SIGTERM reaching the worker first, not a crash.

    A SIGTERM/SIGINT death, exit code 130/143, or a clean exit 0 (a server that caught
    the signal) the supervisor did not ask for: its restart waits EXTERNAL_TERM_GRACE_MS,
    so a master signalled a moment later restarts nothing.
    """
    if exit.requested:
        return False
    if exit.signal is not None:
        return exit.signal in EXTERNAL_TERM_SIGNALS
    return exit.code in EXTERNAL_TERM_CODES
