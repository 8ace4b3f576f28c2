"""SIGHUP re-reads the ecosystem; readiness by health path; auto-exit switches."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import pid_alive, py, write_ecosystem
from tests.integration.test_cluster import cluster_app, free_port, get

SLEEPER = "import time\nprint('up', flush=True)\nwhile True: time.sleep(1)"


def test_hup_starts_new_apps_and_stops_removed_ones(tmp_path: Path, run_master) -> None:
    """After editing the file, SIGHUP starts the added app, stops the removed one, rolls the kept one."""
    eco = tmp_path / "eco.json"
    write_ecosystem(
        eco, [{"name": "keep", "min_uptime": 200, **py(SLEEPER)}, {"name": "old", **py(SLEEPER)}]
    )
    m = run_master(str(eco), "--control", str(tmp_path / "ctl.sock"))
    started = {r["app"]: r["pid"] for r in m.wait_event("worker_started", count=2)}
    m.wait_event("worker_ready", count=2)
    write_ecosystem(
        eco, [{"name": "keep", "min_uptime": 200, **py(SLEEPER)}, {"name": "new", **py(SLEEPER)}]
    )
    m.signal(signal.SIGHUP)
    m.wait_event("config_reloaded", timeout=30)
    assert m.events("worker_started", app="new")
    assert not pid_alive(started["old"])
    assert m.events("app_deleted", app="old")
    assert not pid_alive(started["keep"])  # rolled: a new worker replaced it
    assert len(m.events("worker_started", app="keep")) == 2


def test_hup_with_a_broken_file_changes_nothing(tmp_path: Path, run_master) -> None:
    """A broken file on SIGHUP is reported in one event and every worker keeps running."""
    eco = tmp_path / "eco.json"
    write_ecosystem(eco, [{"name": "w", "instances": 2, **py(SLEEPER)}])
    m = run_master(str(eco), "--control", str(tmp_path / "ctl.sock"))
    pids = [r["pid"] for r in m.wait_event("worker_started", count=2)]
    eco.write_text(json.dumps({"apps": [{"name": "w", "instances": "lots", **py(SLEEPER)}]}))
    m.signal(signal.SIGHUP)
    failed = m.wait_event("config_reload_failed")[0]
    assert "instances" in failed["error"]
    time.sleep(0.5)
    assert all(pid_alive(p) for p in pids)
    assert len(m.events("worker_started")) == 2


def test_hup_applies_a_new_instance_count(tmp_path: Path, run_master) -> None:
    """Changing `instances` in the file and sending SIGHUP scales the app to it."""
    eco = tmp_path / "eco.json"
    write_ecosystem(eco, [{"name": "w", "instances": 1, "min_uptime": 200, **py(SLEEPER)}])
    m = run_master(str(eco), "--control", str(tmp_path / "ctl.sock"))
    m.wait_event("worker_ready")
    write_ecosystem(eco, [{"name": "w", "instances": 3, "min_uptime": 200, **py(SLEEPER)}])
    m.signal(signal.SIGHUP)
    scaled = m.wait_event("scaled", timeout=30)[0]
    assert scaled["instances"] == 3


def test_health_path_gates_readiness(tmp_path: Path, run_master) -> None:
    """With `health:` a worker is ready once the path answers 2xx through the app's socket."""
    port = free_port()
    app: dict[str, Any] = cluster_app(port, "shared", instances=1, wait_ready=False, health="/")
    app["env"] = {"BOOT_DELAY": "1"}
    m = run_master(
        str(write_ecosystem(tmp_path / "eco.json", [app])), "--control", str(tmp_path / "c.sock")
    )
    started = m.wait_event("worker_started")[0]
    ready = m.wait_event("worker_ready")[0]
    assert ready["pid"] == started["pid"]
    serving = next(r for r in m.lines("web") if r["message"].startswith("serving"))
    assert serving["timestamp"] <= ready["timestamp"]
    assert get(port)[0] == 200


def test_no_auto_exit_keeps_the_master_up(tmp_path: Path, run_master) -> None:
    """With --no-auto-exit the master stays up after every app ended, until a signal."""
    eco = write_ecosystem(
        tmp_path / "eco.json", [{"name": "job", "autorestart": False, **py("print('done')")}]
    )
    m = run_master(str(eco), "--no-auto-exit", "--control", str(tmp_path / "c.sock"))
    m.wait_event("worker_stopped")
    time.sleep(0.5)
    assert m.proc.poll() is None
    assert m.events("auto_exit") == []
    m.signal(signal.SIGTERM)
    assert m.wait_exit() == 0


def test_stopping_and_status_notifications_are_recorded(tmp_path: Path, run_master) -> None:
    """STATUS= and STOPPING=1 datagrams from a worker show up in its events and status."""
    code = (
        "import os,socket,time\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "s.sendto(b'READY=1\\nSTATUS=warming caches', os.environ['NOTIFY_SOCKET'])\n"
        "time.sleep(0.5)\n"
        "s.sendto(b'STOPPING=1', os.environ['NOTIFY_SOCKET'])\n"
        "time.sleep(60)\n"
    )
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "n", "wait_ready": True, **py(code)}])
    m = run_master(str(eco), "--control", str(tmp_path / "c.sock"))
    m.wait_event("worker_ready")
    rec = m.wait_event("worker_stopping")[0]
    assert rec["app"] == "n"
