"""One app's instance slots: spawn, readiness, restart policy, rolling reload, scaling."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from runtime.config.spec import AppSpec
from runtime.logs import events
from runtime.logs.events import LEVELS
from runtime.logs.formats import prefix_width
from runtime.policy.lifecycle import AppOutcome, AppStatus
from runtime.policy.memory import decide_memory
from runtime.policy.restart import (
    GiveUp,
    Restart,
    RestartPolicy,
    Stop,
    WorkerExit,
    decide_restart,
    reset_state,
    spawn_retry_ms,
)
from runtime.policy.steering import hand_over_queue
from runtime.proc.listeners import AppListeners
from runtime.proc.reaper import ExitStatus, signal_name
from runtime.proc.sockets import Listener, ListenError, migrate_req_enabled
from runtime.proc.stop import kill_group_now, signal_worker, stop_process, wait_group_gone
from runtime.supervise.readiness import wait_notified, wait_ready
from runtime.supervise.rolling import replace_slot, rolling_reload
from runtime.supervise.slot import AppContext, Slot
from runtime.supervise.traffic import Traffic

if TYPE_CHECKING:
    from runtime.policy.scale import ScaleRequest
from runtime.boot.early import Early
from runtime.proc.spawn import Forked, fork_worker, worker_env
from runtime.supervise.worker import Worker, adopt_worker

T = TypeVar("T")
PORT_IN_USE_MARKERS = (b"EADDRINUSE", b"Address already in use", b"address already in use")


class App:
    """Owns the slots of one app; every state change goes through these methods."""

    def __init__(self, spec: AppSpec, ctx: AppContext, listeners: AppListeners | None) -> None:
        self.spec = spec
        self.ctx = ctx
        self.listeners = listeners
        self.slots: dict[int, Slot] = {}
        self.policy = RestartPolicy.from_spec(spec)
        self.log = events.logger().bind(app=spec.name)
        self.traffic = Traffic(listeners, self.log)
        self._reload_lock = asyncio.Lock()  # one rollout at a time; a later one waits its turn
        self._retiring: dict[Worker, list[Listener]] = {}  # old workers and their sockets
        self.base_env = ctx.base_env  # under the app's own env (`--update-env` replaces it)
        self.reloading = False
        self._hinted = False  # the EADDRINUSE hint is given once per app
        self._tasks: set[asyncio.Task[None]] = set()
        self._widen_prefixes(spec.most_instances)

    def _widen_prefixes(self, instances: int) -> None:
        """Pretty logs pad every prefix to the widest one, this app's `name#N` included."""
        self.ctx.sink.formatter.widen(prefix_width([(self.spec.name, instances)]))

    def update_spec(self, spec: AppSpec, base_env: Mapping[str, str] | None = None) -> None:
        """A new spec (SIGHUP, `restart --env`); running workers keep the old one until
        they are replaced. `base_env`: a new environment under the app's own (`--update-env`)."""
        self.spec = spec
        self.policy = RestartPolicy.from_spec(spec)
        self._widen_prefixes(spec.most_instances)
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
        self.traffic.update(self.slots)

    def spawn_worker(
        self, slot: Slot, *, pending: bool = False, restarts: int | None = None
    ) -> Worker | None:
        """Fork the slot's next worker (with a reload's own sockets when `pending`); None
        when the fork fails (a pids limit, no fds left): the slot retries with a backoff."""
        try:
            env = worker_env(
                self.base_env, self.ctx.notify_socket, self.listeners, slot.index, pending=pending
            )
            forked = fork_worker(self.spec, slot.index, env)
        except (OSError, ListenError) as exc:
            self._spawn_failed(slot, exc)
            return None
        slot.spawn_failures = 0
        return self._adopt(slot, forked, restarts=restarts)

    def _spawn_failed(self, slot: Slot, exc: Exception) -> None:
        """Log why, and try again later: the slot is never left dead for good."""
        slot.spawn_failures += 1
        delay_ms = spawn_retry_ms(slot.spawn_failures)
        self.app_event(
            "spawn_failed", level="error", instance=slot.index, error=str(exc), retry_ms=delay_ms
        )
        if slot.worker is not None and slot.worker.alive:
            return  # a replacement failed to start: the old worker keeps serving
        slot.worker, slot.status = None, AppStatus.WAITING_RESTART
        slot.cancel_timer()
        slot.timer = self.ctx.loop.call_later(delay_ms / 1000, self._retry_spawn, slot)
        self.traffic.update(self.slots)

    def _retry_spawn(self, slot: Slot) -> None:
        slot.timer = None
        if not self.ctx.shutting_down() and self.slots.get(slot.index) is slot:
            self.spawn_into(slot)

    def _adopt(
        self,
        slot: Slot,
        forked: Forked,
        pending: tuple[bytes, bytes] = (b"", b""),
        *,
        announce: bool = True,
        restarts: int | None = None,
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
        if announce:  # a replacement counts as the slot's next restart, as `list` shows it
            count = slot.restarts if restarts is None else restarts
            self._event("worker_started", worker, restarts=count)
        self._own(self._track_readiness(worker))
        return worker

    def spawn_into(self, slot: Slot) -> Worker | None:
        """Start the slot's worker in place (nothing to overlap with)."""
        worker = self.spawn_worker(slot)
        return None if worker is None else self._begin(slot, worker)

    def _begin(self, slot: Slot, worker: Worker) -> Worker:
        slot.timer = None
        slot.ended = slot.failed = slot.manual_stop = False
        slot.status = AppStatus.LAUNCHING
        slot.worker = worker
        self.traffic.update(self.slots)
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
        current = slot.worker is worker  # a replacement is the slot's once the old one stops
        if current:  # steered to before the event: once it is logged, connections reach it
            slot.status = AppStatus.ONLINE
            self.traffic.update(self.slots)
        self._event("worker_ready", worker)
        if current:
            self.ctx.changed()

    # ----- exits and restarts --------------------------------------------------------

    def _on_message(self, worker: Worker, message: object) -> None:
        """A message a node worker sent with `process.send`: pm2's `'ready'`, the preload's
        word that a server listens on the worker's inherited socket, or a metrics report
        (the preload's, @pm2/io's `axm:monitor`, the plain `runtime:metrics`)."""
        if message == "ready":
            worker.mark_notified()
        elif isinstance(message, dict) and message.get("type") == "runtime:listening":
            worker.mark_listening()
        else:
            worker.app_metrics.take_message(message, worker.pid, self.ctx.loop.time())

    def _on_exit(self, worker: Worker, status: ExitStatus) -> None:
        """Called by the reaper. New connections are steered away from the dead worker's
        slot before anything else (in reuseport mode a connection the kernel queues on
        that socket waits for the slot's next worker); then the pipes are drained, so no
        line is logged after the exit."""
        worker.exited.set_result(status)
        requested = worker.stopping or self.ctx.shutting_down()
        self.traffic.update(self.slots, may_refuse=False)
        if not requested:
            self._hand_over_queue(worker)
        covered_by = self.traffic.covered_by(worker.slot)
        worker.logs.drain()
        worker.logs.close()
        if worker.channel is not None:
            worker.channel.close()
        worker.app_metrics.clear()
        uptime_s = self.ctx.loop.time() - worker.started_at
        level = "info" if requested or status.clean else "warning"
        extra: dict[str, object] = {}
        if status.signal == signal.SIGKILL and not requested:
            extra["hint"] = "killed by SIGKILL: out of memory?"
        if covered_by:
            extra["covered_by"] = covered_by
        self._event(
            "worker_exited",
            worker,
            level=level,
            code=status.code,
            signal=signal_name(status.signal) if status.signal is not None else None,
            uptime_s=round(uptime_s, 3),
            **extra,
        )
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

    def _hand_over_queue(self, worker: Worker) -> None:
        """reuseport with `tcp_migrate_req=1`: what the kernel queued on a dead worker's
        sockets goes to the other workers now (`policy.steering.hand_over_queue`)."""
        listeners, slot = self.listeners, self.slots.get(worker.slot)
        if listeners is None or not listeners.steered or listeners.suspended:
            return
        if slot is None or slot.worker is not worker or worker.slot not in listeners.per_slot:
            return
        if not hand_over_queue(
            worker.slot,
            listeners.receiving,
            migrates=migrate_req_enabled(),
            replacing=slot.replacing is not None,
        ):
            return
        try:
            listeners.renew_slot(worker.slot)
        except (OSError, ListenError) as exc:  # the slot's next worker binds again
            self._event("steer_failed", worker, level="warning", error=str(exc))

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
                self.traffic.update(self.slots)
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
        self.traffic.update(self.slots)
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
            async with self._reload_lock:  # after a running reload, which may replace it anyway
                replaced = old.alive and await self._guarded(replace_slot(self, slot.index))
            if not replaced:
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
        """Stop instances on request; they stay listed as stopped until started again.

        New connections are steered away first, and what is queued on a slot's own
        sockets is served before its worker gets the stop signal."""
        slots = self._pick(indices)
        for slot in slots:
            slot.cancel_timer()
            slot.manual_stop = True
            if slot.worker is not None:
                slot.status = AppStatus.STOPPING
        self.traffic.update(self.slots)
        await asyncio.gather(*(self._drain_and_stop(slot) for slot in slots))
        for slot in slots:
            slot.worker = slot.replacing = None
            slot.status, slot.ended = AppStatus.STOPPED, True
        self.traffic.update(self.slots)
        self.app_event("stopped", instances=[s.index for s in slots])
        self.ctx.changed()

    async def _drain_and_stop(self, slot: Slot) -> None:
        """Serve what is queued on the slot's own sockets, then stop its processes."""
        if self.listeners is not None:
            await self.traffic.drain(self.listeners.slot_sockets(slot.index), slot.worker)
        await asyncio.gather(*(self.stop_worker(w) for w in slot.live_workers()))

    def start_slots(self, indices: Sequence[int] | None = None) -> list[int]:
        """Start instances that are not running (stopped, errored, waiting to restart)."""
        started = []
        for slot in self._pick(indices):
            if slot.worker is not None and slot.worker.alive:
                continue
            slot.cancel_timer()
            slot.restart_state = reset_state()
            self.spawn_into(slot)
            started.append(slot.index)
        return started

    async def restart_slots(self, indices: Sequence[int] | None = None) -> None:
        """pm2's restart: each instance in turn is stopped, then started (no overlap)."""
        for slot in self._pick(indices):
            slot.cancel_timer()
            if slot.worker is not None and slot.worker.alive:
                slot.status = AppStatus.STOPPING
                self.traffic.update(self.slots)
                await self._drain_and_stop(slot)
            if self.slots.get(slot.index) is slot and not self.ctx.shutting_down():
                slot.restarts += 1
                slot.restart_state = reset_state()
                self.spawn_into(slot)

    async def delete_slot(self, index: int) -> None:
        """Stop one instance and forget it (`delete <id>`)."""
        await self._remove_slots([index])
        self.ctx.changed()

    async def _remove_slots(self, indices: Sequence[int]) -> None:
        """Take slots out (scale down, delete): no new connection reaches them, what is
        queued on their sockets is served, then their workers stop and the sockets close."""
        slots = [slot for index in indices if (slot := self.slots.pop(index, None)) is not None]
        for slot in slots:
            slot.cancel_timer()
        self.traffic.update(self.slots)
        await asyncio.gather(*(self._drain_and_stop(slot) for slot in slots))
        if self.listeners is not None:
            for slot in slots:
                self.listeners.release_slot(slot.index)
        self.traffic.update(self.slots)

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
        """Rolling reload of the app as it is (`reload NAME`, SIGHUP of the direct form)."""
        return await self.roll(slots=slots)

    async def roll(self, spec: AppSpec | None = None, slots: Sequence[int] | None = None) -> bool:
        """Roll the app's workers, to `spec` when given (SIGHUP with changed settings).

        One rollout at a time: a later one waits for the running one, then rolls again to
        the newest settings. A failed rollout to a new spec puts the old one back, and the
        slots already replaced roll back to it, so no rejected release keeps serving and a
        later crash restarts what worked. An app with no pre-bound socket cannot run two
        workers side by side, so its reload is pm2's: each instance is stopped, then started.
        """
        async with self._reload_lock:
            old = self.spec
            if spec is not None:
                self.update_spec(spec)
            chosen = [
                s for s in (sorted(self.slots) if slots is None else slots) if s in self.slots
            ]
            if self.listeners is None:
                await self._guarded(self._restart_for_reload(chosen))
                return True
            done = await self._guarded(rolling_reload(self, chosen))
            if done is None or done.ok:
                return done is not None
            if spec is not None and not self.ctx.shutting_down():
                self.update_spec(old)
                if done.reloaded:
                    await self._guarded(rolling_reload(self, done.reloaded))
                self.app_event("reload_reverted", slots=list(done.reloaded))
            return False

    async def _restart_for_reload(self, slots: Sequence[int]) -> None:
        await self.restart_slots(slots)
        self.app_event("reload_done", slots=list(slots), mode="restart")

    async def _guarded(self, rollout: Coroutine[Any, Any, T]) -> T:
        """Run a rollout with `reloading` set (what /health and `list` report)."""
        self.reloading = True
        try:
            return await rollout
        finally:
            self.reloading = False

    def shutting_down(self) -> bool:
        """The master is stopping: no rollout starts another worker."""
        return self.ctx.shutting_down()

    def start_replacement(self, index: int) -> Worker | None:
        """The slot's next worker: beside the old one (on sockets of its own in reuseport
        mode, so the old ones can be drained), or in place when none is alive."""
        slot = self.slots.get(index)
        if slot is None:
            return None
        if slot.worker is None or not slot.worker.alive:
            slot.cancel_timer()
            slot.restart_state = reset_state()
            return self.spawn_into(slot)  # nothing to overlap with
        pending = self.listeners is not None and self.listeners.open_pending(index)
        slot.replacing = self.spawn_worker(slot, pending=pending, restarts=slot.restarts + 1)
        if slot.replacing is None and self.listeners is not None:
            self.listeners.discard_pending(index)
        return slot.replacing

    def promote_replacement(self, index: int) -> Worker | None:
        """The ready replacement takes over the slot and its new connections; returns the
        old worker, to `retire`."""
        slot = self.slots.get(index)
        if slot is None or slot.replacing is None:  # started in place: nothing old to stop
            return None
        old, slot.worker, slot.replacing = slot.worker, slot.replacing, None
        if old is not None and self.listeners is not None and index in self.listeners.pending:
            self._retiring[old] = self.listeners.promote(index)
        slot.restarts += 1
        slot.restart_state = reset_state()
        slot.status = AppStatus.ONLINE
        self.traffic.update(self.slots)
        return old

    async def retire(self, old: Worker) -> None:
        """Stop a replaced worker once it has served what was queued on its own sockets."""
        sockets = self._retiring.pop(old, [])
        await self.traffic.drain(sockets, old)
        if old.alive:
            await self.stop_worker(old)
        if self.listeners is not None and sockets:
            self.listeners.retire(sockets)
            self.traffic.update(self.slots)

    async def discard_replacement(self, index: int) -> None:
        """Stop the slot's replacement, if it has one; its old worker keeps serving."""
        slot = self.slots.get(index)
        if slot is not None and slot.replacing is not None:
            await self.stop_worker(slot.replacing)  # still listed (and killed) while it stops
            slot.replacing = None
        if self.listeners is not None:
            self.listeners.discard_pending(index)

    # ----- scale ---------------------------------------------------------------------

    async def scale(self, request: ScaleRequest) -> None:
        """Start new slots, or take the highest ones out without resetting a connection."""
        from runtime.policy.scale import plan_scale

        plan = plan_scale(sorted(self.slots), request)
        if plan.start:  # past the file's count: every line from now on gets the wider prefix
            self._widen_prefixes(max(plan.start) + 1)
        for index in plan.start:
            self.spawn_into(self._new_slot(index))
        self.app_event(
            "scaled",
            instances=len(self.slots) - len(plan.stop),
            started=list(plan.start),
            stopped=list(plan.stop),
        )
        await self._remove_slots(plan.stop)
        self.ctx.changed()

    # ----- events --------------------------------------------------------------------

    def _event(self, name: str, worker: Worker, *, level: str = "info", **fields: object) -> None:
        self.log.log(LEVELS[level], name, instance=worker.slot, pid=worker.pid, **fields)

    def app_event(self, name: str, *, level: str = "info", **fields: Any) -> None:
        self.log.log(LEVELS[level], name, **fields)


async def _reap_leftovers(pgid: int, timeout_s: float) -> None:
    """After a crash, what is left of the worker's group gets SIGTERM, then SIGKILL."""
    if not signal_worker(pgid, signal.SIGTERM, group=True):
        return
    if not await wait_group_gone(pgid, timeout_s):
        kill_group_now(pgid)
