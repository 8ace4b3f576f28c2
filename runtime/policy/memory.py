"""`max_memory_restart`: whether one RSS sample calls for a restart (pm2's Worker loop)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# How often the master reads its workers' RSS: at least once a second, four times a
# second once a tree is near its limit. Every wake-up of an idle master costs CPU (about
# 0.35 ms on the benchmark machine), so the far-from-the-limit case wakes least.
FAR_CHECK_S = 1.0
NEAR_CHECK_S = 0.25
NEAR_RATIO = 0.75


@dataclass(frozen=True, slots=True)
class MemoryVerdict:
    """A sample over the limit; the numbers go into the `memory_limit` log event."""

    restart: bool
    rss_bytes: int
    limit_bytes: int


def decide_memory(
    limit_bytes: int | None, rss_bytes: int, *, restarting: bool
) -> MemoryVerdict | None:
    """A restart verdict when `rss_bytes` is strictly over the limit, as pm2 compares.

    None when the app has no limit, the sample is within it, or a restart of this
    worker is already in progress (so a slow stop is not restarted twice).
    """
    if limit_bytes is None or restarting or rss_bytes <= limit_bytes:
        return None
    return MemoryVerdict(restart=True, rss_bytes=rss_bytes, limit_bytes=limit_bytes)


def next_check_s(samples: Iterable[tuple[int, int]]) -> float:
    """Seconds until the next RSS check, from `(rss_bytes, limit_bytes)` pairs just read.

    A second while every tree is under NEAR_RATIO of its limit; a quarter second once one
    is closer, so a growing worker is caught soon after it crosses the limit.
    """
    near = any(rss >= NEAR_RATIO * limit for rss, limit in samples)
    return NEAR_CHECK_S if near else FAR_CHECK_S
