"""max_memory_restart decisions on one RSS sample."""

from __future__ import annotations

import pytest

from runtime.policy.memory import (
    FAR_CHECK_S,
    NEAR_CHECK_S,
    NEAR_RATIO,
    MemoryVerdict,
    decide_memory,
    next_check_s,
)

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("limit_bytes", "rss_bytes", "restarting", "expected"),
    [
        (None, 10_000 * MiB, False, None),
        (100 * MiB, 50 * MiB, False, None),
        (100 * MiB, 100 * MiB, False, None),
        (100 * MiB, 100 * MiB + 1, False, MemoryVerdict(True, 100 * MiB + 1, 100 * MiB)),
        (100 * MiB, 200 * MiB, True, None),
        (None, 0, True, None),
    ],
    ids=["no-limit", "under", "equal-is-within", "over", "over-but-restarting", "nothing"],
)
def test_decide_memory(
    limit_bytes: int | None, rss_bytes: int, restarting: bool, expected: MemoryVerdict | None
) -> None:
    """Only a sample strictly over the limit, with no restart under way, restarts the worker."""
    assert decide_memory(limit_bytes, rss_bytes, restarting=restarting) == expected


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], FAR_CHECK_S),
        ([(10 * MiB, 100 * MiB), (74 * MiB, 100 * MiB)], FAR_CHECK_S),
        ([(10 * MiB, 100 * MiB), (75 * MiB, 100 * MiB)], NEAR_CHECK_S),
        ([(300 * MiB, 200 * MiB)], NEAR_CHECK_S),
    ],
    ids=["nothing-read", "all-far", "one-near", "over"],
)
def test_next_check_is_sooner_near_a_limit(samples: list[tuple[int, int]], expected: float) -> None:
    """Once a second while every tree is far from its limit, four times a second near it."""
    assert next_check_s(samples) == expected


def test_check_intervals_keep_the_promises() -> None:
    """At least once a second (README.md), and the near interval is the shorter one."""
    assert FAR_CHECK_S <= 1.0
    assert 0 < NEAR_CHECK_S < FAR_CHECK_S
    assert 0 < NEAR_RATIO < 1
