"""The rolling reload state machine, driven event by event."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.policy.rollout import (
    Action,
    Event,
    KillReplacement,
    OldStopped,
    ReloadFinished,
    ReplacementFailed,
    ReplacementReady,
    Rollout,
    StartReplacement,
    StopOld,
    plan_rollout,
    step_rollout,
)


def run(slots: list[int], events: list[Event]) -> tuple[Rollout, list[Action]]:
    """Plan a rollout, feed it `events`, and collect every action in order."""
    rollout, actions = plan_rollout(slots)
    for event in events:
        rollout, more = step_rollout(rollout, event)
        actions += more
    return rollout, actions


@pytest.mark.parametrize(
    ("slots", "expected_rollout", "expected_actions"),
    [
        ([], Rollout((), phase="finished"), [ReloadFinished(ok=True, reloaded=())]),
        ([2, 0], Rollout((2, 0)), [StartReplacement(2)]),
        ([1, 1, 0], Rollout((1, 0)), [StartReplacement(1)]),
    ],
    ids=["empty-finishes-at-once", "keeps-order", "repeated-slot-once"],
)
def test_plan_rollout(
    slots: list[int], expected_rollout: Rollout, expected_actions: list[Action]
) -> None:
    """A rollout starts the first slot's replacement, or finishes at once with no slots."""
    assert plan_rollout(slots) == (expected_rollout, expected_actions)


SUCCESS = [
    ReplacementReady(0),
    OldStopped(0),
    ReplacementReady(1),
    OldStopped(1),
]


@pytest.mark.parametrize(
    ("events", "phase", "actions"),
    [
        (
            SUCCESS,
            "finished",
            [
                StartReplacement(0),
                StopOld(0),
                StartReplacement(1),
                StopOld(1),
                ReloadFinished(ok=True, reloaded=(0, 1)),
            ],
        ),
        (
            [ReplacementFailed(0, "exited with code 1")],
            "finished",
            [
                StartReplacement(0),
                KillReplacement(0),
                ReloadFinished(False, (), 0, "exited with code 1"),
            ],
        ),
        (
            [ReplacementReady(0), OldStopped(0), ReplacementFailed(1, "not ready in 3000 ms")],
            "finished",
            [
                StartReplacement(0),
                StopOld(0),
                StartReplacement(1),
                KillReplacement(1),
                ReloadFinished(False, (0,), 1, "not ready in 3000 ms"),
            ],
        ),
        (
            [ReplacementReady(0), ReplacementFailed(0, "crashed after ready")],
            "stopping_old",
            [StartReplacement(0), StopOld(0)],
        ),
    ],
    ids=[
        "all-reloaded",
        "first-replacement-fails",
        "second-fails-first-kept",
        "death-after-ready-is-a-crash-not-a-reload-failure",
    ],
)
def test_rollout_paths(events: list[Event], phase: str, actions: list[Action]) -> None:
    """One slot at a time: start, wait ready, stop old; a failed replacement is killed, ends it."""
    rollout, got = run([0, 1], events)
    assert got == actions
    assert rollout.phase == phase


@pytest.mark.parametrize(
    "event",
    [
        ReplacementReady(1),
        ReplacementFailed(1, "x"),
        OldStopped(1),
        OldStopped(0),
    ],
    ids=["ready-other-slot", "failed-other-slot", "stopped-other-slot", "stopped-before-ready"],
)
def test_unexpected_event_while_replacing_is_ignored(event: Event) -> None:
    """Events for another slot or the wrong phase change nothing and emit nothing."""
    rollout, _ = plan_rollout([0, 1])
    assert step_rollout(rollout, event) == (rollout, [])


@pytest.mark.parametrize(
    "event",
    [ReplacementReady(0), ReplacementFailed(0, "x"), OldStopped(1)],
    ids=["ready-again", "failed-after-ready", "stopped-other-slot"],
)
def test_unexpected_event_while_stopping_old_is_ignored(event: Event) -> None:
    """Once the old worker is being stopped only its OldStopped moves the rollout on."""
    rollout, _ = run([0, 1], [ReplacementReady(0)])
    assert rollout.phase == "stopping_old"
    assert step_rollout(rollout, event) == (rollout, [])


@pytest.mark.parametrize(
    "event",
    [ReplacementReady(0), ReplacementFailed(0, "x"), OldStopped(0)],
    ids=["ready", "failed", "stopped"],
)
def test_events_after_finish_are_ignored(event: Event) -> None:
    """A finished rollout never emits again."""
    rollout, _ = run([0], [ReplacementReady(0), OldStopped(0)])
    assert rollout.finished
    assert step_rollout(rollout, event) == (rollout, [])


def test_current_slot() -> None:
    """`current` names the slot being reloaded, and None once finished."""
    rollout, _ = plan_rollout([3, 4])
    assert rollout.current == 3
    rollout, _ = run([3, 4], [ReplacementReady(3), OldStopped(3)])
    assert rollout.current == 4
    rollout, _ = run([3], [ReplacementReady(3), OldStopped(3)])
    assert rollout.current is None


@given(
    slots=st.lists(st.integers(min_value=0, max_value=20), unique=True, max_size=8),
    fail_at=st.integers(min_value=0, max_value=10),
)
def test_rollout_reloads_in_order_until_a_failure(slots: list[int], fail_at: int) -> None:
    """Driving the happy path reloads every slot in order; a failure at slot k keeps slots[:k]."""
    rollout, actions = plan_rollout(slots)
    for i, slot in enumerate(slots):
        if i == fail_at:
            rollout, actions = step_rollout(rollout, ReplacementFailed(slot, "boom"))
            assert actions[-1] == ReloadFinished(False, tuple(slots[:i]), slot, "boom")
            return
        assert actions == [StartReplacement(slot)]
        rollout, actions = step_rollout(rollout, ReplacementReady(slot))
        assert actions == [StopOld(slot)]
        rollout, actions = step_rollout(rollout, OldStopped(slot))
    assert actions[-1] == ReloadFinished(ok=True, reloaded=tuple(slots))
    assert rollout.finished
