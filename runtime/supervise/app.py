"""One app's instance slots: spawn, readiness, restart policy, rolling reload, scaling."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime.config.spec import AppSpec
from runtime.logs import events
from runtime.logs.events import LEVELS
from runtime.logs.sink import LogSink
from runtime.policy.lifecycle import AppOutcome, AppStatus
from runtime.policy.memory import decide_memory
from runtime.policy.restart import (
    GiveUp,
    Restart,
    RestartPolicy,
    RestartState,
    Stop,
    WorkerExit,
    decide_restart,
    reset_state,
)
from runtime.proc.reaper import ExitStatus, Reaper, signal_name
from runtime.proc.sockets import AppListeners
from runtime.proc.stop import kill_group_now, signal_worker, stop_process, wait_group_gone
from runtime.supervise.readiness import wait_notified, wait_ready
from runtime.supervise.rolling import replace_slot, rolling_reload

if TYPE_CHECKING:
    from runtime.policy.scale import ScaleRequest
from runtime.boot.early import Early
from runtime.proc.spawn import Forked, fork_worker, worker_env
from runtime.supervise.worker import Worker, adopt_worker

EXIT_HISTORY = 10
PORT_IN_USE_MARKERS = (b"EADDRINUSE", b"Address already in use", b"address already in use")


@dataclass
class AppContext:
    """What every app shares with the master."""

    loop: asyncio.AbstractEventLoop
    sink: LogSink
    reaper: Reaper
    base_env: Mapping[str, str]
    notify_socket: str | None
    shutting_down: Callable[[], bool]
    changed: Callable[[], None]
    next_id: Callable[[], int]
    recent_output: Callable[[str, int], list[bytes]]  # (app, pid): its last lines, from the ring


@dataclass(eq=False)
class Slot:
    """One instance number of an app and whatever currently runs in it."""

    index: int
    id: int = 0
    worker: Worker | None = None
    status: AppStatus = AppStatus.LAUNCHING
    restart_state: RestartState = field(default_factory=reset_state)
    timer: asyncio.TimerHandle | None = None
    ended: bool = False
    failed: bool = False
    restarts: int = 0
    replacing: Worker | None = None
    manual_stop: bool = False  # stopped through the control API: not an ending for auto-exit
    exits: deque[tuple[float, int | None, int | None]] = field(
        default_factory=lambda: deque(maxlen=EXIT_HISTORY)
    )


class App:
    """Owns the slots of one app; every state change goes through these methods."""

    def __init__(self, spec: AppSpec, ctx: AppContext, listeners: AppListeners | None) -> None:
        self.spec = spec
        self.ctx = ctx
        self.listeners = listeners
        self.slots: dict[int, Slot] = {}
        self.policy = RestartPolicy.from_spec(spec)
        self.log = events.logger().bind(app=spec.name)
        self.base_env = ctx.base_env  # under the app's own env (`--update-env` replaces it)
        self.reloading = False
        self._hinted = False  # the EADDRINUSE hint is given once per app
        self._tasks: set[asyncio.Task[None]] = set()

    def update_spec(self, spec: AppSpec, base_env: Mapping[str, str] | None = None) -> None:
        """A new spec (SIGHUP, `restart --env`); running workers keep the old one until
        they are replaced. `base_env`: a new environment under the app's own (`--update-env`)."""
        self.spec = spec
        self.policy = RestartPolicy.from_spec(spec)
        if base_env is not None:
            self.base_env = base_env

    # ----- queries -------------------------------------------------------------------

    def workers(self) -> list[Worker]:
        out: list[Worker] = []
        for slot in self.slots.values():
            out.extend(w for w in (slot.worker, slot.replacing) if w is not None and w.alive)
        return out

    def outcome(self) -> AppOutcome:
        slots = self.slots.values()
        ended = bool(self.slots) and all(s.ended and not s.manual_stop for s in slots)
        return AppOutcome(ended=ended, failed=any(s.failed for s in slots))

    def _new_slot(self, index: int) -> Slot:
        slot = self.slots.get(index)
        if slot is None:
            slot = self.slots[index] = Slot(index, id=self.ctx.next_id())
        return slot

    # ----- start ---------------------------------------------------------------------

    def start(self, early: Early | None = None) -> None:
        """Start every instance, taking over those forked before the loop existed; with
        `autostart: false`, register them as stopped (`start NAME` starts them)."""
        adopted = {f.slot: f for f in early.workers.get(self.spec.name, ())} if early else {}
        for index in range(self.spec.instances):
            slot = self._new_slot(index)
            if not self.spec.autostart:
                slot.status, slot.ended, slot.manual_stop = AppStatus.STOPPED, True, True
                continue
            forked = adopted.get(index)
            if forked is None or early is None:
                self.spawn_into(slot)
                continue
            pending = early.pending.get(forked.pid, (b"", b""))
            self._begin(slot, self._adopt(slot, forked, pending, announce=not early.announced))

    def spawn_worker(self, slot: Slot) -> Worker:
        env = worker_env(self.base_env, self.ctx.notify_socket, self.listeners, slot.index)
        return self._adopt(slot, fork_worker(self.spec, slot.index, env))

    def _adopt(
        self,
        slot: Slot,
        forked: Forked,
        pending: tuple[bytes, bytes] = (b"", b""),
        *,
        announce: bool = True,
    ) -> Worker:
        worker = adopt_worker(
            self.spec,
            forked,
            sink=self.ctx.sink,
            reaper=self.ctx.reaper,
            loop=self.ctx.loop,
            on_exit=self._on_exit,
            on_message=self._on_message,
            pending=pending,
        )
        if announce:
            self._event("worker_started", worker, restarts=slot.restarts)
        self._own(self._track_readiness(worker))
        return worker

    def spawn_into(self, slot: Slot) -> Worker:
        return self._begin(slot, self.spawn_worker(slot))

    def _begin(self, slot: Slot, worker: Worker) -> Worker:
        slot.timer = None
        slot.ended = slot.failed = slot.manual_stop = False
        slot.status = AppStatus.LAUNCHING
        slot.worker = worker
        return worker

    def _own(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.ctx.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.app_event("internal_error", level="error", error=repr(task.exception()))

    # ----- readiness -----------------------------------------------------------------

    async def _track_readiness(self, worker: Worker) -> None:
        ok = await wait_ready(self.spec, worker, self.listeners)
        worker.mark_ready(ok)  # the verdict a reload waits for
        if not ok and worker.alive and self.spec.wait_ready:
            self._event(
                "ready_timeout", worker, level="warning", timeout_ms=self.spec.listen_timeout_ms
            )
            ok = await wait_notified(worker)
        slot = self.slots.get(worker.slot)
        if not ok or slot is None or not worker.alive:
            return
        self._event("worker_ready", worker)
        if slot.worker is worker:  # a replacement becomes the slot's worker when the old stops
            slot.status = AppStatus.ONLINE
            self.ctx.changed()

    # ----- exits and restarts --------------------------------------------------------

    def _on_message(self, worker: Worker, message: object) -> None:
        """A message a node worker sent with `process.send` (pm2's `'ready'`)."""
        if message == "ready":
            worker.mark_notified()

    def _on_exit(self, worker: Worker, status: ExitStatus) -> None:
        """Called by the reaper: drain the pipes first, so no line is logged after the exit."""
        worker.logs.drain()
        worker.logs.close()
        if worker.channel is not None:
            worker.channel.close()
        uptime_s = self.ctx.loop.time() - worker.started_at
        requested = worker.stopping or self.ctx.shutting_down()
        level = "info" if requested or status.clean else "warning"
        extra: dict[str, object] = {}
        if status.signal == signal.SIGKILL and not requested:
            extra["hint"] = "killed by SIGKILL: out of memory?"
        self._event(
            "worker_exited",
            worker,
            level=level,
            code=status.code,
            signal=signal_name(status.signal) if status.signal is not None else None,
            uptime_s=round(uptime_s, 3),
            **extra,
        )
        worker.exited.set_result(status)
        worker.mark_ready(False)
        if not requested and not status.clean:
            self._hint_port_in_use(worker)
        if self.spec.treekill and not requested:
            self._own(_reap_leftovers(worker.pid, self.spec.kill_timeout_ms / 1000))
        slot = self.slots.get(worker.slot)
        if slot is None or slot.worker is not worker or requested:
            return  # a replacement, a stopped or a scaled-down worker: its owner handles it
        slot.exits.append((time.time(), status.code, status.signal))
        exit_ = WorkerExit(
            code=status.code, signal=status.signal, uptime_s=uptime_s, requested=False
        )
        self._apply_restart_decision(
            slot, worker, decide_restart(self.policy, slot.restart_state, exit_)
        )

    def _hint_port_in_use(self, worker: Worker) -> None:
        """A cluster worker that died on EADDRINUSE: say once what to do instead."""
        if self._hinted or self.spec.exec_mode != "cluster" or self.listeners is None:
            return
        output = b"".join(self.ctx.recent_output(self.spec.name, worker.pid))
        if not any(marker in output for marker in PORT_IN_USE_MARKERS):
            return
        self._hinted = True
        ports = sorted({a.port for a in self.listeners.addresses if a.kind != "unix"})
        cause = "bound the port itself" if self.spec.preload else "bound the port (preload off)"
        self._event(
            "hint",
            worker,
            level="warning",
            ports=ports,
            message=f"{self.spec.name} {cause} and found it taken by the runtime's pre-bound "
            "socket: serve on the inherited listener (LISTEN_FDS, fd 3) instead; recipes per "
            "language in docs/servers.md",
        )

    def _apply_restart_decision(
        self, slot: Slot, worker: Worker, decision: Restart | Stop | GiveUp
    ) -> None:
        slot.restart_state = decision.state
        slot.worker = None
        if isinstance(decision, Restart):
            slot.status = AppStatus.WAITING_RESTART
            if not decision.maybe_stopping:  # else announced once the grace has passed
                self._event("restart_scheduled", worker, delay_ms=decision.delay_ms)
            if decision.delay_ms <= 0:
                self._restart_slot(slot)
            else:
                slot.timer = self.ctx.loop.call_later(
                    decision.delay_ms / 1000, self._restart_slot, slot, decision, worker
                )
            return
        slot.ended = True
        if isinstance(decision, GiveUp):
            slot.status, slot.failed = AppStatus.ERRORED, True
            self._event(
                "worker_errored",
                worker,
                level="error",
                reason=decision.reason,
                restarts=slot.restarts,
            )
        else:
            slot.status, slot.failed = AppStatus.STOPPED, decision.failed
            self._event("worker_stopped", worker, reason=decision.reason)
        self.ctx.changed()

    def _restart_slot(
        self, slot: Slot, decision: Restart | None = None, old: Worker | None = None
    ) -> None:
        if self.ctx.shutting_down() or self.slots.get(slot.index) is not slot:
            return
        if decision is not None and decision.maybe_stopping and old is not None:
            self._event("restart_scheduled", old, delay_ms=decision.delay_ms, after_grace=True)
        slot.restarts += 1
        self.spawn_into(slot)

    # ----- memory --------------------------------------------------------------------

    def check_memory(self, rss_by_pid: Mapping[int, int]) -> None:
        limit = self.spec.max_memory_restart_bytes
        for slot in list(self.slots.values()):
            worker = slot.worker
            if worker is None or not worker.alive or worker.pid not in rss_by_pid:
                continue
            verdict = decide_memory(
                limit, rss_by_pid[worker.pid], restarting=worker.restart_pending
            )
            if verdict is None or not verdict.restart:
                continue
            worker.restart_pending = True
            self._event(
                "memory_limit",
                worker,
                level="warning",
                rss_bytes=verdict.rss_bytes,
                limit_bytes=verdict.limit_bytes,
            )
            self._own(self._replace(slot, worker))

    async def _replace(self, slot: Slot, old: Worker) -> None:
        """Graceful restart of one slot: overlap when it serves a socket, else stop then start."""
        if self.listeners is not None:
            if self.reloading or not await self._guarded(replace_slot(self, slot.index)):
                old.restart_pending = False  # the next memory check tries again
            return
        old.stopping = True
        await self.stop_worker(old)
        if self.slots.get(slot.index) is slot and not self.ctx.shutting_down():
            slot.restarts += 1
            slot.restart_state = reset_state()
            self.spawn_into(slot)

    async def restart_now(self, reason: str) -> None:
        """Restart every instance now (file change, cron, control API), resetting backoff.

        Slots waiting to restart or errored start at once; an app serving sockets rolls
        with zero downtime, any other app stops each worker and starts it again.
        """
        self.app_event("restart_requested", reason=reason)
        running: list[int] = []
        for slot in list(self.slots.values()):
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
            slot.restart_state = reset_state()
            if slot.worker is None or not slot.worker.alive:
                slot.restarts += 1
                self.spawn_into(slot)
            else:
                running.append(slot.index)
        if self.listeners is not None:
            await self.reload(running)
            return
        for index in running:
            current = self.slots.get(index)
            if current is not None and current.worker is not None:
                await self._replace(current, current.worker)

    # ----- control API ---------------------------------------------------------------

    def _pick(self, indices: Sequence[int] | None) -> list[Slot]:
        chosen = sorted(self.slots) if indices is None else indices
        return [self.slots[i] for i in chosen if i in self.slots]

    async def stop_slots(self, indices: Sequence[int] | None = None) -> None:
        """Stop instances on request; they stay listed as stopped until started again."""
        slots = self._pick(indices)
        for slot in slots:
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
            slot.manual_stop = True
            if slot.worker is not None:
                slot.status = AppStatus.STOPPING
        await asyncio.gather(
            *(self.stop_worker(w) for s in slots for w in (s.worker, s.replacing) if w)
        )
        for slot in slots:
            slot.worker = slot.replacing = None
            slot.status, slot.ended = AppStatus.STOPPED, True
        self.app_event("stopped", instances=[s.index for s in slots])
        self.ctx.changed()

    def start_slots(self, indices: Sequence[int] | None = None) -> list[int]:
        """Start instances that are not running (stopped, errored, waiting to restart)."""
        started = []
        for slot in self._pick(indices):
            if slot.worker is not None and slot.worker.alive:
                continue
            if slot.timer is not None:
                slot.timer.cancel()
            slot.restart_state = reset_state()
            self.spawn_into(slot)
            started.append(slot.index)
        return started

    async def restart_slots(self, indices: Sequence[int] | None = None) -> None:
        """pm2's restart: each instance in turn is stopped, then started (no overlap)."""
        for slot in self._pick(indices):
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
            if slot.worker is not None and slot.worker.alive:
                await self.stop_worker(slot.worker)
            if self.slots.get(slot.index) is slot and not self.ctx.shutting_down():
                slot.restarts += 1
                slot.restart_state = reset_state()
                self.spawn_into(slot)

    async def delete_slot(self, index: int) -> None:
        """Stop one instance and forget it (`delete <id>`)."""
        slot = self.slots.pop(index, None)
        if slot is None:
            return
        if slot.timer is not None:
            slot.timer.cancel()
        await asyncio.gather(*(self.stop_worker(w) for w in (slot.worker, slot.replacing) if w))
        if self.listeners is not None:
            self.listeners.release_slot(index)
        self.ctx.changed()

    # ----- stop ----------------------------------------------------------------------

    async def stop_worker(self, worker: Worker) -> ExitStatus:
        """The graceful stop: `kill_signal` (or pm2's `'shutdown'` message), then SIGKILL."""
        worker.stopping = True
        channel = worker.channel if self.spec.shutdown_with_message else None
        return await stop_process(
            worker.pid,
            worker.exited,
            kill_timeout_s=self.spec.kill_timeout_ms / 1000,
            treekill=self.spec.treekill,
            sig=self.spec.kill_signal,
            ask=None if channel is None else lambda: channel.send("shutdown"),
        )

    async def stop(self) -> None:
        """Graceful stop of every instance (TERM, kill_timeout, KILL), all at once."""
        for slot in self.slots.values():
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
            if slot.worker is not None:
                slot.status = AppStatus.STOPPING
        await asyncio.gather(*(self.stop_worker(w) for w in self.workers()))
        for slot in self.slots.values():
            slot.worker = slot.replacing = None
            slot.status, slot.ended = AppStatus.STOPPED, True
        await self._cancel_tasks()

    def kill(self) -> None:
        """SIGKILL every worker group now (SIGQUIT, or a second SIGTERM)."""
        for worker in self.workers():
            worker.stopping = True
            kill_group_now(worker.pid)

    async def wait_exited(self, timeout_s: float) -> None:
        pending = [w.exited for w in self.workers()]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ----- reload (runtime.supervise.rolling does the work, through the methods below) ----

    async def reload(self, slots: Sequence[int] | None = None) -> bool:
        """Rolling reload, one slot at a time; the first failure stops the rollout.

        An app with no pre-bound socket cannot run two workers side by side (the new one
        would find its port taken), so its reload is pm2's: each instance is stopped, then
        started.
        """
        if self.reloading:
            self.app_event("reload_skipped", level="warning", reason="a reload is already running")
            return False
        chosen = sorted(self.slots) if slots is None else slots
        if self.listeners is None:
            await self._guarded(self._restart_for_reload(chosen))
            return True
        return await self._guarded(rolling_reload(self, chosen))

    async def _restart_for_reload(self, slots: Sequence[int]) -> bool:
        await self.restart_slots(slots)
        self.app_event("reload_done", slots=list(slots), mode="restart")
        return True

    async def _guarded(self, rollout: Coroutine[Any, Any, bool]) -> bool:
        """Run a rollout as the app's only one (`reloading` while it runs)."""
        self.reloading = True
        try:
            return await rollout
        finally:
            self.reloading = False

    def shutting_down(self) -> bool:
        """The master is stopping: no rollout starts another worker."""
        return self.ctx.shutting_down()

    def start_replacement(self, index: int) -> Worker | None:
        """The slot's next worker: next to the old one, or in place when none is alive."""
        slot = self.slots.get(index)
        if slot is None:
            return None
        if slot.worker is None or not slot.worker.alive:
            if slot.timer is not None:
                slot.timer.cancel()
            slot.restart_state = reset_state()
            return self.spawn_into(slot)  # nothing to overlap with
        slot.replacing = self.spawn_worker(slot)
        return slot.replacing

    def promote_replacement(self, index: int) -> Worker | None:
        """The ready replacement takes over the slot; returns the old worker to stop."""
        slot = self.slots.get(index)
        if slot is None or slot.replacing is None:  # started in place: nothing old to stop
            return None
        old, slot.worker, slot.replacing = slot.worker, slot.replacing, None
        slot.restarts += 1
        slot.restart_state = reset_state()
        slot.status = AppStatus.ONLINE
        return old

    async def discard_replacement(self, index: int) -> None:
        """Stop the slot's replacement, if it has one; its old worker keeps serving."""
        slot = self.slots.get(index)
        if slot is not None and slot.replacing is not None:
            await self.stop_worker(slot.replacing)  # still listed (and killed) while it stops
            slot.replacing = None

    # ----- scale ---------------------------------------------------------------------

    async def scale(self, request: ScaleRequest) -> None:
        from runtime.policy.scale import plan_scale

        plan = plan_scale(sorted(self.slots), request)
        for index in plan.start:
            slot = self._new_slot(index)
            self.spawn_into(slot)
        stops = [self.slots.pop(index) for index in plan.stop]
        self.app_event(
            "scaled", instances=len(self.slots), started=list(plan.start), stopped=list(plan.stop)
        )
        for slot in stops:
            if slot.timer is not None:
                slot.timer.cancel()
        await asyncio.gather(
            *(self.stop_worker(w) for s in stops for w in (s.worker, s.replacing) if w is not None)
        )
        if self.listeners is not None:
            for slot in stops:
                self.listeners.release_slot(slot.index)
            if stops and self.listeners.sharing == "reuseport" and not _tcp_migrate_req():
                self.app_event(
                    "slot_sockets_closed",
                    level="warning",
                    instances=[s.index for s in stops],
                    hint="connections queued on them, if any, were reset; "
                    "net.ipv4.tcp_migrate_req=1 moves them to the remaining sockets",
                )
        self.ctx.changed()

    # ----- events --------------------------------------------------------------------

    def _event(self, name: str, worker: Worker, *, level: str = "info", **fields: object) -> None:
        self.log.log(LEVELS[level], name, instance=worker.slot, pid=worker.pid, **fields)

    def app_event(self, name: str, *, level: str = "info", **fields: Any) -> None:
        self.log.log(LEVELS[level], name, **fields)


def _tcp_migrate_req() -> bool:
    try:
        with open("/proc/sys/net/ipv4/tcp_migrate_req") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


async def _reap_leftovers(pgid: int, timeout_s: float) -> None:
    """After a crash, what is left of the worker's group gets SIGTERM, then SIGKILL."""
    if not signal_worker(pgid, signal.SIGTERM, group=True):
        return
    if not await wait_group_gone(pgid, timeout_s):
        kill_group_now(pgid)
