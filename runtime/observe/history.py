"""The last minute of the dashboard's sparklines, kept by the master so a page opened late
draws them at once (sent as the SSE `history` event before the first status).

Bounded: POINTS values per series, one cpu and one memory series per live process id and
one saturation series per app; the series of a process or app that is gone are dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

POINTS = 60  # one per snapshot: a minute at the dashboard's 1 s


class History:
    """cpu/memory per process and saturation per app, newest last."""

    def __init__(self, points: int = POINTS) -> None:
        self.points = points
        self._cpu: dict[int, deque[float]] = {}
        self._mem: dict[int, deque[int]] = {}
        self._saturation: dict[str, deque[float]] = {}

    def record(
        self, processes: Iterable[Mapping[str, Any]], apps: Iterable[Mapping[str, Any]]
    ) -> None:
        """One point per series from a snapshot's process rows and apps (the /status shapes)."""
        live: set[int] = set()
        for row in processes:
            pid_key = int(row["id"])
            live.add(pid_key)
            cpu = self._cpu.setdefault(pid_key, deque(maxlen=self.points))
            mem = self._mem.setdefault(pid_key, deque(maxlen=self.points))
            cpu.append(float(row.get("cpu_percent") or 0.0))
            mem.append(int(row.get("memory_bytes") or 0))
        for gone in self._cpu.keys() - live:
            del self._cpu[gone], self._mem[gone]
        names: set[str] = set()
        for app in apps:
            name = str(app["name"])
            names.add(name)
            series = self._saturation.setdefault(name, deque(maxlen=self.points))
            series.append(float(app.get("load", {}).get("saturation") or 0.0))
        for gone_name in self._saturation.keys() - names:
            del self._saturation[gone_name]

    def as_json(self) -> dict[str, Any]:
        """`{"points", "processes": {id: {"cpu", "memory"}}, "apps": {name: {"saturation"}}}`."""
        return {
            "points": self.points,
            "processes": {
                str(key): {"cpu": list(cpu), "memory": list(self._mem[key])}
                for key, cpu in self._cpu.items()
            },
            "apps": {name: {"saturation": list(s)} for name, s in self._saturation.items()},
        }
