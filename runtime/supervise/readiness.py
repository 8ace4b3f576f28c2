"""When a worker counts as ready: READY=1, an HTTP health path, or simply staying up."""

from __future__ import annotations

import asyncio
from typing import Any

from runtime.config.spec import AppSpec
from runtime.proc.listeners import AppListeners
from runtime.supervise.worker import Worker

HEALTH_POLL_S = 0.1
PROBE_TIMEOUT_S = 1.0


async def wait_ready(spec: AppSpec, worker: Worker, listeners: AppListeners | None) -> bool:
    """READY=1 when `wait_ready`, then the `health` path, else `min_uptime` alive, or less
    once the node preload says a server listens on the worker's socket (pm2's cluster mode
    takes 'listening' as its cue too).

    READY=1 and the health path must come within `listen_timeout`; False otherwise, or
    as soon as the worker exits.
    """
    timeout_s = spec.listen_timeout_ms / 1000
    if spec.wait_ready and not await _notified_within(worker, timeout_s):
        return False
    if spec.health is not None:
        return await _probe_until_healthy(spec, spec.health, worker, listeners, timeout_s)
    if spec.wait_ready:
        return worker.alive
    futures: list[asyncio.Future[Any]] = [worker.listening, worker.exited]
    await asyncio.wait(
        futures, timeout=spec.min_uptime_ms / 1000, return_when=asyncio.FIRST_COMPLETED
    )
    return worker.alive


async def _notified_within(worker: Worker, timeout_s: float) -> bool:
    futures: list[asyncio.Future[Any]] = [worker.notified, worker.exited]
    await asyncio.wait(futures, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    return worker.notified.done() and worker.alive


async def wait_notified(worker: Worker) -> bool:
    """After a readiness timeout: a READY=1 that comes late still makes the worker online."""
    futures: list[asyncio.Future[Any]] = [worker.notified, worker.exited]
    await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    return worker.notified.done() and worker.alive


async def _probe_until_healthy(
    spec: AppSpec, path: str, worker: Worker, listeners: AppListeners | None, timeout_s: float
) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while worker.alive and loop.time() < deadline:
        if await probe(spec, path, listeners):
            return True
        await asyncio.sleep(HEALTH_POLL_S)
    return False


async def probe(spec: AppSpec, path: str, listeners: AppListeners | None) -> bool:
    """One GET of `path` on the app's first listener (or 127.0.0.1:$PORT without one)."""
    from runtime.supervise.probe import probe_http, probe_unix  # only apps with `health:` need it

    if listeners is None:
        port = int(spec.env.get("PORT", "3000"))
        return await probe_http("127.0.0.1", port, path, PROBE_TIMEOUT_S)
    addr = listeners.addresses[0]
    if addr.kind == "unix":
        return await probe_unix(addr.path, path, PROBE_TIMEOUT_S)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(addr.host, addr.host)
    return await probe_http(host, addr.port, path, PROBE_TIMEOUT_S)
