"""Parsing `scale` arguments and planning which slots start or stop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.policy.scale import ScalePlan, ScaleRequest, parse_scale, plan_scale


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", ScaleRequest("set", 3)),
        ("0", ScaleRequest("set", 0)),
        ("+2", ScaleRequest("add", 2)),
        ("-1", ScaleRequest("remove", 1)),
        (" 4 ", ScaleRequest("set", 4)),
        ("007", ScaleRequest("set", 7)),
        ("+0", ScaleRequest("add", 0)),
    ],
    ids=["set", "zero", "add", "remove", "spaces", "leading-zeros", "add-zero"],
)
def test_parse_scale(text: str, expected: ScaleRequest) -> None:
    """`N` sets, `+N` adds and `-N` removes instances."""
    assert parse_scale(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "abc", "1.5", "++1", "+-1", "--1", "+", "3x", "1 2", "max", "٣"],
    ids=[
        "empty",
        "blank",
        "word",
        "float",
        "double-plus",
        "plus-minus",
        "double-minus",
        "sign-only",
        "suffix",
        "two-numbers",
        "max",
        "non-ascii-digit",
    ],
)
def test_parse_scale_rejects_junk(text: str) -> None:
    """Anything but a whole number with an optional sign is a one-line ValueError."""
    with pytest.raises(ValueError, match=r"^scale: expected N, \+N or -N .*, got ") as info:
        parse_scale(text)
    assert "\n" not in str(info.value)


def test_scale_request_rejects_negative_count() -> None:
    """A negative count (a negative target) is refused at construction."""
    with pytest.raises(ValueError, match="must not be negative, got -1"):
        ScaleRequest("set", -1)


@pytest.mark.parametrize(
    ("running", "request_", "expected"),
    [
        ((0, 1), ScaleRequest("set", 4), ScalePlan(start=(2, 3), stop=())),
        ((0, 1, 2, 3), ScaleRequest("set", 2), ScalePlan(start=(), stop=(3, 2))),
        ((0, 1), ScaleRequest("set", 2), ScalePlan(start=(), stop=())),
        ((0, 1), ScaleRequest("set", 0), ScalePlan(start=(), stop=(1, 0))),
        ((1, 3), ScaleRequest("add", 3), ScalePlan(start=(0, 2, 4), stop=())),
        ((), ScaleRequest("add", 2), ScalePlan(start=(0, 1), stop=())),
        ((0, 2, 5), ScaleRequest("remove", 1), ScalePlan(start=(), stop=(5,))),
        ((0, 1), ScaleRequest("remove", 5), ScalePlan(start=(), stop=(1, 0))),
        ((), ScaleRequest("remove", 1), ScalePlan(start=(), stop=())),
        ((2, 0, 1), ScaleRequest("set", 1), ScalePlan(start=(), stop=(2, 1))),
        ((0, 0, 1), ScaleRequest("add", 1), ScalePlan(start=(2,), stop=())),
    ],
    ids=[
        "up-to-4",
        "down-to-2-highest-first",
        "already-there",
        "set-to-zero",
        "add-fills-gaps-first",
        "add-from-nothing",
        "remove-highest",
        "remove-more-than-running-stops-at-0",
        "remove-from-nothing",
        "unsorted-input",
        "duplicate-running-counts-once",
    ],
)
def test_plan_scale(running: tuple[int, ...], request_: ScaleRequest, expected: ScalePlan) -> None:
    """New slots take the lowest free numbers and scaling down stops the highest first."""
    assert plan_scale(running, request_) == expected


requests = st.builds(
    ScaleRequest,
    mode=st.sampled_from(["set", "add", "remove"]),
    n=st.integers(min_value=0, max_value=50),
)


@given(running=st.lists(st.integers(min_value=0, max_value=60), max_size=30), request_=requests)
def test_plan_scale_properties(running: list[int], request_: ScaleRequest) -> None:
    """A plan starts only free slots, stops only running ones, never repeats one, keeps >= 0."""
    plan = plan_scale(running, request_)
    current = set(running)
    assert len(set(plan.start)) == len(plan.start)
    assert len(set(plan.stop)) == len(plan.stop)
    assert not (set(plan.start) & current)
    assert set(plan.stop) <= current
    assert not (plan.start and plan.stop)
    after = (current - set(plan.stop)) | set(plan.start)
    expected = {"set": request_.n, "add": len(current) + request_.n}.get(
        request_.mode, max(0, len(current) - request_.n)
    )
    assert len(after) == expected
    assert all(slot >= 0 for slot in after)
    assert list(plan.start) == sorted(plan.start)
    assert list(plan.stop) == sorted(plan.stop, reverse=True)


@pytest.mark.parametrize("text", ["100000000000000", "4097", "+99999"])
def test_absurd_counts_are_refused(text: str) -> None:
    """A count past MAX_INSTANCES is refused at once (it used to freeze the master)."""
    with pytest.raises(ValueError, match="at most 4096 instances"):
        parse_scale(text)


def test_adding_stops_at_the_bound() -> None:
    """+N on a large app never plans past MAX_INSTANCES slots."""
    plan = plan_scale(range(4090), parse_scale("+100"))
    assert len(plan.start) == 6
