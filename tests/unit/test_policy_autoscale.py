"""The autoscaling decision (runtime.policy.autoscale), driven by synthetic load traces."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from runtime.policy.autoscale import (
    AutoscaleSpec,
    AutoscaleState,
    LoadReading,
    ScaleTo,
    decide_autoscale,
)

SPEC = AutoscaleSpec(min=1, max=8)
Trace = Callable[[float], tuple[float, float | None]]  # t -> (saturation, cpu %)


def run(
    trace: Trace, seconds: float, spec: AutoscaleSpec = SPEC, start: int = 1
) -> list[tuple[float, int]]:
    """Drive the policy once a second; the instance counts it chose, with when."""
    state, current, changes = AutoscaleState(), start, []
    t = 0.0
    while t <= seconds:
        saturation, cpu = trace(t)
        state, decision = decide_autoscale(spec, state, LoadReading(t, saturation, cpu), current)
        if decision is not None:
            current = decision.instances
            changes.append((t, current))
        t += 1.0
    return changes


def step(t: float) -> tuple[float, float | None]:
    """Idle, then saturated from t=10 to t=70, then idle again."""
    return (0.9, 95.0) if 10 <= t < 70 else (0.0, 2.0)


def test_a_step_scales_up_fast_and_down_slowly() -> None:
    """A step of load reaches max within seconds; after it, one worker at a time goes."""
    changes = run(step, 200)
    ups = [(t, n) for t, n in changes if t < 70]
    assert ups[0][0] <= 12  # within up_after_s (+ a tick) of the step
    assert max(n for _, n in changes) == 8
    assert [n for t, n in changes if t >= 70] == [7, 6, 5, 4, 3, 2, 1]
    first_down = next(t for t, n in changes if t >= 70)
    assert first_down >= 70 + SPEC.down_after_s
    downs = [t for t, _ in changes if t >= 70]
    assert all(b - a >= SPEC.down_cooldown_s for a, b in itertools.pairwise(downs))


def test_a_spike_shorter_than_the_window_scales_nothing() -> None:
    """A one-second spike never holds long enough to add workers."""
    assert run(lambda t: (1.0, 99.0) if t == 5 else (0.0, 1.0), 60) == []


def test_a_slow_ramp_adds_workers_in_steps_spaced_by_the_cooldown() -> None:
    """CPU climbing slowly crosses the threshold once and the app grows, not at every tick."""
    changes = run(lambda t: (0.0, min(100.0, t * 2)), 80)
    assert changes
    times = [t for t, _ in changes]
    assert times[0] >= 40  # cpu_high 80 % is reached at t=40
    assert all(b - a >= SPEC.up_cooldown_s for a, b in itertools.pairwise(times))


def test_oscillation_between_thresholds_does_not_flap() -> None:
    """Load that swings every few seconds neither stays hot nor cold long enough."""
    changes = run(lambda t: (0.9, 95.0) if int(t) % 2 == 0 else (0.1, 50.0), 120)
    assert changes == []


def test_never_past_max_nor_under_min() -> None:
    """Saturation forever stops at max; quiet forever stops at min."""
    assert max(n for _, n in run(lambda t: (1.0, 100.0), 120)) == 8
    spec = AutoscaleSpec(min=2, max=4)
    assert [n for _, n in run(lambda t: (0.0, 0.0), 300, spec, start=4)] == [3, 2]


@pytest.mark.parametrize(("current", "target"), [(0, 2), (9, 4)])
def test_outside_the_range_comes_back_at_once(current: int, target: int) -> None:
    """After a manual scale outside min..max, the next tick puts the app back in range."""
    spec = AutoscaleSpec(min=2, max=4)
    _, decision = decide_autoscale(spec, AutoscaleState(), LoadReading(0.0, 0.0, None), current)
    assert decision == ScaleTo(target, "outside min..max")


def test_the_reason_names_the_signal() -> None:
    """A scale-up says whether waiting connections or CPU caused it."""
    state = AutoscaleState(hot_since=0.0)
    _, by_queue = decide_autoscale(SPEC, state, LoadReading(5.0, 0.5, 10.0), 2)
    _, by_cpu = decide_autoscale(SPEC, state, LoadReading(5.0, 0.0, 90.0), 2)
    assert by_queue is not None
    assert "connections waiting 50%" in by_queue.reason
    assert by_cpu is not None
    assert by_cpu.reason == "cpu 90% per worker"
