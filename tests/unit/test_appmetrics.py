"""runtime.observe.appmetrics: what workers report about themselves, parsed and bounded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtime.observe.appmetrics import (
    AGE_KEY,
    MAX_CUSTOM,
    MAX_ITEMS_PER_REPORT,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    REPORTER_STALE_S,
    AppMetrics,
    loop_figures,
    metric_name,
    metric_value,
)

PID = 4121
LOOP = {"loop_delay_p50_ms": 0.4, "loop_delay_p99_ms": 12.5, "active_handles": 5}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (3, 3),
        (2.5, 2.5),
        ({"value": 7, "unit": "req/min", "type": "metric", "historic": True}, 7),  # pm2's form
        ({"unit": "ms"}, None),
        (True, "true"),
        (False, "false"),
        ("x" * 500, "x" * MAX_TEXT_CHARS),
        ("\x1b[2Jred", "\ufffd[2Jred"),
        ("two words", "two words"),
        (float("nan"), None),
        (float("inf"), None),
        (2**80, None),
        ([1, 2], None),
        (None, None),
    ],
    ids=[
        "int",
        "float",
        "pm2-wrapped",
        "pm2-no-value",
        "true",
        "false",
        "long-text-cut",
        "terminal-escape",
        "spaces-kept",
        "nan",
        "inf",
        "huge-int",
        "list",
        "null",
    ],
)
def test_metric_value(raw: object, expected: object) -> None:
    """A value is stored as a finite number or a cut, printable string; the rest is dropped."""
    assert metric_value(raw) == expected


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        ("queue", True),
        ("Event Loop Latency", True),
        ("", False),
        ("x" * (MAX_NAME_CHARS + 1), False),
        ("x" * MAX_NAME_CHARS, True),
        ("a\nb", False),
        (3, False),
    ],
    ids=["plain", "pm2-spaces", "empty", "too-long", "longest", "newline", "not-text"],
)
def test_metric_name(raw: object, ok: bool) -> None:
    """Names are printable text of 1..64 characters."""
    assert (metric_name(raw) is not None) is ok


def test_loop_figures_keep_known_keys_as_numbers() -> None:
    """Only the four loop keys pass, counts as ints, delays rounded; bad values are dropped."""
    figures = loop_figures(
        {
            "loop_delay_p50_ms": 0.12345,
            "loop_delay_p99_ms": -1,
            "active_handles": 5.0,
            "active_requests": True,
            "extra": 1,
        }
    )
    assert figures == {"loop_delay_p50_ms": 0.123, "active_handles": 5}
    assert loop_figures({"extra": 1}) is None
    assert loop_figures("nope") is None


def test_nothing_reported_is_an_empty_dict() -> None:
    """A worker that never reports shows {}."""
    assert AppMetrics().view(100.0) == {}


def test_loop_report_replaces_and_shows_its_age() -> None:
    """A loop report replaces the previous one; age_s counts from it."""
    m = AppMetrics()
    assert m.take_message({"type": "runtime:loop", "data": LOOP}, PID, 10.0)
    assert m.take_message({"type": "runtime:loop", "data": {"active_handles": 2}}, PID, 11.0)
    assert m.view(13.5) == {"active_handles": 2, AGE_KEY: 2.5}


def test_pm2_and_plain_forms_merge_by_name() -> None:
    """axm:monitor and runtime:metrics merge; null removes a name; the loop keys win."""
    m = AppMetrics()
    pm2 = {"type": "axm:monitor", "data": {"Requests": {"value": 12, "unit": "req"}}}
    assert m.take_message(pm2, PID, 1.0)
    assert m.take_message({"type": "runtime:metrics", "data": {"queue": 3, "mode": "ok"}}, PID, 1.5)
    assert m.take_message({"type": "runtime:metrics", "data": {"mode": None}}, PID, 1.6)
    m.take_message({"type": "runtime:metrics", "data": {"active_handles": 99}}, PID, 1.7)
    m.take_message({"type": "runtime:loop", "data": LOOP}, PID, 2.0)
    view = m.view(2.0)
    assert view == {"Requests": 12, "queue": 3, **LOOP, AGE_KEY: 0.0}


def test_other_messages_are_not_metrics() -> None:
    """'ready', strings, other types and malformed data are left alone."""
    m = AppMetrics()
    for message in ("ready", {"type": "axm:action", "data": {}}, {"type": "runtime:loop"}, [1]):
        assert not m.take_message(message, PID, 1.0)
    assert not m.take_message({"type": "runtime:metrics", "data": [1, 2]}, PID, 1.0)
    assert m.view(1.0) == {}


def test_names_are_bounded_per_worker() -> None:
    """At most 32 names; later new names are dropped, known ones still update."""
    m = AppMetrics()
    m.take_custom({f"m{i}": i for i in range(MAX_CUSTOM + 10)}, PID, 1.0)
    m.take_custom({"m0": "updated", "new": 1}, PID, 2.0)
    view = m.view(2.0)
    assert len(view) == MAX_CUSTOM + 1  # + age_s
    assert view["m0"] == "updated"
    assert "new" not in view
    assert f"m{MAX_CUSTOM}" not in view


def test_a_huge_report_is_read_only_so_far() -> None:
    """Only the first MAX_ITEMS_PER_REPORT entries of one report are looked at."""
    m = AppMetrics()
    data: dict[str, Any] = {f"bad\n{i}": 1 for i in range(MAX_ITEMS_PER_REPORT)}
    data["good"] = 1
    m.take_custom(data, PID, 1.0)
    assert "good" not in m.view(1.0)


def test_one_reporter_at_a_time() -> None:
    """Another process of the tree is heard only once the reporting one has gone quiet."""
    m = AppMetrics()
    m.take_loop(LOOP, PID, 10.0)
    assert not m.take_loop({"active_handles": 1}, PID + 1, 10.0 + REPORTER_STALE_S)
    assert not m.take_custom({"x": 1}, PID + 1, 10.0 + REPORTER_STALE_S)
    assert m.take_loop({"active_handles": 1}, PID + 1, 10.1 + REPORTER_STALE_S)
    assert m.view(20.0)["active_handles"] == 1


def test_clear_forgets_everything() -> None:
    """After the worker exits its report is gone."""
    m = AppMetrics()
    m.take_loop(LOOP, PID, 1.0)
    m.take_custom({"x": 1}, PID, 1.0)
    m.clear()
    assert m.view(2.0) == {}
    assert m.take_loop(LOOP, PID + 1, 2.0)  # and anyone may report again


def test_notify_fields() -> None:
    """X_RUNTIME_LOOP and X_RUNTIME_METRICS carry JSON; bad or too deep JSON is dropped."""
    m = AppMetrics()
    fields = {
        "X_RUNTIME_LOOP": json.dumps(LOOP),
        "X_RUNTIME_METRICS": '{"jobs": 2}',
        "READY": "1",
    }
    assert m.take_notify(fields, PID, 5.0)
    assert m.view(5.0) == {"jobs": 2, **LOOP, AGE_KEY: 0.0}
    assert not m.take_notify({"X_RUNTIME_METRICS": "not json"}, PID, 5.0)
    assert not m.take_notify({"X_RUNTIME_METRICS": "[" * 4000}, PID, 5.0)
    assert not m.take_notify({"STATUS": "busy"}, PID, 5.0)


def test_custom_only_age_counts_from_the_app_report() -> None:
    """Without loop figures, age_s is the age of the app's own report."""
    m = AppMetrics()
    m.take_custom({"jobs": 1}, PID, 3.0)
    assert m.view(4.25)[AGE_KEY] == 1.2
