"""Turns control requests into operations on the running master's apps."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from runtime import __version__
from runtime.control.protocol import VERBS, ControlError, request
from runtime.errors import RuntimeUserError
from runtime.observe.status import app_load, describe_app, process_rows
from runtime.observe.view import AppView, MasterView
from runtime.policy.scale import parse_scale

LIST_MAX_AGE_S = 0.5
CPU_WINDOW_S = 0.2  # the shortest CPU measurement `list` shows
DEFAULT_LOG_LINES = 15  # `logs` without --lines (at most the ring's MAX_TAIL_LINES are sent)
MAX_MESSAGE_CHARS = 64 * 1024  # x 12 bytes for an escaped astral character: under MAX_LINE


@dataclass(frozen=True, slots=True)
class Selection:
    """The apps and instance slots a target names (None = every slot of the app)."""

    picks: tuple[tuple[AppView, tuple[int, ...] | None], ...]


def resolve(sup: MasterView, target: str | None) -> Selection:
    """`all`, an app name or a numeric id; anything else is a one-line error."""
    if not target:
        raise ControlError("missing target: an app name, an id or 'all'")
    if target == "all":
        return Selection(tuple((app, None) for app in sup.apps.values()))
    if target in sup.apps:
        return Selection(((sup.apps[target], None),))
    if target.isdigit():
        wanted = int(target)
        for app in sup.apps.values():
            for slot in app.slots.values():
                if slot.id == wanted:
                    return Selection(((app, (slot.index,)),))
    known = ", ".join(sorted(sup.apps)) or "none"
    raise ControlError(f"unknown app or id {target!r} (apps: {known})")


class ControlHandler:
    """One method per verb; each returns the reply (or a stream for `logs --follow`)."""

    def __init__(self, sup: MasterView) -> None:
        self.sup = sup

    async def __call__(self, req: dict[str, Any]) -> dict[str, Any] | AsyncIterator[dict[str, Any]]:
        cmd = req.get("cmd")
        if cmd not in VERBS:
            raise ControlError(f"unknown command {cmd!r}")
        if (self.sup.stopping or self.sup.draining) and cmd not in ("ping", "list", "show", "logs"):
            raise ControlError("the runtime is stopping")
        args = req.get("args") or {}
        if not isinstance(args, dict):
            raise ControlError("malformed request: args must be an object")
        target = req.get("target")
        if target is not None and not isinstance(target, str):
            target = str(target)
        method = getattr(self, f"do_{cmd}")
        result = await method(target, args)
        if isinstance(result, dict) and "ok" in result:
            return result
        if hasattr(result, "__aiter__"):
            return result  # type: ignore[no-any-return]
        return {"ok": True, "result": result}

    async def act(self, cmd: str, target: str, args: dict[str, Any]) -> dict[str, Any]:
        """One verb for the dashboard's API (`runtime.observe.api`): the reply, with a
        refusal as `{"ok": false, "error": ...}` instead of a ControlError."""
        try:
            reply = await self(request(cmd, target, **args))
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        if not isinstance(reply, dict):
            raise TypeError(f"{cmd} streams its reply: not a web API verb")
        return reply

    async def rows(self) -> list[dict[str, Any]]:
        """The process rows; a worker sampled for the first time is measured again
        CPU_WINDOW_S later, so `list` shows its CPU instead of `-`."""
        sampler = self.sup.sample(LIST_MAX_AGE_S)
        slots = [slot for app in self.sup.apps.values() for slot in app.slots.values()]
        workers = [s.worker.pid for s in slots if s.worker is not None and s.worker.alive]
        if any(sampler.cpu.get(pid) is None for pid in workers):
            await asyncio.sleep(CPU_WINDOW_S)
            sampler = self.sup.sample(CPU_WINDOW_S / 2)
        load = self.sup.read_load()
        return process_rows(self.sup.apps.values(), sampler, self.sup.loop.time(), load)

    async def do_ping(self, _target: str | None, _args: dict[str, Any]) -> dict[str, Any]:
        return {"pid": os.getpid(), "version": __version__, "apps": sorted(self.sup.apps)}

    async def do_list(self, _target: str | None, _args: dict[str, Any]) -> list[dict[str, Any]]:
        return await self.rows()

    async def do_show(self, target: str | None, _args: dict[str, Any]) -> dict[str, Any]:
        if target == "all":
            raise ControlError("show takes one app name or id")
        app, _slots = resolve(self.sup, target).picks[0]
        info = describe_app(app, await self.rows(), self.sup.log_format)
        info["load"] = app_load(self.sup.read_load(), app)
        return info

    async def do_stop(self, target: str | None, _args: dict[str, Any]) -> list[dict[str, Any]]:
        sel = resolve(self.sup, target)
        await asyncio.gather(*(app.stop_slots(slots) for app, slots in sel.picks))
        return await self.rows()

    async def do_start(self, target: str | None, _args: dict[str, Any]) -> list[dict[str, Any]]:
        for app, slots in resolve(self.sup, target).picks:
            app.start_slots(slots)
        return await self.rows()

    def _respec(self, sel: Selection, args: dict[str, Any]) -> None:
        """`--env NAME` / `--update-env`: re-read the selected apps first (pm2's restart)."""
        env_name, environ = args.get("env"), args.get("environ")
        if env_name is None and environ is None:
            return
        if not (env_name is None or isinstance(env_name, str)) or not (
            environ is None
            or (isinstance(environ, dict) and all(isinstance(v, str) for v in environ.values()))
        ):
            raise ControlError("malformed request: env must be a name, environ a mapping")
        try:
            self.sup.respec([app.spec.name for app, _ in sel.picks], env_name, environ)
        except RuntimeUserError as exc:
            raise ControlError(str(exc)) from None

    async def do_restart(self, target: str | None, args: dict[str, Any]) -> list[dict[str, Any]]:
        sel = resolve(self.sup, target)
        self._respec(sel, args)
        await asyncio.gather(*(app.restart_slots(slots) for app, slots in sel.picks))
        return await self.rows()

    async def do_reload(self, target: str | None, args: dict[str, Any]) -> dict[str, Any]:
        sel = resolve(self.sup, target)
        self._respec(sel, args)
        results = await asyncio.gather(*(app.reload(slots) for app, slots in sel.picks))
        if not all(results):
            return {"ok": False, "error": "reload failed: the old workers keep serving (see logs)"}
        return {"ok": True, "result": await self.rows()}

    async def do_delete(self, target: str | None, _args: dict[str, Any]) -> list[dict[str, Any]]:
        sel = resolve(self.sup, target)
        for app, slots in sel.picks:
            if slots is None:
                await self.sup.remove_app(app.spec.name)
            else:
                for index in slots:
                    await app.delete_slot(index)
        return await self.rows()

    async def do_scale(self, target: str | None, args: dict[str, Any]) -> list[dict[str, Any]]:
        if target is None or target not in self.sup.apps:
            raise ControlError(f"scale takes an app name, got {target!r}")
        try:
            request = parse_scale(str(args.get("n", "")))
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        await self.sup.apps[target].scale(request)
        return await self.rows()

    async def do_logs(self, target: str | None, args: dict[str, Any]) -> Any:
        name, instance = None, None
        if target not in (None, "all"):
            app, slots = resolve(self.sup, target).picks[0]
            name = app.spec.name
            instance = slots[0] if slots else None  # a numeric id: that instance only
        lines, follow = args.get("lines", DEFAULT_LOG_LINES), args.get("follow", False)
        if isinstance(lines, bool) or not isinstance(lines, int) or lines < 0:
            raise ControlError(f"lines must be a whole number >= 0, got {_shown(lines)}")
        if not isinstance(follow, bool):
            raise ControlError(f"follow must be true or false, got {_shown(follow)}")
        backlog = self.sup.log_ring.tail(lines, app=name, instance=instance)
        return self._follow(backlog, name, instance, follow)

    async def _follow(
        self, backlog: list[dict[str, Any]], name: str | None, instance: int | None, follow: bool
    ) -> AsyncIterator[dict[str, Any]]:
        """The backlog one `{"log": record}` line each (so no reply nears the line limit),
        `{"ok": true, "result": []}` at its end, then, with `follow`, live lines."""
        ring = self.sup.log_ring
        queue = ring.subscribe(name, instance) if follow else None
        try:
            for record in backlog:
                yield {"log": _bounded(record)}
            yield {"ok": True, "result": []}
            while queue is not None:
                yield {"log": _bounded(await queue.get())}
        finally:
            if queue is not None:
                ring.unsubscribe(queue)


def _shown(value: object) -> str:
    """A request's value for an error line, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bounded(record: dict[str, Any]) -> dict[str, Any]:
    """A log record whose message is cut to MAX_MESSAGE_CHARS (its reply line stays far
    below the protocol's line limit, even with every character escaped)."""
    message = record.get("message")
    if isinstance(message, str) and len(message) > MAX_MESSAGE_CHARS:
        return {**record, "message": message[:MAX_MESSAGE_CHARS], "cut": True}
    return record
