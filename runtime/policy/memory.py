"""`max_memory_restart`: whether one RSS sample calls for a restart (pm2's Worker loop)."""

from __future__ import annotations

from dataclasses import dataclass


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
