"""Faults from issue #13, each reproduced against a real master: no rejected release left
serving, no dead slot swallowing connections, no slot left dead after a failed fork,
nothing outliving the master."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, free_port, pid_alive
from tests.integration.test_cluster import SERVER, Load, cluster_app, get, wait_serving, write


def control(ctl: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One control verb against the master on `ctl`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args, "--control", str(ctl)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def answered(port: int, count: int, timeout: float = 2.0) -> tuple[int, list[str]]:
    """`count` fresh connections, each with its own deadline: how many got an answer."""
    ok, failures = 0, []
    for _ in range(count):
        try:
            if get(port, timeout=timeout)[0] == 200:
                ok += 1
        except OSError as exc:
            failures.append(repr(exc))
    return ok, failures


def slot_ids(ctl: Path) -> dict[int, int]:
    """instance -> id, from `list --json`."""
    rows = json.loads(control(ctl, "list", "--json").stdout)
    return {row["instance"]: row["id"] for row in rows}


def test_stopped_slot_swallows_no_connection(tmp_path: Path, run_master) -> None:
    """After `stop` of one of two reuseport instances, every new connection is answered."""
    port, ctl = free_port(), tmp_path / "c.sock"
    m = run_master(
        str(write(tmp_path / "eco.json", [cluster_app(port, "reuseport")])), "--control", str(ctl)
    )
    m.wait_event("worker_ready", count=2)
    assert control(ctl, "stop", str(slot_ids(ctl)[1])).returncode == 0
    m.wait_event("worker_exited", instance=1)
    ok, failures = answered(port, 40)
    assert (ok, failures) == (40, [])


def test_errored_slot_swallows_no_connection(tmp_path: Path, run_master) -> None:
    """A slot whose worker crash-looped into `errored` gets no new connection."""
    port = free_port()
    app = cluster_app(port, "reuseport", max_restarts=2, min_uptime=2000, restart_delay=0)
    script = (
        "import os, runpy, sys\n"
        "if os.environ['RUNTIME_INSTANCE'] == '1': sys.exit(3)\n"
        f"sys.argv = [{SERVER!r}]; runpy.run_path({SERVER!r}, run_name='__main__')\n"
    )
    app.update(script=sys.executable, args=["-c", script], interpreter="none")
    m = run_master(str(write(tmp_path / "eco.json", [app])))
    m.wait_event("worker_errored", instance=1, timeout=20)
    wait_serving(port)
    ok, failures = answered(port, 40)
    assert (ok, failures) == (40, [])


def test_fully_stopped_app_refuses_instead_of_hanging(tmp_path: Path, run_master) -> None:
    """`stop all` closes the app's sockets (clients are refused at once); `start all` opens
    them again and serves."""
    port, ctl = free_port(), tmp_path / "c.sock"
    m = run_master(
        str(write(tmp_path / "eco.json", [cluster_app(port, "reuseport")])), "--control", str(ctl)
    )
    m.wait_event("worker_ready", count=2)
    assert control(ctl, "stop", "all").returncode == 0
    m.wait_event("listeners_closed")
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert time.monotonic() - started < 1.0
    assert control(ctl, "start", "all").returncode == 0
    wait_serving(port)
    assert answered(port, 10)[0] == 10


def test_scale_down_resets_no_connection(tmp_path: Path, run_master) -> None:
    """Scaling reuseport slots down under fresh-connection load fails no request, even with
    net.ipv4.tcp_migrate_req off: the removed slots are drained before they close."""
    port, ctl = free_port(), tmp_path / "c.sock"
    m = run_master(
        str(write(tmp_path / "eco.json", [cluster_app(port, "reuseport", instances=4)])),
        "--control",
        str(ctl),
    )
    m.wait_event("worker_ready", count=4)
    with Load(port, threads=4) as load:
        time.sleep(0.3)
        assert control(ctl, "scale", "web", "1").returncode == 0
        time.sleep(0.5)
    assert load.failures == []
    assert load.ok > 50
    assert [r["instances"] for r in m.events("scaled")] == [1]


def test_rejected_replacement_is_stopped_and_settings_revert(tmp_path: Path, run_master) -> None:
    """A replacement that is not ready in time is killed, the old settings come back, and a
    later crash restarts the release that worked, not the rejected one."""
    port, ctl = free_port(), tmp_path / "c.sock"
    eco = tmp_path / "eco.json"
    write(eco, [cluster_app(port, "reuseport", instances=1, env={"VERSION": "v1"})])
    m = run_master(str(eco), "--control", str(ctl))
    old = m.wait_event("worker_ready")[0]["pid"]
    slow = cluster_app(
        port,
        "reuseport",
        instances=1,
        listen_timeout=800,
        env={"VERSION": "v2", "BOOT_DELAY": "30"},
    )
    write(eco, [slow])
    m.signal(signal.SIGHUP)
    m.wait_event("reload_failed", timeout=15)
    m.wait_event("reload_reverted", timeout=15)
    rejected = [r["pid"] for r in m.events("worker_started") if r["pid"] != old]
    assert rejected
    m.wait_for(lambda: not any(pid_alive(p) for p in rejected), 10, "the rejected replacement gone")
    assert {get(port)[1].split()[1] for _ in range(10)} == {str(old)}
    show = json.loads(control(ctl, "show", "web", "--json").stdout)
    assert show["settings"]["env"]["VERSION"] == "v1"
    os.kill(old, signal.SIGKILL)
    restarted = m.wait_event("worker_ready", count=2, timeout=15)[-1]["pid"]
    env = Path(f"/proc/{restarted}/environ").read_bytes().split(b"\0")
    assert b"VERSION=v1" in env


def test_sighup_during_a_reload_rolls_to_the_newest_settings(tmp_path: Path, run_master) -> None:
    """A second SIGHUP while a reload runs waits for it, then rolls again: every slot ends on
    the last settings, as `show` says."""
    port, ctl = free_port(), tmp_path / "c.sock"
    eco = tmp_path / "eco.json"
    slow = {"BOOT_DELAY": "0.4"}
    write(eco, [cluster_app(port, "reuseport", instances=3, env={**slow, "VERSION": "v1"})])
    m = run_master(str(eco), "--control", str(ctl))
    m.wait_event("worker_ready", count=3)
    write(eco, [cluster_app(port, "reuseport", instances=3, env={**slow, "VERSION": "v2"})])
    m.signal(signal.SIGHUP)
    m.wait_event("worker_started", count=4)  # the first replacement is on its way
    write(eco, [cluster_app(port, "reuseport", instances=3, env={**slow, "VERSION": "v3"})])
    m.signal(signal.SIGHUP)
    m.wait_event("reload_done", count=2, timeout=40)
    pids = [row["pid"] for row in json.loads(control(ctl, "list", "--json").stdout)]
    versions = {
        next(
            v
            for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if v.startswith(b"VERSION=")
        )
        for pid in pids
    }
    assert versions == {b"VERSION=v3"}
    assert (
        json.loads(control(ctl, "show", "web", "--json").stdout)["settings"]["env"]["VERSION"]
        == "v3"
    )


def nofile_limits(pid: int) -> tuple[str, str]:
    """The process's soft and hard limits on open files, as /proc shows them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no open-file limit in /proc/PID/limits")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_failed_fork_is_retried_until_it_works(tmp_path: Path, run_master) -> None:
    """With no fds left (EMFILE on the pipes), a crashed worker's respawn fails: the master
    logs `spawn_failed` and retries with a backoff; once fds are free again the slot comes
    back. No traceback meanwhile."""
    crash = {
        "name": "c",
        "script": sys.executable,
        "args": ["-c", "import time; print('up', flush=True); time.sleep(0.2)"],
        "interpreter": "none",
        "restart_delay": 0,
        "min_uptime": 0,
        "max_restarts": 0,
    }
    m = run_master(str(write(tmp_path / "eco.json", [crash])))
    m.wait_event("worker_started", count=2)
    soft, hard = nofile_limits(m.pid)
    limit = fd_count(m.pid)
    prlimit = ["prlimit", f"--pid={m.pid}"]
    subprocess.run([*prlimit, f"--nofile={limit}:{hard}"], check=True, timeout=10)
    failed = m.wait_event("spawn_failed", count=2, timeout=20)
    assert failed[0]["level"] == "error"
    assert failed[0]["retry_ms"] > 0
    subprocess.run([*prlimit, f"--nofile={soft}:{hard}"], check=True, timeout=10)
    before = len(m.events("worker_started"))
    m.wait_for(lambda: len(m.events("worker_started")) > before, 20, "a worker started again")
    m.signal(signal.SIGTERM)
    assert m.wait_exit(20) == 0
    assert "Traceback" not in m.stderr()
    assert all("unparsed" not in r for r in m.records)


def test_setsid_descendant_does_not_outlive_the_master(tmp_path: Path, run_master) -> None:
    """A worker's child that calls setsid() and ignores SIGTERM is gone when the master exits."""
    marker = tmp_path / "child.pid"
    child = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "os.setsid()\n"
        f"open({str(marker)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(600)\n"
    )
    parent = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {child!r}])\ntime.sleep(600)\n"
    app = {
        "name": "p",
        "script": sys.executable,
        "args": ["-c", parent],
        "interpreter": "none",
        "kill_timeout": 1000,
    }
    m = run_master(str(write(tmp_path / "eco.json", [app])))
    deadline = time.monotonic() + 10
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(marker.read_text())
    m.signal(signal.SIGTERM)
    assert m.wait_exit(20) == 0
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid)


def _stop_with_a_slow_reader(tmp_path: Path, read_s: float) -> tuple[bytes, str, int]:
    """A master flooded by its worker, stopped while its stdout is read slowly (16 KiB
    every 50 ms, after `read_s` of not reading at all): what came out, stderr, exit code."""
    flood = "import sys\nwhile True: sys.stdout.write('x' * 200 + '\\n')\n"
    app = {"name": "f", "script": sys.executable, "args": ["-c", flood], "interpreter": "none"}
    eco = write(tmp_path / "eco.json", [app])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", str(eco), "--log-format", "json"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    os.close(write_end)
    time.sleep(1.0)  # the pipe and the sink's buffer fill
    proc.send_signal(signal.SIGTERM)
    time.sleep(read_s)
    out = bytearray()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (chunk := os.read(read_end, 1 << 14)):
        out += chunk
        time.sleep(0.05)
    os.close(read_end)
    code = proc.wait(20)
    assert proc.stderr is not None
    with proc.stderr:
        return bytes(out), proc.stderr.read().decode(), code


def test_shutdown_with_a_slow_reader_never_cuts_a_line(tmp_path: Path) -> None:
    """Stopped while stdout is read slowly: whole JSON lines only come out, and what could
    not be written before the deadline is counted on stderr in one line."""
    out, stderr, code = _stop_with_a_slow_reader(tmp_path, read_s=0.0)
    lines = out.split(b"\n")
    assert lines[-1] == b""  # ends with a whole line
    for line in lines[:-1]:
        json.loads(line)
    assert code == 0
    lost = [line for line in stderr.splitlines() if "not written" in line]
    assert len(lost) == 1, stderr
    assert "cut" not in lost[0]


def _reload_under_fresh_connections(
    tmp_path: Path, run_master, app: dict[str, Any], reloads: int
) -> Load:
    port = app["listen"][0].rsplit(":", 1)[1]
    m = run_master(str(write(tmp_path / "eco.json", [app])))
    m.wait_event("worker_ready", count=2, timeout=30)
    with Load(int(port), threads=4) as load:
        for n in range(1, reloads + 1):
            m.signal(signal.SIGHUP)
            m.wait_event("reload_done", count=n, timeout=30)
        time.sleep(0.3)
    return load


def test_reloads_of_uvicorn_fail_no_fresh_connection(tmp_path: Path, run_master) -> None:
    """uvicorn --fd 3 under clients looping on fresh connections: rolling reloads fail none
    (the old worker is drained of new connections before it gets SIGTERM)."""
    pytest.importorskip("uvicorn")
    port = free_port()
    asgi = ROOT / "tests" / "apps" / "servers"
    app = {
        "name": "web",
        "script": sys.executable,
        "args": [
            "-m",
            "uvicorn",
            "--fd",
            "3",
            "--app-dir",
            str(asgi),
            "--no-access-log",
            "asgi_app:app",
        ],
        "interpreter": "none",
        "exec_mode": "cluster",
        "instances": 2,
        "listen": [f"127.0.0.1:{port}"],
        "health": "/",
        "listen_timeout": 10000,
    }
    load = _reload_under_fresh_connections(tmp_path, run_master, app, reloads=6)
    assert load.failures == []
    assert load.ok > 100


def test_control_accepts_out_of_fds_log_no_traceback_flood(tmp_path: Path, run_master) -> None:
    """With the master out of fds, clients knocking on the control socket make at most a
    few JSON `loop_error` events, and no traceback on stderr."""
    ctl = tmp_path / "c.sock"
    sleeper = {"name": "s", "script": "sleep 600"}
    m = run_master(str(write(tmp_path / "eco.json", [sleeper])), "--control", str(ctl))
    m.wait_event("worker_ready")  # the master is serving (its start-up needs fds too)
    soft, hard = nofile_limits(m.pid)
    prlimit = ["prlimit", f"--pid={m.pid}"]
    subprocess.run([*prlimit, f"--nofile={fd_count(m.pid)}:{hard}"], check=True, timeout=10)
    for _ in range(20):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(0.5)
            with contextlib.suppress(OSError):  # a full accept queue refuses: that is fine
                client.connect(str(ctl))
        time.sleep(0.05)
    subprocess.run([*prlimit, f"--nofile={soft}:{hard}"], check=True, timeout=10)
    assert control(ctl, "ping").returncode == 0
    m.signal(signal.SIGTERM)
    assert m.wait_exit(20) == 0
    stderr = m.stderr()
    assert "Traceback" not in stderr, stderr[-2000:]
    assert len(m.events("loop_error")) <= 3
