"""Restart decisions: stop reasons, min_uptime/max_restarts, delays and backoff."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.config.spec import Resolved, build_app_spec, normalize_app
from runtime.policy.restart import (
    BACKOFF_CAP_MS,
    BACKOFF_RESET_S,
    EXTERNAL_TERM_GRACE_MS,
    GiveUp,
    Restart,
    RestartPolicy,
    RestartState,
    Stop,
    WorkerExit,
    decide_restart,
    killed_externally,
    next_backoff_ms,
    reset_state,
)

SIGHUP, SIGINT, SIGKILL, SIGSEGV, SIGTERM = 1, 2, 9, 11, 15
DEFAULT = RestartPolicy()
FRESH = RestartState()


def crash(code: int | None = 1, signal: int | None = None, uptime_s: float = 5.0) -> WorkerExit:
    """A worker exit the supervisor did not ask for."""
    return WorkerExit(code=code, signal=signal, uptime_s=uptime_s, requested=False)


def test_from_spec_copies_restart_fields() -> None:
    """The policy carries exactly the restart options of the app spec."""
    raw = normalize_app({"script": "app.py", "name": "web"}, file="e.yml", index=0)
    base = build_app_spec(raw, Resolved(script="app.py", argv=("python", "app.py"), cwd="/"))
    spec = dataclasses.replace(
        base,
        autorestart=False,
        restart_delay_ms=250,
        exp_backoff_restart_delay_ms=100,
        max_restarts=3,
        min_uptime_ms=2000,
        stop_exit_codes=frozenset({0, 3}),
    )
    assert RestartPolicy.from_spec(spec) == RestartPolicy(
        autorestart=False,
        restart_delay_ms=250,
        exp_backoff_restart_delay_ms=100,
        max_restarts=3,
        min_uptime_ms=2000,
        stop_exit_codes=frozenset({0, 3}),
    )


def test_reset_state_is_fresh() -> None:
    """A manual restart or reload forgets counters and backoff."""
    assert reset_state() == RestartState(restarts=0, unstable_restarts=0, prev_backoff_ms=0)


STOP_CASES = [
    (DEFAULT, WorkerExit(1, None, 0.1, requested=True), "stop requested", False),
    (RestartPolicy(autorestart=False), WorkerExit(None, SIGTERM, 5.0, True), "requested", False),
    (RestartPolicy(stop_exit_codes=frozenset({3})), crash(3), "stop_exit_codes", False),
    (
        RestartPolicy(stop_exit_codes=frozenset({0})),
        crash(0, uptime_s=0.0),
        "stop_exit_codes",
        False,
    ),
    (RestartPolicy(autorestart=False), crash(0), "exited cleanly", False),
    (RestartPolicy(autorestart=False), crash(2), "failed", True),
    (RestartPolicy(autorestart=False), crash(None, SIGKILL), "failed", True),
    (
        RestartPolicy(autorestart=False, stop_exit_codes=frozenset({9})),
        crash(None, SIGKILL),
        "failed",
        True,
    ),
]


@pytest.mark.parametrize(
    ("policy", "exit", "reason", "failed"),
    STOP_CASES,
    ids=[
        "requested",
        "requested-wins-over-autorestart-off",
        "stop-exit-code",
        "stop-exit-code-even-if-unstable",
        "autorestart-off-clean",
        "autorestart-off-code",
        "autorestart-off-signal",
        "signal-number-is-not-an-exit-code",
    ],
)
def test_stop(policy: RestartPolicy, exit: WorkerExit, reason: str, failed: bool) -> None:
    """Requested exits, stop_exit_codes and autorestart off end the slot without errors."""
    state = RestartState(restarts=4, unstable_restarts=2, prev_backoff_ms=150)
    decision = decide_restart(policy, state, exit)
    assert isinstance(decision, Stop)
    assert reason in decision.reason
    assert decision.failed is failed
    assert decision.state == state


@pytest.mark.parametrize(
    ("policy", "unstable_before", "uptime_s", "expected"),
    [
        (RestartPolicy(max_restarts=3), 0, 0.5, Restart(0, RestartState(1, 1, 0))),
        (RestartPolicy(max_restarts=3), 1, 0.5, Restart(0, RestartState(1, 2, 0))),
        (RestartPolicy(max_restarts=3), 2, 5.0, Restart(0, RestartState(1, 0, 0))),
        (
            RestartPolicy(max_restarts=3, min_uptime_ms=1000),
            2,
            1.0,
            Restart(0, RestartState(1, 0, 0)),
        ),
        (RestartPolicy(max_restarts=1), 0, 0.0, GiveUp("", RestartState(0, 1, 0))),
        (RestartPolicy(max_restarts=3), 2, 0.999, GiveUp("", RestartState(0, 3, 0))),
        (RestartPolicy(max_restarts=0), 500, 0.0, Restart(0, RestartState(1, 501, 0))),
        (RestartPolicy(max_restarts=-1), 7, 0.0, Restart(0, RestartState(1, 8, 0))),
    ],
    ids=[
        "first-unstable",
        "second-unstable",
        "stable-resets-count",
        "uptime-equal-min-uptime-is-stable",
        "max-restarts-1-gives-up-at-once",
        "third-unstable-of-3-gives-up",
        "max-restarts-0-is-unlimited",
        "negative-max-restarts-is-unlimited",
    ],
)
def test_unstable_restarts(
    policy: RestartPolicy, unstable_before: int, uptime_s: float, expected: Restart | GiveUp
) -> None:
    """Exits before min_uptime count up to max_restarts, then the slot is errored."""
    decision = decide_restart(policy, RestartState(0, unstable_before, 0), crash(uptime_s=uptime_s))
    assert type(decision) is type(expected)
    assert decision.state == expected.state
    if isinstance(expected, Restart):
        assert decision == expected
    else:
        assert isinstance(decision, GiveUp)
        assert decision.reason.startswith("errored:")


@pytest.mark.parametrize(
    ("policy", "prev_backoff_ms", "exit", "delay_ms", "backoff_ms"),
    [
        (DEFAULT, 0, crash(), 0, 0),
        (RestartPolicy(restart_delay_ms=250), 0, crash(), 250, 0),
        (RestartPolicy(restart_delay_ms=250), 999, crash(), 250, 0),
        (RestartPolicy(exp_backoff_restart_delay_ms=100), 0, crash(), 100, 100),
        (RestartPolicy(exp_backoff_restart_delay_ms=100), 225, crash(), 337, 337),
        (RestartPolicy(exp_backoff_restart_delay_ms=100), 12_000, crash(), 15_000, 15_000),
        (RestartPolicy(exp_backoff_restart_delay_ms=100), 15_000, crash(), 15_000, 15_000),
        (
            RestartPolicy(exp_backoff_restart_delay_ms=100),
            3829,
            crash(uptime_s=BACKOFF_RESET_S),
            100,
            100,
        ),
        (
            RestartPolicy(exp_backoff_restart_delay_ms=100),
            3829,
            crash(uptime_s=BACKOFF_RESET_S - 0.001),
            5743,
            5743,
        ),
        (
            RestartPolicy(restart_delay_ms=5000, exp_backoff_restart_delay_ms=100),
            0,
            crash(),
            100,
            100,
        ),
        (RestartPolicy(exp_backoff_restart_delay_ms=20_000), 20_000, crash(), 20_000, 20_000),
    ],
    ids=[
        "no-delay",
        "restart-delay",
        "restart-delay-clears-backoff",
        "backoff-first",
        "backoff-grows-by-1.5-floored",
        "backoff-capped",
        "backoff-stays-at-cap",
        "backoff-reset-after-long-uptime",
        "backoff-kept-just-under-reset",
        "backoff-overrides-restart-delay",
        "initial-above-cap-never-shrinks",
    ],
)
def test_delay(
    policy: RestartPolicy, prev_backoff_ms: int, exit: WorkerExit, delay_ms: int, backoff_ms: int
) -> None:
    """The delay is restart_delay, or the exponential backoff when that is configured."""
    decision = decide_restart(policy, RestartState(3, 0, prev_backoff_ms), exit)
    assert decision == Restart(delay_ms, RestartState(4, 0, backoff_ms))


def test_backoff_sequence_matches_pm2() -> None:
    """A crash loop with 100 ms backoff waits 100, 150, 225, ... as observed on pm2."""
    policy = RestartPolicy(exp_backoff_restart_delay_ms=100, max_restarts=0)
    state = FRESH
    delays: list[int] = []
    for _ in range(12):
        decision = decide_restart(policy, state, crash(uptime_s=0.0))
        assert isinstance(decision, Restart)
        state, delays = decision.state, [*delays, decision.delay_ms]
    assert delays == [100, 150, 225, 337, 505, 757, 1135, 1702, 2553, 3829, 5743, 8614]
    assert state.restarts == 12


@pytest.mark.parametrize(
    ("policy", "exit", "delay_ms"),
    [
        (DEFAULT, crash(None, SIGTERM), EXTERNAL_TERM_GRACE_MS),
        (DEFAULT, crash(None, SIGINT), EXTERNAL_TERM_GRACE_MS),
        (DEFAULT, crash(143), EXTERNAL_TERM_GRACE_MS),
        (DEFAULT, crash(130), EXTERNAL_TERM_GRACE_MS),
        (RestartPolicy(restart_delay_ms=2000), crash(None, SIGTERM), 2000),
        (
            RestartPolicy(exp_backoff_restart_delay_ms=100),
            crash(None, SIGTERM),
            EXTERNAL_TERM_GRACE_MS,
        ),
        (DEFAULT, crash(None, SIGKILL), 0),
        (DEFAULT, crash(None, SIGSEGV), 0),
        (DEFAULT, crash(None, SIGHUP), 0),
        (DEFAULT, crash(137), 0),
        (DEFAULT, crash(0), EXTERNAL_TERM_GRACE_MS),
    ],
    ids=[
        "sigterm",
        "sigint",
        "code-143",
        "code-130",
        "longer-delay-kept",
        "backoff-raised-to-grace",
        "sigkill",
        "sigsegv",
        "sighup",
        "code-137",
        "clean-exit",
    ],
)
def test_external_term_grace(policy: RestartPolicy, exit: WorkerExit, delay_ms: int) -> None:
    """A TERM/INT death we did not send waits the grace, so a platform-wide TERM stops us first."""
    decision = decide_restart(policy, FRESH, exit)
    assert isinstance(decision, Restart)
    assert decision.delay_ms == delay_ms


def test_grace_does_not_enter_backoff_memory() -> None:
    """The grace raises one delay only; the remembered backoff is the real one."""
    decision = decide_restart(
        RestartPolicy(exp_backoff_restart_delay_ms=100), FRESH, crash(None, SIGTERM)
    )
    assert decision == Restart(EXTERNAL_TERM_GRACE_MS, RestartState(1, 0, 100), maybe_stopping=True)


@pytest.mark.parametrize(
    ("exit", "failed"),
    [(crash(0), False), (crash(1), True), (crash(None, SIGKILL), True), (crash(0, SIGTERM), True)],
    ids=["zero", "nonzero", "signal", "signal-wins"],
)
def test_worker_exit_failed(exit: WorkerExit, failed: bool) -> None:
    """A non-zero code or any signal is a failed exit."""
    assert exit.failed is failed


@given(
    initial_ms=st.integers(min_value=1, max_value=60_000),
    steps=st.integers(min_value=1, max_value=60),
)
def test_backoff_monotone_and_capped(initial_ms: int, steps: int) -> None:
    """The backoff never shrinks and never passes max(15 s, the configured start)."""
    prev_ms, cap_ms = 0, max(BACKOFF_CAP_MS, initial_ms)
    for _ in range(steps):
        delay_ms = next_backoff_ms(initial_ms, prev_ms)
        assert prev_ms <= delay_ms <= cap_ms
        prev_ms = delay_ms
    assert prev_ms >= initial_ms


@given(
    uptimes=st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=40),
    max_restarts=st.integers(min_value=0, max_value=20),
)
def test_give_up_only_after_max_unstable_in_a_row(uptimes: list[float], max_restarts: int) -> None:
    """GiveUp happens exactly when the run of unstable exits reaches a positive max_restarts."""
    policy = RestartPolicy(max_restarts=max_restarts, min_uptime_ms=1000)
    state, run = FRESH, 0
    for uptime_s in uptimes:
        run = run + 1 if uptime_s < 1.0 else 0
        decision = decide_restart(policy, state, crash(uptime_s=uptime_s))
        if max_restarts > 0 and run >= max_restarts:
            assert isinstance(decision, GiveUp)
            return
        assert isinstance(decision, Restart)
        assert decision.state.unstable_restarts == run
        state = decision.state


@pytest.mark.parametrize(
    ("exit", "expected"),
    [
        (WorkerExit(None, SIGTERM, 1.0, requested=True), False),
        (WorkerExit(143, None, 1.0, requested=True), False),
        (crash(None, SIGTERM), True),
        (crash(143), True),
        (crash(0), True),
        (crash(1), False),
    ],
    ids=["requested-signal", "requested-code", "signal", "code", "clean-exit", "other-code"],
)
def test_killed_externally(exit: WorkerExit, expected: bool) -> None:
    """Only a TERM/INT death the supervisor did not request counts as external."""
    assert killed_externally(exit) is expected
