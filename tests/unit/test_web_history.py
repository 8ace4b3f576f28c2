"""The dashboard's server-side history: bounded series per process and app, gone ones dropped."""

from __future__ import annotations

from typing import Any

from runtime.observe.history import History


def row(pid_id: int, cpu: float | None, mem: int | None) -> dict[str, Any]:
    return {"id": pid_id, "cpu_percent": cpu, "memory_bytes": mem}


def app(name: str, saturation: float) -> dict[str, Any]:
    return {"name": name, "load": {"saturation": saturation, "queues": []}}


def test_history_keeps_the_last_points_of_each_series() -> None:
    """Each snapshot adds one point per series; only the newest `points` are kept."""
    history = History(points=3)
    for i in range(5):
        history.record([row(0, float(i), 100 + i)], [app("web", i / 10)])
    assert history.as_json() == {
        "points": 3,
        "processes": {"0": {"cpu": [2.0, 3.0, 4.0], "memory": [102, 103, 104]}},
        "apps": {"web": {"saturation": [0.2, 0.3, 0.4]}},
    }


def test_history_drops_what_is_gone_and_starts_new_series_short() -> None:
    """A process or app no longer in the snapshot loses its series; a new one starts empty,
    and a process without a sample (stopped) records zeros."""
    history = History(points=60)
    history.record([row(0, 1.0, 10), row(1, 2.0, 20)], [app("web", 0.0), app("old", 0.5)])
    history.record([row(1, None, None), row(2, 3.0, 30)], [app("web", 1.0)])
    doc = history.as_json()
    assert doc["processes"] == {
        "1": {"cpu": [2.0, 0.0], "memory": [20, 0]},
        "2": {"cpu": [3.0], "memory": [30]},
    }
    assert doc["apps"] == {"web": {"saturation": [0.0, 1.0]}}


def test_history_is_bounded_under_many_snapshots() -> None:
    """However long the master runs, each series holds at most `points` values."""
    history = History()
    for i in range(1000):
        history.record([row(n, float(i), i) for n in range(4)], [app("web", 0.1)])
    doc = history.as_json()
    assert all(len(s["cpu"]) == history.points for s in doc["processes"].values())
    assert len(doc["apps"]["web"]["saturation"]) == history.points
