"""What the start-up relay keeps for the log ring is bounded, and handed over only once."""

from __future__ import annotations

from runtime.boot.early import FORWARDED_MAX_BYTES, Early
from runtime.logs.formats import Source

SRC = Source("web", 0, 100)


def test_a_flood_before_the_loop_keeps_only_the_newest_blocks() -> None:
    early = Early(listeners={}, notify_path="", notify_sock=None)
    block = b"x" * 1023 + b"\n"
    for i in range(4 * FORWARDED_MAX_BYTES // len(block)):
        early.remember(SRC, "stdout", f"t{i}", block)
    assert FORWARDED_MAX_BYTES - len(block) < early.forwarded_bytes <= FORWARDED_MAX_BYTES
    assert early.forwarded[-1][2] == f"t{4 * FORWARDED_MAX_BYTES // len(block) - 1}"
    taken = early.take_forwarded()
    assert sum(len(b) for *_, b in taken) == len(taken) * len(block) > 0
    assert (early.take_forwarded(), early.forwarded_bytes) == ([], 0)


def test_one_block_over_the_bound_is_still_kept() -> None:
    early = Early(listeners={}, notify_path="", notify_sock=None)
    early.remember(SRC, "stdout", "t0", b"y" * (FORWARDED_MAX_BYTES + 10))
    assert len(early.take_forwarded()) == 1
