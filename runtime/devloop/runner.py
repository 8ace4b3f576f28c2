"""The developer loop of one app: restart it when its files change or on a cron schedule.

The supervisor runs `run_devloop(app)` as one task per app whose spec has `watch`
or `cron_restart`, and cancels it at shutdown. Both halves end in
`app.restart_now(reason)`, which resets the backoff, starts a crash-looping slot at
once and rolls a socket-serving app with zero downtime.

Events: `watch_started` (`paths`, `dirs`, `setup_ms`), `watch_restart` (`paths`, at
most 10, relative to the app's cwd, and `count`), `cron_scheduled` (`next_run`, ISO
UTC), `cron_restart` (`scheduled`); `watch_failed` / `cron_invalid` when a half cannot
run (the other half and the app keep running).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from datetime import UTC, datetime, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo

from runtime.config.cron import next_fire, validate_cron
from runtime.config.spec import AppSpec
from runtime.devloop.watch import Debounce, IgnoreRules, TreeWatcher, own_output_files
from runtime.logs import events
from runtime.logs.formats import utc_timestamp

__all__ = ["Clock", "LoopClock", "Restartable", "cron_restarts", "run_devloop", "watch_files"]

DEFAULT_QUIET_MS = 100  # `watch_delay` unset: a save (or `git checkout`) is a burst of events
MIN_QUIET_MS = 50  # a smaller `watch_delay` still waits this long
MAX_WAIT_FACTOR = 10  # a tree that never goes quiet still restarts every 10 quiet periods
MIN_MAX_WAIT_S = 1.0
MAX_CRON_SLEEP_S = 60.0  # re-read the wall clock at least this often (clock jumps, suspend)
PATHS_LOGGED = 10


class Restartable(Protocol):
    """What the developer loop needs of an app: its spec, and a restart that resets backoff."""

    @property
    def spec(self) -> AppSpec: ...

    async def restart_now(self, reason: str) -> None: ...


class Clock(Protocol):
    """Wall time for cron arithmetic, and a sleep on the loop (a fake in tests)."""

    def wall(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


def local_zone() -> tzinfo:
    """The container's zone: `$TZ`, else /etc/localtime, else UTC; DST-aware when found."""
    name = os.environ.get("TZ", "").lstrip(":")
    with contextlib.suppress(Exception):
        if name:
            return ZoneInfo(name)
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    return UTC


class LoopClock:
    """Wall time in the local zone; sleeps on the event loop's monotonic clock."""

    def __init__(self, zone: tzinfo | None = None) -> None:
        self.zone = zone or local_zone()

    def wall(self) -> datetime:
        return datetime.now(self.zone)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def run_devloop(app: Restartable, *, clock: Clock | None = None) -> None:
    """Run the file watcher and/or the cron timer of `app` until cancelled."""
    spec = app.spec
    async with asyncio.TaskGroup() as group:
        if spec.watch:
            group.create_task(watch_files(app))
        if spec.cron_restart:
            group.create_task(cron_restarts(app, spec.cron_restart, clock or LoopClock()))


# ----- watch ---------------------------------------------------------------------------


def _shown(path: str, cwd: str) -> str:
    return os.path.relpath(path, cwd) if path.startswith(cwd.rstrip("/") + "/") else path


async def watch_files(app: Restartable) -> None:
    """Restart `app` once per burst of changes under its `watch` paths."""
    spec, loop = app.spec, asyncio.get_running_loop()
    log = events.logger().bind(app=spec.name)
    quiet_s = max(spec.watch_delay_ms or DEFAULT_QUIET_MS, MIN_QUIET_MS) / 1000
    debounce = Debounce(quiet_s, max(quiet_s * MAX_WAIT_FACTOR, MIN_MAX_WAIT_S))
    wake = asyncio.Event()

    def on_change(paths: list[str]) -> None:
        now = loop.time()
        for path in paths:
            debounce.add(path, now)
        wake.set()

    roots = [os.path.join(spec.cwd, p) for p in spec.watch]
    rules = IgnoreRules.compile(spec.ignore_watch)
    exclude = own_output_files()  # the runtime's own log file may sit in the tree
    watcher = TreeWatcher(roots, rules, on_change, loop, base=spec.cwd, exclude=exclude)
    started = time.monotonic()
    try:
        stats = watcher.start()
    except OSError as exc:
        watcher.close()
        log.error("watch_failed", error=str(exc))
        return
    try:
        log.info(
            "watch_started",
            paths=[_shown(r, spec.cwd) for r in roots],
            dirs=stats.dirs,
            setup_ms=round((time.monotonic() - started) * 1000, 1),
        )
        for path in stats.missing:
            log.warning("watch_path_missing", path=path)
        for error in stats.errors:
            log.warning("watch_error", error=error)
        while True:
            wake.clear()
            deadline = debounce.deadline()
            if deadline is None:
                await wake.wait()
                continue
            if deadline > loop.time():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await wake.wait()
                continue
            batch = debounce.take(loop.time())
            if batch is None:
                continue
            shown = [_shown(p, spec.cwd) for p in batch.paths[:PATHS_LOGGED]]
            log.info("watch_restart", paths=shown, count=len(batch.paths))
            await app.restart_now("watch")
    finally:
        watcher.close()


# ----- cron ----------------------------------------------------------------------------


def _iso_utc(moment: datetime) -> str:
    return utc_timestamp(moment.timestamp())


async def _sleep_until(clock: Clock, due: datetime) -> None:
    """Sleep on the loop until the wall clock reaches `due`, re-reading it every minute."""
    while (remaining := (due - clock.wall()).total_seconds()) > 0:
        await clock.sleep(min(remaining, MAX_CRON_SLEEP_S))


async def cron_restarts(app: Restartable, expr: str, clock: Clock) -> None:
    """Restart `app` at every firing of `expr`; the next one is computed from the wall clock."""
    log = events.logger().bind(app=app.spec.name)
    error = validate_cron(expr)
    if error is not None:
        log.error("cron_invalid", error=error)
        return
    after = clock.wall()
    while True:
        due = next_fire(expr, after)
        log.info("cron_scheduled", next_run=_iso_utc(due), expression=expr)
        await _sleep_until(clock, due)
        log.info("cron_restart", scheduled=_iso_utc(due))
        await app.restart_now("cron")
        # From the wall clock, not from `due` + period: no drift, and a restart longer
        # than the period skips the firings it overran instead of queueing them.
        after = max(clock.wall(), due)
