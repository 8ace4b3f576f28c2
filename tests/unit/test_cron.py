"""cron_restart: parsing, validation, next firing time, and the devloop's timer on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog
import uvloop

from runtime.config.cron import next_fire, normalize_cron, validate_cron
from runtime.devloop.runner import cron_restarts

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize(
    ("expr", "now", "expected"),
    [
        ("*/5 * * * *", T0, datetime(2026, 1, 1, 12, 5, tzinfo=UTC)),
        ("*/5 * * * *", T0 + timedelta(seconds=1), datetime(2026, 1, 1, 12, 5, tzinfo=UTC)),
        ("0 3 * * *", T0, datetime(2026, 1, 2, 3, 0, tzinfo=UTC)),
        (
            "0 3 * * mon-fri",
            datetime(2026, 1, 2, 4, tzinfo=UTC),
            datetime(2026, 1, 5, 3, tzinfo=UTC),
        ),
        ("30 2 1 * *", T0, datetime(2026, 2, 1, 2, 30, tzinfo=UTC)),
        ("0 0 29 2 *", T0, datetime(2028, 2, 29, tzinfo=UTC)),
        ("0 0 1 jan *", T0, datetime(2027, 1, 1, tzinfo=UTC)),
        ("*/2 * * * * *", T0, datetime(2026, 1, 1, 12, 0, 2, tzinfo=UTC)),  # seconds first
        ("30 0 12 * * *", T0, datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)),
        ("@yearly", T0, datetime(2027, 1, 1, tzinfo=UTC)),
        ("@annually", T0, datetime(2027, 1, 1, tzinfo=UTC)),
        ("@monthly", T0, datetime(2026, 2, 1, tzinfo=UTC)),
        ("@weekly", T0, datetime(2026, 1, 4, tzinfo=UTC)),  # Sunday midnight
        ("@daily", T0, datetime(2026, 1, 2, tzinfo=UTC)),
        ("@midnight", T0, datetime(2026, 1, 2, tzinfo=UTC)),
        ("@hourly", T0, datetime(2026, 1, 1, 13, tzinfo=UTC)),
        ("  @HOURLY ", T0, datetime(2026, 1, 1, 13, tzinfo=UTC)),
        ("0  *  * * *", T0, datetime(2026, 1, 1, 13, tzinfo=UTC)),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_next_fire(expr: str, now: datetime, expected: datetime) -> None:
    """The next firing is the first matching instant strictly after `now`."""
    assert validate_cron(expr) is None
    assert next_fire(expr, now) == expected


def test_next_fire_uses_the_zone_of_now() -> None:
    """`0 3 * * *` means 03:00 local time, across a DST change too."""
    paris = ZoneInfo("Europe/Paris")
    before = datetime(2026, 3, 28, 20, 0, tzinfo=paris)  # DST starts 2026-03-29 02:00
    fire = next_fire("0 3 * * *", before)
    assert (fire.hour, fire.utcoffset()) == (3, timedelta(hours=2))
    assert fire.astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("", "0 fields"),
        ("* * * *", "4 fields"),
        ("* * * * * * *", "7 fields"),
        ("61 * * * *", "out of range"),
        ("* 24 * * *", "out of range"),
        ("* * 0 * *", ""),
        ("* * * 13 *", ""),
        ("* * * * 8", ""),
        ("*/0 * * * *", ""),
        ("a b c d e", ""),
        ("0 0 30 2 *", "it never fires"),
        ("@reboot", "unknown shortcut '@reboot'"),
        ("@every 5m", "unknown shortcut"),
        ("H * * * *", ""),
    ],
    ids=lambda v: repr(v),
)
def test_validate_cron_rejects(expr: str, reason: str) -> None:
    """A bad expression gives one `expected ..., got ...` line naming the expression and why."""
    message = validate_cron(expr)
    assert message is not None
    assert message.startswith("expected a cron expression: 5 fields")
    assert f", got {expr!r} (" in message
    assert reason in message
    assert "\n" not in message


def test_normalize_cron_expands_aliases() -> None:
    """Aliases become their five-field form; spacing is collapsed."""
    assert normalize_cron("@daily") == "0 0 * * *"
    assert normalize_cron(" */5   * * * * ") == "*/5 * * * *"


# ----- the devloop's cron half on a fake clock -----------------------------------------


@dataclass
class FakeClock:
    """Wall time that moves only when the loop sleeps, by what it asked (plus `lag_s`)."""

    now: datetime
    lag_s: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def wall(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds + self.lag_s)


@dataclass
class FakeSink:
    """The master events logged while it was filled (structlog's captured dicts)."""

    events: list[dict[str, Any]] = field(default_factory=list)


class FakeApp:
    """Counts restarts and stops the test after `limit` of them."""

    def __init__(self, clock: FakeClock, limit: int, restart_s: float = 0.0) -> None:
        self.spec = type("Spec", (), {"name": "web"})()
        self.clock = clock
        self.limit = limit
        self.restart_s = restart_s
        self.restarts: list[tuple[str, datetime]] = []

    async def restart_now(self, reason: str) -> None:
        self.restarts.append((reason, self.clock.now))
        self.clock.now += timedelta(seconds=self.restart_s)
        if len(self.restarts) >= self.limit:
            raise _Done


class _Done(Exception):
    pass


def _drive(expr: str, clock: FakeClock, app: FakeApp, sink: FakeSink) -> None:
    async def main() -> None:
        with pytest.raises(_Done):
            await cron_restarts(app, expr, clock)  # type: ignore[arg-type]

    with structlog.testing.capture_logs() as captured:
        uvloop.run(main(), debug=True)
    sink.events.extend(captured)


def test_cron_fires_on_schedule_without_drift() -> None:
    """Every 2 s for 5 firings lands on even seconds even when each sleep overshoots."""
    clock = FakeClock(T0 + timedelta(milliseconds=300), lag_s=0.013)
    app, sink = FakeApp(clock, limit=5, restart_s=0.4), FakeSink()
    _drive("*/2 * * * * *", clock, app, sink)
    fired = [when for _, when in app.restarts]
    assert [reason for reason, _ in app.restarts] == ["cron"] * 5
    assert [f.second for f in fired] == [2, 4, 6, 8, 10]
    assert all(f.microsecond < 20_000 for f in fired)  # one lag, never an accumulated one
    scheduled = [e["next_run"] for e in sink.events if e["event"] == "cron_scheduled"]
    assert scheduled[:3] == [
        "2026-01-01T12:00:02.000Z",
        "2026-01-01T12:00:04.000Z",
        "2026-01-01T12:00:06.000Z",
    ]
    names = [e["event"] for e in sink.events]
    assert names[:4] == ["cron_scheduled", "cron_restart", "cron_scheduled", "cron_restart"]


def test_cron_long_sleeps_are_cut_so_clock_jumps_are_seen() -> None:
    """An hourly restart sleeps in chunks of at most a minute, re-reading the wall clock."""
    clock = FakeClock(T0 + timedelta(minutes=1))
    app, sink = FakeApp(clock, limit=1), FakeSink()
    _drive("@hourly", clock, app, sink)
    assert app.restarts == [("cron", datetime(2026, 1, 1, 13, tzinfo=UTC))]
    assert max(clock.sleeps) <= 60.0
    assert len(clock.sleeps) == 59


def test_cron_restart_longer_than_the_period_skips_missed_firings() -> None:
    """A restart that overruns the next firing does not queue a burst of restarts."""
    clock = FakeClock(T0)
    app, sink = FakeApp(clock, limit=3, restart_s=5.0), FakeSink()
    _drive("*/2 * * * * *", clock, app, sink)
    assert [when.second for _, when in app.restarts] == [2, 8, 14]


def test_cron_invalid_expression_is_reported_and_ends_quietly() -> None:
    """An invalid expression logs `cron_invalid` once and never restarts."""
    clock = FakeClock(T0)
    app, sink = FakeApp(clock, limit=1), FakeSink()

    async def main() -> None:
        await cron_restarts(app, "61 * * * *", clock)  # type: ignore[arg-type]

    with structlog.testing.capture_logs() as captured:
        uvloop.run(main(), debug=True)
    sink.events.extend(captured)
    assert app.restarts == []
    assert [e["event"] for e in sink.events] == ["cron_invalid"]
    assert sink.events[0]["log_level"] == "error"
