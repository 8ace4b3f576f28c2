"""When an app with `instances: {min, max}` gets more or fewer workers (pure).

The signal is the one only the master sees: connections waiting in its listening sockets
(`saturation`: the share of recent samples in which an accept queue was non-empty),
with the workers' CPU as the fallback for apps that queue nothing (workers that take
every connection at once and then work hard on it). The rule, with hysteresis and
cooldowns so it never flaps:

- hot (saturation at or above `saturation_high`, or CPU at or above `cpu_high`) for
  `up_after_s`: add half the current workers (at least one), up to `max`, at most once
  every `up_cooldown_s`;
- cold (saturation 0 and CPU under `cpu_low`) for `down_after_s`: remove one worker,
  down to `min`, then one more every `down_cooldown_s` while it stays cold;
- anything in between resets both clocks: a load that hovers scales nothing;
- outside [min, max] (after a manual `scale`): back into the range at once.

Time comes in as `at` (monotonic seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from runtime.config.spec import AutoscaleSpec

__all__ = ["AutoscaleSpec", "AutoscaleState", "LoadReading", "ScaleTo", "decide_autoscale"]


@dataclass(frozen=True, slots=True)
class LoadReading:
    """What the master measured for the app just now."""

    at: float
    saturation: float  # 0..1
    cpu_percent: float | None  # per worker on average; None before a second sample


@dataclass(frozen=True, slots=True)
class AutoscaleState:
    """Since when the app has been hot or cold, and when it was last scaled."""

    hot_since: float | None = None
    cold_since: float | None = None
    last_scale_at: float | None = None


@dataclass(frozen=True, slots=True)
class ScaleTo:
    """Run `instances` workers, for `reason` (logged with the `autoscaled` event)."""

    instances: int
    reason: str


def _clocks(spec: AutoscaleSpec, state: AutoscaleState, r: LoadReading) -> AutoscaleState:
    cpu = r.cpu_percent
    hot = r.saturation >= spec.saturation_high or (cpu is not None and cpu >= spec.cpu_high)
    cold = r.saturation == 0 and (cpu is None or cpu < spec.cpu_low)
    return replace(
        state,
        hot_since=(state.hot_since if state.hot_since is not None else r.at) if hot else None,
        cold_since=(state.cold_since if state.cold_since is not None else r.at) if cold else None,
    )


def _why_hot(spec: AutoscaleSpec, r: LoadReading) -> str:
    if r.saturation >= spec.saturation_high:
        return f"connections waiting {r.saturation:.0%} of the time"
    return f"cpu {r.cpu_percent:.0f}% per worker"


def decide_autoscale(
    spec: AutoscaleSpec, state: AutoscaleState, reading: LoadReading, current: int
) -> tuple[AutoscaleState, ScaleTo | None]:
    """The next state, and a new instance count when the app should change size."""
    state = _clocks(spec, state, reading)
    at = reading.at
    if not spec.min <= current <= spec.max:
        target = min(max(current, spec.min), spec.max)
        return replace(state, last_scale_at=at), ScaleTo(target, "outside min..max")
    since_scale = float("inf") if state.last_scale_at is None else at - state.last_scale_at
    hot_s = at - state.hot_since if state.hot_since is not None else None
    cold_s = at - state.cold_since if state.cold_since is not None else None
    hot = hot_s is not None and hot_s >= spec.up_after_s and since_scale >= spec.up_cooldown_s
    if hot and current < spec.max:
        target = min(spec.max, current + max(1, current // 2))
        return replace(state, last_scale_at=at), ScaleTo(target, _why_hot(spec, reading))
    cold = cold_s is not None and cold_s >= spec.down_after_s
    if cold and current > spec.min and since_scale >= spec.down_cooldown_s:
        reason = f"quiet for {cold_s:.0f} s"
        return replace(state, last_scale_at=at), ScaleTo(current - 1, reason)
    return state, None
