"""`/metrics`: a Prometheus collector that reads the master's live state on every scrape.

Nothing is recorded between scrapes and no thread is started: `prometheus_client`
only formats what `collect()` yields (its default registry and its HTTP server are
not used). One sample per worker slot, labelled `app` and `instance`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from runtime import __version__
from runtime.observe.load import LoadSampler
from runtime.observe.status import process_rows
from runtime.observe.view import MasterView
from runtime.proc.reaper import signal_name

# the classic text format: every name here is a legacy name, and Prometheus 2 and 3 both read it
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SAMPLE_MAX_AGE_S = 0.5  # scrapes closer together than this share one psutil sample
LABELS = ("app", "instance")


class ExitTally:
    """Monotonic exit counts per slot, fed from each slot's short history of recent exits."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[int, float]] = {}  # slot id -> (count, newest exit at)

    def update(self, slot_id: int, exits: Iterable[tuple[float, int | None, int | None]]) -> int:
        count, newest = self._seen.get(slot_id, (0, 0.0))
        times = [at for at, _code, _sig in exits]
        count += sum(1 for at in times if at > newest)
        newest = max(times, default=newest)
        self._seen[slot_id] = (count, newest)
        return count

    def forget_except(self, slot_ids: set[int]) -> None:
        for gone in self._seen.keys() - slot_ids:
            del self._seen[gone]


class RuntimeCollector(Collector):
    """Yields the runtime's metric families from the supervisor's state at scrape time."""

    def __init__(self, sup: MasterView) -> None:
        self.sup = sup
        self.exits = ExitTally()

    def collect(self) -> Iterator[Metric]:
        sup = self.sup
        sampler = sup.sample(SAMPLE_MAX_AGE_S)
        load = sup.read_load()
        rows = process_rows(sup.apps.values(), sampler, sup.loop.time(), load)
        families = _worker_families()
        ids: set[int] = set()
        last_exit = GaugeMetricFamily(
            "runtime_worker_last_exit",
            "How the slot's last unrequested exit ended: exit code, or 128 + signal",
            labels=[*LABELS, "signal"],
        )
        exits = CounterMetricFamily(
            "runtime_worker_exits",
            "Unrequested worker exits (crashes and clean ends)",
            labels=LABELS,
        )
        slots = {s.id: s for app in sup.apps.values() for s in app.slots.values()}
        for row in rows:
            labels = [row["name"], str(row["instance"])]
            _add_row(families, labels, row)
            slot = slots.get(row["id"])
            if slot is None:
                continue
            ids.add(slot.id)
            exits.add_metric(labels, self.exits.update(slot.id, slot.exits))
            if slot.exits:
                _at, code, sig = slot.exits[-1]
                name = signal_name(sig) if sig else ""
                last_exit.add_metric([*labels, name], 128 + sig if sig else (code or 0))
        self.exits.forget_except(ids)
        yield from families.values()
        yield exits
        yield last_exit
        yield from _load_families(sup, load)
        yield from _runtime_families(sup)


def _worker_families() -> dict[str, Metric]:
    return {
        "cpu": GaugeMetricFamily(
            "runtime_worker_cpu_percent",
            "CPU use of the worker's process tree, % of one core",
            labels=LABELS,
        ),
        "memory": GaugeMetricFamily(
            "runtime_worker_memory_bytes",
            "Resident memory of the worker's process tree",
            labels=LABELS,
        ),
        "restarts": CounterMetricFamily(
            "runtime_worker_restarts", "Restarts of this instance slot", labels=LABELS
        ),
        "uptime": GaugeMetricFamily(
            "runtime_worker_uptime_seconds", "Seconds since the worker started", labels=LABELS
        ),
        "up": GaugeMetricFamily(
            "runtime_worker_up", "1 while a worker process runs in the slot", labels=LABELS
        ),
        "ready": GaugeMetricFamily(
            "runtime_worker_ready",
            "1 once the worker is ready (READY=1, health, min_uptime)",
            labels=LABELS,
        ),
        "status": GaugeMetricFamily(
            "runtime_worker_status",
            "1 for the slot's current pm2 status",
            labels=[*LABELS, "status"],
        ),
        "connections": GaugeMetricFamily(
            "runtime_worker_connections",
            "Established connections the worker's process tree holds on the app's listeners",
            labels=LABELS,
        ),
        "accept_idle": GaugeMetricFamily(
            "runtime_worker_accept_idle_seconds",
            "How long the slot's own accept queue has held connections without shrinking",
            labels=LABELS,
        ),
    }


def _add_row(families: dict[str, Metric], labels: list[str], row: dict[str, Any]) -> None:
    def add(key: str, value: float | None, extra: tuple[str, ...] = ()) -> None:
        if value is not None:
            families[key].add_metric([*labels, *extra], value)  # type: ignore[attr-defined]

    add("cpu", row["cpu_percent"])
    add("memory", row["memory_bytes"])
    add("restarts", row["restarts"])
    add("uptime", row["uptime_s"])
    add("up", 1 if row["pid"] else 0)
    add("ready", 1 if row["ready"] else 0)
    add("status", 1, (row["status"],))
    add("connections", row.get("connections"))
    add("accept_idle", row.get("accept_idle_s"))


def _load_families(sup: MasterView, load: LoadSampler) -> Iterator[Metric]:
    """The accept queues the master holds, and each app's saturation (observe.load)."""
    labels = ["app", "listener", "slot"]
    now = GaugeMetricFamily(
        "runtime_listen_backlog",
        "Connections waiting in the listener's accept queue for a worker to take them",
        labels=labels,
    )
    peak = GaugeMetricFamily(
        "runtime_listen_backlog_peak",
        "The highest backlog sampled since the previous scrape",
        labels=labels,
    )
    for key, depth in sorted(load.backlog.items(), key=lambda kv: str(kv[0])):
        now.add_metric([key.app, key.listener, _slot(key.slot)], depth)
    for key, depth in sorted(load.take_peaks().items(), key=lambda kv: str(kv[0])):
        peak.add_metric([key.app, key.listener, _slot(key.slot)], depth)
    saturation = GaugeMetricFamily(
        "runtime_app_saturation",
        "Share of the last 10 s in which connections waited for the app's workers (0 to 1)",
        labels=["app"],
    )
    for name, app in sup.apps.items():
        if app.listeners is not None:
            saturation.add_metric([name], load.saturation(name))
    yield now
    yield peak
    yield saturation


def _slot(slot: int | None) -> str:
    return "" if slot is None else str(slot)


def _runtime_families(sup: MasterView) -> Iterator[Metric]:
    info = GaugeMetricFamily("runtime_info", "The runtime itself", labels=["version", "pid"])
    info.add_metric([__version__, str(os.getpid())], 1)
    yield info
    yield GaugeMetricFamily(
        "runtime_draining",
        "1 once a stop was asked for (SIGTERM)",
        value=1 if sup.draining or sup.stopping else 0,
    )
    yield GaugeMetricFamily("runtime_apps", "Apps in the ecosystem", value=len(sup.apps))
    yield CounterMetricFamily(
        "runtime_log_dropped_lines",
        "Lines dropped for slow log followers",
        value=sup.log_ring.dropped,
    )


class Metrics:
    """A private registry holding only the runtime collector (no process/GC defaults)."""

    def __init__(self, sup: MasterView) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RuntimeCollector(sup))

    def render(self) -> bytes:
        return generate_latest(self.registry)
