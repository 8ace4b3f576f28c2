"""max_memory_restart decisions on one RSS sample."""

from __future__ import annotations

import pytest

from runtime.policy.memory import MemoryVerdict, decide_memory

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
