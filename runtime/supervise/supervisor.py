"""The master: binds listeners, starts apps, turns signals into commands, decides when to exit."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import signal
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from runtime.boot.early import Early, release_signals, start_early
from runtime.config.load import Ecosystem
from runtime.config.spec import AppSpec
from runtime.control.handler import ControlHandler
from runtime.control.server import ControlServer
from runtime.errors import ConfigError, RuntimeUserError
from runtime.logs import events
from runtime.logs.ring import LogRing
from runtime.logs.sink import LogSink
from runtime.observe.load import SAMPLE_EVERY_S, LoadSampler
from runtime.observe.metrics import Sampler, tree_rss
from runtime.policy.lifecycle import StopKind, decide_auto_exit, decide_stop_signal
from runtime.policy.memory import next_check_s
from runtime.policy.scale import ScaleRequest
from runtime.proc.libc import release_startup_memory
from runtime.proc.listeners import AppListeners, bind_apps
from runtime.proc.notify import NotifyServer
from runtime.proc.reaper import Reaper
from runtime.proc.stop import stop_descendants
from runtime.supervise.app import App
from runtime.supervise.slot import AppContext
from runtime.supervise.worker import Worker

STARTUP_TRIM_S = 1.0  # after the first workers are up, not in their way
LOOP_ERROR_EVERY_S = 5.0  # the same loop error is logged at most this often
MAX_LOOP_ERROR_KINDS = 64
ORPHAN_GRACE_S = 1.0  # what outlived its worker (setsid, SIGTERM ignored) gets this, then KILL
FINAL_KILL_WAIT_S = 2.0


class Command(StrEnum):
    """What a signal (or later the control API) asks the master to do."""

    STOP = "stop"
    QUIT = "quit"
    RELOAD = "reload"
    STATUS = "status"
    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"


SIGNAL_COMMANDS: dict[signal.Signals, Command] = {
    signal.SIGTERM: Command.STOP,
    signal.SIGINT: Command.STOP,
    signal.SIGQUIT: Command.QUIT,
    signal.SIGHUP: Command.RELOAD,
    signal.SIGUSR1: Command.STATUS,
    signal.SIGTTIN: Command.SCALE_UP,
    signal.SIGTTOU: Command.SCALE_DOWN,
}


@dataclass(frozen=True, slots=True)
class Exit:
    """Internal command: leave the main loop with this exit code."""

    code: int


@dataclass(frozen=True, slots=True)
class Received:
    """A signal turned into a command."""

    command: Command
    signame: str


class Reread(Protocol):
    """Reads the ecosystem again: as on the command line, or with another env context
    (`restart NAME --env X`) or environment (`--update-env`)."""

    def __call__(
        self, env_name: str | None = None, environ: Mapping[str, str] | None = None
    ) -> Ecosystem: ...


@dataclass(frozen=True)
class Options:
    """How the master runs, from the command line."""

    auto_exit: bool = True
    reload_config: Reread | None = None
    control_path: str | None = None
    web: str | None = None  # [HOST:]PORT of the health/metrics/dashboard server
    web_token: str | None = None
    shutdown_delay_s: float = 0.0


class Supervisor:
    """Owns every app; signal handlers only enqueue, the main loop does the work."""

    def __init__(
        self, eco: Ecosystem, sink: LogSink, options: Options, early: Early | None = None
    ) -> None:
        self.eco = eco
        self.early = early
        self.sink = sink
        self.log = events.logger()
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.reaper = Reaper(self.loop)
        self.inbox: asyncio.Queue[Received | Exit] = asyncio.Queue()
        self.apps: dict[str, App] = {}
        self.stopping = False
        # per app: the env context and environment `restart --env` / `--update-env` chose
        self.contexts: dict[str, tuple[str | None, Mapping[str, str] | None]] = {}
        self._loop_errors: dict[str, tuple[float, int]] = {}  # kind -> (last logged, since)
        self._tasks: set[asyncio.Task[None]] = set()
        self._devloops: dict[str, list[asyncio.Task[None]]] = {}  # watch, cron, autoscale
        self.load = LoadSampler()
        self._load_task: asyncio.Task[None] | None = None
        self._ids = itertools.count()
        self.sampler = Sampler()
        self.log_ring = LogRing()
        self.sink.tap = self.log_ring.add
        self.sink.event_tap = self.log_ring.add_event
        self._control: ControlServer | None = None
        self._web: Any = None
        self.draining = False  # SIGTERM received: /health answers 503 from now on
        self._notify: NotifyServer | None = None
        self._notify_dir: str | None = None  # a private temp dir when there is no control path

    # ----- setup ---------------------------------------------------------------------

    @property
    def log_format(self) -> str:
        """The format of the master's stdout (`show` reports it)."""
        return self.sink.fmt.value

    def _next_id(self) -> int:
        return next(self._ids)

    def _context(self) -> AppContext:
        return AppContext(
            loop=self.loop,
            sink=self.sink,
            reaper=self.reaper,
            base_env=dict(os.environ),
            notify_socket=self._notify.path if self._notify else None,
            shutting_down=lambda: self.stopping or self.draining,
            changed=self._check_auto_exit,
            next_id=self._next_id,
            recent_output=self.log_ring.recent,
        )

    async def _start_notify(self, early: Early) -> None:
        """NOTIFY_SOCKET (bound before the loop, beside the control socket)."""
        self._notify_dir = early.notify_dir
        self._notify = NotifyServer(early.notify_path, self._on_notify)
        await self._notify.start(sock=early.notify_sock)

    def _install_signals(self) -> None:
        for sig, command in SIGNAL_COMMANDS.items():
            self.loop.add_signal_handler(sig, self.inbox.put_nowait, Received(command, sig.name))
        self.reaper.install()
        self.loop.set_exception_handler(self._on_loop_error)

    def _on_loop_error(self, _loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """What the loop could not handle (an accept() out of fds, a callback that raised):
        one JSON event, at most once every LOOP_ERROR_EVERY_S per kind, never a traceback
        flood on stderr."""
        exc = context.get("exception")
        kind = f"{context.get('message', '')}|{type(exc).__name__}"
        now = self.loop.time()
        last_at, suppressed = self._loop_errors.get(kind, (-LOOP_ERROR_EVERY_S, 0))
        if now - last_at < LOOP_ERROR_EVERY_S:
            self._loop_errors[kind] = (last_at, suppressed + 1)
            return
        if len(self._loop_errors) >= MAX_LOOP_ERROR_KINDS:
            self._loop_errors.clear()
        self._loop_errors[kind] = (now, 0)
        error = repr(exc) if exc is not None else None
        self.log.error(
            "loop_error", message=str(context.get("message")), error=error, suppressed=suppressed
        )

    # ----- run -----------------------------------------------------------------------

    async def _start_control(self, early: Early) -> None:
        if early.control_sock is None or self.options.control_path is None:
            return
        self._control = ControlServer(self.options.control_path, ControlHandler(self))
        await self._control.start(sock=early.control_sock)

    async def run(self) -> int:
        """Take over what was started before the loop, serve commands; return the exit code."""
        early = self.early or start_early(self.eco, self.options.control_path)
        try:
            await self._start_control(early)
            await self._start_web()
        except BaseException:
            await self._close_control()
            early.close()
            raise
        await self._start_notify(early)
        for source, stream, ts, block in early.take_forwarded():  # the start-up relay's lines
            self.log_ring.add(source, stream, ts, block)
        for event in early.announcements:  # and its events
            self.log_ring.add_event(event)
        ctx = self._context()
        for spec in self.eco.apps:
            self.apps[spec.name] = App(spec, ctx, early.listeners[spec.name])
        if not early.announced:
            names = [s.name for s in self.eco.apps]
            self.log.info("runtime_started", apps=names, pid=os.getpid())
        for app in self.apps.values():
            self._start_app(app, early)
        self._install_signals()  # the reaper last: every early worker's pid is watched
        release_signals()
        self.loop.call_later(STARTUP_TRIM_S, release_startup_memory)
        if any(s.max_memory_restart_bytes for s in self.eco.apps):
            self._own(self._watch_memory())
        self._start_load_watch()
        try:
            code = await self._serve()
        finally:
            await self._teardown()
        self.log.info("runtime_exited", code=code)
        return code

    async def _serve(self) -> int:
        while True:
            item = await self.inbox.get()
            if isinstance(item, Exit):
                return item.code
            self._dispatch(item)

    def _dispatch(self, item: Received) -> None:
        command = item.command
        if command in (Command.STOP, Command.QUIT):
            self._on_stop_signal(item)
        elif self.stopping:
            return
        elif command is Command.RELOAD:
            self._own(self._reload())
        elif command is Command.STATUS:
            self._log_status()
        elif command in (Command.SCALE_UP, Command.SCALE_DOWN):
            request = ScaleRequest("add" if command is Command.SCALE_UP else "remove", 1)
            for app in self.apps.values():
                if app.spec.exec_mode == "cluster":
                    self._own(app.scale(request))

    def _on_stop_signal(self, item: Received) -> None:
        signame = item.signame.removeprefix("SIG")
        kind = decide_stop_signal(signame, self.stopping or self.draining)
        self.log.info("stop_requested", signal=item.signame, mode=str(kind))
        if kind is StopKind.KILL:
            self.stopping = True
            self._own(self._kill_all())
        else:
            self.draining = True
            self._own(self._drain_then_stop())

    async def _drain_then_stop(self) -> None:
        """`--shutdown-delay`: keep serving while /health says 503, then stop."""
        delay = self.options.shutdown_delay_s
        if delay > 0:
            self.log.info("draining", delay_s=delay)
            await asyncio.sleep(delay)
        self.stopping = True
        await self._graceful_stop(0)

    async def _graceful_stop(self, code: int) -> None:
        self._stop_devloops()
        await asyncio.gather(*(app.stop() for app in self.apps.values()))
        self.inbox.put_nowait(Exit(code))

    def _stop_devloops(self) -> None:
        """No file change, cron tick or autoscaler may change anything once a stop has begun."""
        for tasks in self._devloops.values():
            for task in tasks:
                task.cancel()
        self._devloops.clear()

    async def _kill_all(self) -> None:
        self._stop_devloops()
        for app in self.apps.values():
            app.kill()
        await asyncio.gather(*(app.wait_exited(FINAL_KILL_WAIT_S) for app in self.apps.values()))
        self.inbox.put_nowait(Exit(0))

    def _check_auto_exit(self) -> None:
        if self.stopping:
            return
        outcomes = {name: app.outcome() for name, app in self.apps.items()}
        code = decide_auto_exit(outcomes, auto_exit=self.options.auto_exit)
        if code is not None:
            self.stopping = True
            (self.log.info if code == 0 else self.log.error)("auto_exit", code=code)
            self._own(self._graceful_stop(code))

    async def _teardown(self) -> None:
        self.stopping = True
        for app in self.apps.values():
            app.kill()
            await app.wait_exited(FINAL_KILL_WAIT_S)
            if app.listeners is not None:
                app.listeners.close()
        await stop_descendants(ORPHAN_GRACE_S)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        for sig in SIGNAL_COMMANDS:
            self.loop.remove_signal_handler(sig)
        self.reaper.reap()
        self.reaper.uninstall()
        await self._close_control()
        if self._web is not None:
            await self._web.close()
            self._web = None
        if self._notify is not None:
            self._notify.close()
        if self._notify_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._notify_dir)

    async def _start_web(self) -> None:
        if self.options.web is None:
            return
        from runtime.observe.web import WebServer  # only with --web

        handler = ControlHandler(self)  # the dashboard's buttons run the control verbs
        self._web = WebServer(self, self.options.web, self.options.web_token, act=handler.act)
        await self._web.start()

    async def _close_control(self) -> None:
        if self._control is not None:
            await self._control.close()
            self._control = None

    async def remove_app(self, name: str) -> None:
        """Stop an app and forget it (`delete NAME`, or gone from the file on SIGHUP)."""
        app = self.apps.pop(name, None)
        if app is None:
            return
        for task in self._devloops.pop(name, []):
            task.cancel()
        await app.stop()
        if app.listeners is not None:
            app.listeners.close()
        self.log.info("app_deleted", app=name)
        self._check_auto_exit()

    def _start_app(self, app: App, early: Early | None = None) -> None:
        app.start(early)
        self._start_devloop(app)

    def _start_devloop(self, app: App) -> None:
        """File watching, cron restarts and autoscaling, only for apps that ask (each module
        imported only then)."""
        for old in self._devloops.pop(app.spec.name, []):
            old.cancel()
        tasks = self._devloops[app.spec.name] = []
        if app.spec.watch or app.spec.cron_restart:
            from runtime.devloop.runner import run_devloop

            tasks.append(self._own(run_devloop(app)))
        if app.spec.autoscale is not None:
            from runtime.supervise.autoscaler import autoscale

            tasks.append(self._own(autoscale(app, app.spec.autoscale, self.load, self.sample)))

    def _own(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.log.error("internal_error", error=repr(exc))

    # ----- commands ------------------------------------------------------------------

    def _reread(self) -> Ecosystem:
        """The ecosystem as the command line reads it, with each app switched by `restart
        --env` / `--update-env` kept on its own env context and environment."""
        assert self.options.reload_config is not None
        eco = self.options.reload_config()
        specs = {spec.name: spec for spec in eco.apps}
        for name, (env_name, environ) in self.contexts.items():
            if name in specs:
                again = self.options.reload_config(env_name=env_name, environ=environ)
                specs[name] = next((s for s in again.apps if s.name == name), specs[name])
        return dataclasses.replace(eco, apps=tuple(specs.values()))

    def respec(
        self, names: Sequence[str], env_name: str | None, environ: Mapping[str, str] | None
    ) -> None:
        """Re-read `names` with another env context or environment before a restart or a
        reload (pm2's `restart NAME --env X`, `--update-env`); ConfigError if it fails."""
        read = self.options.reload_config
        if read is None:
            raise RuntimeUserError("this runtime was not started from a file it can re-read")
        chosen: dict[str, tuple[str | None, Mapping[str, str] | None]] = {}
        for name in names:  # what is not given stays as the last switch left it (as pm2)
            kept_env, kept_environ = self.contexts.get(name, (None, None))
            chosen[name] = (env_name or kept_env, environ if environ is not None else kept_environ)
        specs: dict[str, AppSpec] = {}
        contexts = [c for i, c in enumerate(chosen.values()) if c not in list(chosen.values())[:i]]
        for context in contexts:
            eco = read(env_name=context[0], environ=context[1])
            for warning in eco.warnings:
                self.log.warning("config_warning", message=warning)
            found = {spec.name: spec for spec in eco.apps}
            for name in (n for n, c in chosen.items() if c == context):
                if name not in found:
                    raise RuntimeUserError(f"{name} is not in {eco.file} with that env context")
                specs[name] = found[name]
        for name, spec in specs.items():
            self.apps[name].update_spec(spec, base_env=chosen[name][1])
            self.contexts[name] = chosen[name]

    async def _reload(self) -> None:
        """SIGHUP: re-read the ecosystem; start new apps, stop removed ones, roll the rest."""
        if self.options.reload_config is not None:
            try:
                eco = self._reread()
            except RuntimeUserError as exc:
                self.log.error("config_reload_failed", error=str(exc))
                return
            for warning in eco.warnings:
                self.log.warning("config_warning", message=warning)
            await self._apply(eco)
            return
        await asyncio.gather(*(app.reload() for app in self.apps.values()))

    async def _apply(self, eco: Ecosystem) -> None:
        new_specs = {spec.name: spec for spec in eco.apps}
        removed = [name for name in self.apps if name not in new_specs]
        added = [spec for name, spec in new_specs.items() if name not in self.apps]
        try:
            running = {name: app.listeners for name, app in self.apps.items()}
            listeners = bind_apps(eco.file, tuple(added), running)
        except ConfigError as exc:
            self.log.error("config_reload_failed", error=str(exc))
            return
        self.eco = eco
        ctx = self._context()
        rolling = []
        for name, app in self.apps.items():
            if name in new_specs:
                if new_specs[name].listen != app.spec.listen:
                    self.log.warning(
                        "listen_unchanged",
                        app=name,
                        reason="listen addresses change with a restart of the runtime",
                    )
                rolling.append(self._roll(app, new_specs[name]))
        for spec in added:
            self.apps[spec.name] = app = App(spec, ctx, listeners[spec.name])
            self._start_app(app)
        self._start_load_watch()
        await asyncio.gather(*(self.remove_app(name) for name in removed), *rolling)
        self.log.info("config_reloaded", apps=list(self.apps))

    async def _roll(self, app: App, spec: AppSpec) -> None:
        """Roll one app to its new settings, then match its new `instances` count; a failed
        roll keeps the old settings (App.roll), and their instance count."""
        if not await app.roll(spec):
            return
        self._start_devloop(app)
        if app.spec.instances != len(app.slots) and not self.stopping:
            await app.scale(ScaleRequest("set", app.spec.instances))

    def _log_status(self) -> None:
        """SIGUSR1: one `status` event per slot, with its load (queue, connections)."""
        from runtime.observe.status import process_rows

        rows = process_rows(self.apps.values(), self.sample(), self.loop.time(), self.read_load())
        for row in rows:
            self.log.info(
                "status",
                app=row["name"],
                instance=row["instance"],
                pid=row["pid"],
                status=row["status"],
                restarts=row["restarts"],
                uptime_s=row["uptime_s"] if row["pid"] else None,
                backlog=row.get("backlog"),
                connections=row.get("connections"),
                accept_idle_s=row.get("accept_idle_s"),
            )

    # ----- readiness and memory ------------------------------------------------------

    def _on_notify(self, pid: int, fields: Mapping[str, str]) -> None:
        worker = self._find_worker(pid)
        if worker is None:
            return
        if "STATUS" in fields:
            worker.status_text = fields["STATUS"]
        if fields.get("STOPPING") == "1":
            worker.status_text = worker.status_text or "stopping"
            self.log.info("worker_stopping", app=worker.app, instance=worker.slot, pid=worker.pid)
        if fields.get("READY") == "1":
            worker.mark_notified()
        worker.app_metrics.take_notify(fields, pid, self.loop.time())  # X_RUNTIME_LOOP, ...

    def _find_worker(self, pid: int) -> Worker | None:
        """The worker that sent a datagram: by pid, or the nearest worker ancestor."""
        import psutil

        by_pid = {w.pid: w for app in self.apps.values() for w in app.workers()}
        candidate: int | None = pid
        for _ in range(8):
            if candidate is None or candidate <= 1:
                return None
            if candidate in by_pid:
                return by_pid[candidate]
            try:
                candidate = psutil.Process(candidate).ppid()
            except psutil.Error:
                return None
        return None

    def sample(self, max_age_s: float = 0.0) -> Sampler:
        """Fresh metrics of every worker (reusing a sample younger than `max_age_s`): the
        process trees' CPU and memory, and the connections each holds on its app's ports."""
        now = self.loop.time()
        if now - self.sampler.last_at >= max_age_s:
            ports: dict[int, frozenset[int]] = {}
            for app in self.apps.values():
                app_ports = tcp_ports(app)
                for worker in app.workers():
                    ports[worker.pid] = app_ports
            self.sampler.sample(ports.keys(), now, {p: v for p, v in ports.items() if v})
        return self.sampler

    def _start_load_watch(self) -> None:
        """Sample the accept queues continuously only for someone who reads the history:
        an autoscaled app, or `--web` (/metrics, the dashboard). `list` and `show` read the
        queues when asked, so an idle master with neither never wakes up for them."""
        wanted = self.options.web is not None or any(
            app.spec.autoscale is not None for app in self.apps.values()
        )
        if wanted and self._load_task is None:
            self._load_task = self._own(self._watch_load())

    async def _watch_load(self) -> None:
        try:
            while not self.stopping:
                if any(app.listeners is not None for app in self.apps.values()):
                    self.load.sample(self._listeners(), self.loop.time())
                await asyncio.sleep(SAMPLE_EVERY_S)
        finally:
            self.load.close()

    def _listeners(self) -> list[tuple[str, AppListeners | None]]:
        return [(name, app.listeners) for name, app in self.apps.items()]

    def read_load(self) -> LoadSampler:
        """The load sampler, with a fresh sample when nothing samples it continuously."""
        if self._load_task is None:
            self.load.sample(self._listeners(), self.loop.time())
        return self.load

    async def _watch_memory(self) -> None:
        while not self.stopping:
            read: list[tuple[int, int]] = []
            for app in self.apps.values():
                limit = app.spec.max_memory_restart_bytes
                if limit:
                    pids = (w.pid for w in app.workers())
                    rss = {pid: size for pid in pids if (size := tree_rss(pid)) is not None}
                    app.check_memory(rss)
                    read += ((size, limit) for size in rss.values())
            await asyncio.sleep(next_check_s(read))


def tcp_ports(app: App) -> frozenset[int]:
    """The TCP ports an app's listeners are bound to (none without listeners)."""
    if app.listeners is None:
        return frozenset()
    return frozenset(a.port for a in app.listeners.addresses if a.kind != "unix")
