"""The master as `web`, `prom`, `status` and `control.handler` see it: the attributes they use.

They read (and the control handler acts on) the running master through these small
protocols rather than through `Supervisor` and `App` themselves, so the observers import
nothing from `supervise` and the import graph keeps one direction (supervise -> observe).
`Supervisor`, `App`, `Slot` and `Worker` satisfy them structurally; mypy checks it where
the supervisor hands itself to the web server and the control handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Protocol

from runtime.config.spec import AppSpec
from runtime.logs.ring import LogRing
from runtime.observe.appmetrics import AppMetrics
from runtime.observe.load import LoadSampler
from runtime.observe.metrics import Sampler
from runtime.policy.lifecycle import AppStatus
from runtime.policy.scale import ScaleRequest
from runtime.proc.listeners import AppListeners

Exit = tuple[float, int | None, int | None]  # wall time, exit code, signal


class WorkerView(Protocol):
    """One running worker process."""

    @property
    def pid(self) -> int: ...

    @property
    def alive(self) -> bool: ...

    @property
    def started_at(self) -> float: ...  # the loop's clock

    @property
    def status_text(self) -> str | None: ...  # the last STATUS= it sent

    @property
    def version(self) -> str | None: ...  # the app's version when it started

    @property
    def app_metrics(self) -> AppMetrics: ...  # what it reports about itself


class SlotView(Protocol):
    """One instance number of an app."""

    @property
    def index(self) -> int: ...

    @property
    def id(self) -> int: ...  # the process id `list` shows

    @property
    def worker(self) -> WorkerView | None: ...

    @property
    def status(self) -> AppStatus: ...

    @property
    def restarts(self) -> int: ...

    @property
    def manual_stop(self) -> bool: ...

    @property
    def exits(self) -> Sequence[Exit]: ...


class AppView(Protocol):
    """One app: its spec, its slots, and the operations the control verbs ask for."""

    @property
    def spec(self) -> AppSpec: ...

    @property
    def slots(self) -> Mapping[int, SlotView]: ...

    @property
    def listeners(self) -> AppListeners | None: ...

    @property
    def reloading(self) -> bool: ...

    async def stop_slots(self, indices: Sequence[int] | None = None) -> None: ...

    def start_slots(self, indices: Sequence[int] | None = None) -> list[int]: ...

    async def restart_slots(self, indices: Sequence[int] | None = None) -> None: ...

    async def reload(self, slots: Sequence[int] | None = None) -> bool: ...

    async def delete_slot(self, index: int) -> None: ...

    async def scale(self, request: ScaleRequest) -> None: ...


class MasterView(Protocol):
    """The running master."""

    @property
    def apps(self) -> Mapping[str, AppView]: ...

    @property
    def draining(self) -> bool: ...  # SIGTERM received: /health answers 503

    @property
    def stopping(self) -> bool: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def log_ring(self) -> LogRing: ...

    @property
    def log_format(self) -> str: ...

    def sample(self, max_age_s: float = 0.0) -> Sampler: ...

    def read_load(self) -> LoadSampler:
        """The accept-queue sampler (sampled now when nothing samples it continuously)."""
        ...

    async def remove_app(self, name: str) -> None: ...

    def respec(
        self, names: Sequence[str], env_name: str | None, environ: Mapping[str, str] | None
    ) -> None:
        """Re-read these apps with another env context or environment (RuntimeUserError)."""
        ...
