"""The steering decision: which slots take new connections (runtime.policy.steering)."""

from __future__ import annotations

import pytest

from runtime.policy.steering import SlotState, covering_slots, hand_over_queue, receiving_slots

R, S, W, X = SlotState.READY, SlotState.STARTING, SlotState.WAITING, SlotState.IDLE


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ({0: R, 1: R}, {0, 1}),
        ({0: R, 1: X}, {0}),  # a stopped slot swallows nothing
        ({0: R, 1: W}, {0}),  # nor one waiting out a backoff, while another serves
        ({0: R, 1: S}, {0}),  # a starting worker gets connections once it is ready
        ({0: S, 1: W, 2: X}, {0}),  # nobody ready: the one about to accept
        ({0: W, 1: X}, {0}),  # only a restart to come: connections wait for it
        ({0: X, 1: X}, set()),  # nobody will serve: refuse
        ({}, set()),
    ],
    ids=[
        "all-ready",
        "one-stopped",
        "one-waiting",
        "one-starting",
        "starting-first",
        "waiting-only",
        "all-idle",
        "no-slots",
    ],
)
def test_receiving_slots(states: dict[int, SlotState], expected: set[int]) -> None:
    """Ready slots first, then starting, then waiting; none when every slot is idle."""
    assert receiving_slots(states) == expected


@pytest.mark.parametrize(
    ("slot", "receiving", "migrates", "replacing", "expected"),
    [
        (0, frozenset({1}), True, False, True),  # the kernel moves the queue to slot 1
        (0, frozenset({1}), False, False, False),  # no tcp_migrate_req: a close would reset
        (0, frozenset(), True, False, False),  # nowhere to move it
        (0, None, True, False, False),  # not steered yet
        (0, frozenset({0, 1}), True, False, False),  # still receiving: keep its socket
        (0, frozenset({1}), True, True, False),  # a reload's replacement owns the sockets
    ],
)
def test_hand_over_queue(
    slot: int,
    receiving: frozenset[int] | None,
    migrates: bool,
    replacing: bool,
    expected: bool,
) -> None:
    assert hand_over_queue(slot, receiving, migrates=migrates, replacing=replacing) is expected


@pytest.mark.parametrize(
    ("states", "left_alone", "expected"),
    [
        ({0: X, 1: R, 2: R}, set(), {0: {1, 2}}),  # a dead slot: every ready slot covers it
        ({0: X, 1: R, 2: S, 3: W}, set(), {0: {1}, 2: {1}, 3: {1}}),  # starting, backing off
        ({0: R, 1: R}, set(), {}),  # all ready: nothing to cover
        ({0: X, 1: S}, set(), {}),  # nobody ready: the queues wait
        ({0: X}, set(), {}),  # a single instance: nobody else
        ({0: X, 1: R}, {0}, {}),  # a reload's replacement, or stopped on purpose
        ({0: X, 1: R, 2: W}, {0}, {2: {1}}),
        ({}, set(), {}),
    ],
)
def test_covering_slots(
    states: dict[int, SlotState], left_alone: set[int], expected: dict[int, set[int]]
) -> None:
    plan = covering_slots(states, left_alone=frozenset(left_alone))
    assert plan == {slot: frozenset(by) for slot, by in expected.items()}
