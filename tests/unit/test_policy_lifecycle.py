"""Auto-exit of the master and escalation of stop signals."""

from __future__ import annotations

import pytest

from runtime.policy.lifecycle import (
    AppOutcome,
    AppStatus,
    StopKind,
    decide_auto_exit,
    decide_stop_signal,
)

RUNNING = AppOutcome(ended=False, failed=False)
CLEAN = AppOutcome(ended=True, failed=False)
FAILED = AppOutcome(ended=True, failed=True)


@pytest.mark.parametrize(
    ("outcomes", "auto_exit", "expected"),
    [
        ({}, True, None),
        ({"web": RUNNING}, True, None),
        ({"job": CLEAN, "web": RUNNING}, True, None),
        ({"job": FAILED, "web": RUNNING}, True, None),
        ({"job": CLEAN}, True, 0),
        ({"a": CLEAN, "b": CLEAN}, True, 0),
        ({"a": CLEAN, "b": FAILED}, True, 1),
        ({"a": FAILED}, True, 1),
        ({"a": FAILED}, False, None),
        ({"a": CLEAN}, False, None),
    ],
    ids=[
        "no-apps",
        "one-running",
        "one-ended-one-running",
        "failure-waits-for-the-rest",
        "one-shot-job-clean",
        "all-clean",
        "one-failed",
        "errored",
        "no-auto-exit-failed",
        "no-auto-exit-clean",
    ],
)
def test_decide_auto_exit(
    outcomes: dict[str, AppOutcome], auto_exit: bool, expected: int | None
) -> None:
    """The master exits only once every app has ended: 0 if all were clean, 1 if any failed."""
    assert decide_auto_exit(outcomes, auto_exit=auto_exit) == expected


@pytest.mark.parametrize(
    ("signal_name", "already_stopping", "expected"),
    [
        ("TERM", False, StopKind.GRACEFUL),
        ("INT", False, StopKind.GRACEFUL),
        ("SIGTERM", False, StopKind.GRACEFUL),
        ("sigint", False, StopKind.GRACEFUL),
        ("TERM", True, StopKind.KILL),
        ("SIGINT", True, StopKind.KILL),
        ("QUIT", False, StopKind.KILL),
        ("SIGQUIT", True, StopKind.KILL),
    ],
    ids=[
        "term",
        "int",
        "sig-prefix",
        "lowercase",
        "second-term-kills",
        "second-int-kills",
        "quit-kills",
        "quit-while-stopping",
    ],
)
def test_decide_stop_signal(signal_name: str, already_stopping: bool, expected: StopKind) -> None:
    """TERM/INT stop gracefully, a second one kills, and QUIT always kills."""
    assert decide_stop_signal(signal_name, already_stopping) is expected


@pytest.mark.parametrize("signal_name", ["HUP", "SIGUSR1", "", "TERMINATE"], ids=str)
def test_decide_stop_signal_rejects_other_signals(signal_name: str) -> None:
    """A signal that is not a stop signal is a programming error, reported by name."""
    with pytest.raises(ValueError, match="not a stop signal"):
        decide_stop_signal(signal_name, already_stopping=False)


def test_app_status_values_are_pm2_names() -> None:
    """Statuses print as pm2 prints them, including the space in `waiting restart`."""
    assert [str(s) for s in AppStatus] == [
        "launching",
        "online",
        "stopping",
        "stopped",
        "errored",
        "waiting restart",
    ]
