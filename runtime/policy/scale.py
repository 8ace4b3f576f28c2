"""`scale N|+N|-N`: which instance slots to start or stop to reach the target."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from runtime.config.values import MAX_INSTANCES

ScaleMode = Literal["set", "add", "remove"]

_SCALE_RE = re.compile(r"([+-]?)([0-9]+)")
_MODES: dict[str, ScaleMode] = {"": "set", "+": "add", "-": "remove"}


@dataclass(frozen=True, slots=True)
class ScaleRequest:
    """`set` to `n` instances, or `add`/`remove` `n` of them; `n` is never negative."""

    mode: ScaleMode
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"scale: instance count must not be negative, got {self.n}")


def parse_scale(text: str) -> ScaleRequest:
    """Parse `3` (set), `+2` (add) or `-1` (remove); anything else raises ValueError."""
    match = _SCALE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"scale: expected N, +N or -N (a whole number of instances), got {text!r}")
    sign, digits = match.groups()
    if len(digits) > len(str(MAX_INSTANCES)) or int(digits) > MAX_INSTANCES:
        raise ValueError(f"scale: expected at most {MAX_INSTANCES} instances, got {text!r}")
    return ScaleRequest(_MODES[sign], int(digits))


@dataclass(frozen=True, slots=True)
class ScalePlan:
    """Slots to start (lowest first) and to stop (highest first)."""

    start: tuple[int, ...]
    stop: tuple[int, ...]


def scale_target(current: int, request: ScaleRequest) -> int:
    """The instance count a request asks for, never below 0 nor above MAX_INSTANCES."""
    if request.mode == "set":
        return min(request.n, MAX_INSTANCES)
    if request.mode == "add":
        return min(current + request.n, MAX_INSTANCES)
    return max(0, current - request.n)


def plan_scale(running: Sequence[int], request: ScaleRequest) -> ScalePlan:
    """New slots take the lowest free numbers; scaling down stops the highest slots first.

    Stopping the highest keeps the instance numbers dense from 0, so `RUNTIME_INSTANCE`
    and per-slot ports stay predictable (pm2 stops the oldest and leaves gaps).
    """
    slots = sorted(set(running))
    target = scale_target(len(slots), request)
    if target < len(slots):
        return ScalePlan(start=(), stop=tuple(reversed(slots[target:])))
    taken = set(slots)
    start: list[int] = []
    candidate = 0
    while len(slots) + len(start) < target:
        if candidate not in taken:
            start.append(candidate)
        candidate += 1
    return ScalePlan(start=tuple(start), stop=())
