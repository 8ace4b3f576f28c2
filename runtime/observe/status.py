"""What `list`, `show`, `/status` and `/metrics` report: plain dicts built from app state."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runtime.config.export import spec_json
from runtime.config.secrets import mask_args, mask_command, mask_env
from runtime.config.spec import AppSpec
from runtime.observe.identity import app_user, app_version
from runtime.observe.load import LoadSampler
from runtime.observe.metrics import Sampler
from runtime.observe.view import AppView
from runtime.policy.lifecycle import AppStatus


def process_rows(
    apps: Iterable[AppView], sampler: Sampler, now: float, load: LoadSampler | None = None
) -> list[dict[str, Any]]:
    """One row per instance slot, in id order: the `list --json` and `/status` shape.

    With `load`, each row also has its accept queue (`backlog`: the slot's own in reuseport
    mode, the app's shared one otherwise) and how long that queue has waited on the worker
    (`accept_idle_s`); `connections` are the ones its process tree holds on the app's ports.
    `fds` counts the worker process's open fds; `app_metrics` is what the worker reports
    about itself (runtime.observe.appmetrics: loop delay, handles, its own metrics), {} if
    nothing.
    """
    rows: list[dict[str, Any]] = []
    for app in apps:
        version, user = app_version(app.spec), app_user(app.spec)
        for slot in app.slots.values():
            worker = slot.worker if slot.worker is not None and slot.worker.alive else None
            sample = sampler.latest.get(worker.pid) if worker else None
            row: dict[str, Any] = {
                "id": slot.id,
                "name": app.spec.name,
                "mode": app.spec.exec_mode,
                "instance": slot.index,
                "pid": worker.pid if worker else None,
                "status": str(slot.status),
                "ready": bool(worker and slot.status is AppStatus.ONLINE),
                "uptime_s": round(now - worker.started_at, 3) if worker else 0,
                "restarts": slot.restarts,
                "cpu_percent": sampler.cpu.get(worker.pid) if worker else None,
                "memory_bytes": sample.rss_bytes if sample else None,
                # the running code's version (read at its start), else what is on disk
                "version": worker.version if worker else version,
                "user": user,
                "watching": bool(app.spec.watch),
                "status_text": worker.status_text if worker else None,
                "connections": sampler.connections.get(worker.pid) if worker else None,
                "fds": sample.fds if sample else None,
                "app_metrics": worker.app_metrics.view(now) if worker else {},
            }
            if load is not None:
                row["backlog"] = _slot_backlog(load, app, slot.index)
                row["accept_idle_s"] = load.accept_idle_s(app.spec.name, slot.index, now)
            rows.append(row)
    rows.sort(key=lambda r: int(r["id"]))
    return rows


def _slot_backlog(load: LoadSampler, app: AppView, slot: int) -> int | None:
    name = app.spec.name
    own = [depth for key, depth in load.backlog.items() if key.app == name and key.slot == slot]
    shared = [depth for key, depth in load.backlog.items() if key.app == name and key.slot is None]
    return sum(own) + sum(shared) if own or shared else None


def app_load(load: LoadSampler, app: AppView) -> dict[str, Any]:
    """An app's accept queues (`show`): each one's depth now, and the app's saturation."""
    name = app.spec.name
    queues = [
        {"listener": key.listener, "slot": key.slot, "backlog": depth}
        for key, depth in sorted(
            load.backlog.items(),
            key=lambda kv: (kv[0].listener, -1 if kv[0].slot is None else kv[0].slot),
        )
        if key.app == name
    ]
    return {"saturation": round(load.saturation(name), 3), "queues": queues}


def autoscale_range(spec: AppSpec) -> dict[str, int] | None:
    """`{min, max}` of an autoscaled app (`instances: {min, max}`), None for a fixed one."""
    scale = spec.autoscale
    return None if scale is None else {"min": scale.min, "max": scale.max}


def describe_app(app: AppView, rows: list[dict[str, Any]], log_format: str) -> dict[str, Any]:
    """Everything `show NAME` prints about one app (secrets masked)."""
    spec: AppSpec = app.spec
    ready_message = "process.send('ready') or READY=1" if spec.node else "READY=1 on NOTIFY_SOCKET"
    readiness = (
        ready_message
        if spec.wait_ready
        else (f"HTTP GET {spec.health}" if spec.health else f"alive {spec.min_uptime_ms} ms")
    )
    history = sorted(
        (at, s.index, code, sig) for s in app.slots.values() for at, code, sig in s.exits
    )
    exits = [{"instance": i, "at": at, "code": code, "signal": sig} for at, i, code, sig in history]
    return {
        "name": spec.name,
        "script": mask_command(spec.script),
        "argv": mask_args(spec.argv),
        "interpreter": spec.interpreter,
        "interpreter_args": mask_args(spec.interpreter_args),
        "args": mask_args(spec.args),
        "cwd": spec.cwd,
        "exec_mode": spec.exec_mode,
        "instances": len(app.slots),
        "log_format": log_format,
        "autorestart": spec.autorestart,
        "restart_delay_ms": spec.restart_delay_ms,
        "exp_backoff_restart_delay_ms": spec.exp_backoff_restart_delay_ms,
        "max_restarts": spec.max_restarts,
        "min_uptime_ms": spec.min_uptime_ms,
        "max_memory_restart_bytes": spec.max_memory_restart_bytes,
        "kill_timeout_ms": spec.kill_timeout_ms,
        "stop_exit_codes": sorted(spec.stop_exit_codes),
        "readiness": readiness,
        "listen_timeout_ms": spec.listen_timeout_ms,
        "sockets": [str(a) for a in app.listeners.addresses] if app.listeners else [],
        "socket_sharing": spec.socket_sharing if app.listeners else None,
        "watch": list(spec.watch),
        "cron_restart": spec.cron_restart,
        "env": mask_env(spec.env),
        "restarts": sum(s.restarts for s in app.slots.values()),
        "exits": exits[-20:],
        "processes": [r for r in rows if r["name"] == spec.name],
        "settings": spec_json(spec),  # every key as resolved (`show --json`)
    }
