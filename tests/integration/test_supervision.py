"""Fork-mode supervision with a real master and real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, pid_alive, py, write_ecosystem

SLEEPER = "import time\nprint('up', flush=True)\nwhile True: time.sleep(1)"


def test_worker_line_becomes_json_record(tmp_path: Path, run_master) -> None:
    """A worker's stdout line arrives as one JSON record with app, instance, pid and stream."""
    eco = write_ecosystem(
        tmp_path / "eco.json",
        [{"name": "web", **py("print('hello', flush=True)\nimport time; time.sleep(30)")}],
    )
    m = run_master(str(eco))
    rec = m.wait_for(lambda: next((r for r in m.lines("web") if r.get("message") == "hello"), None))
    assert rec["stream"] == "stdout"
    assert rec["instance"] == 0
    assert rec["level"] == "info"
    started = m.wait_event("worker_started", app="web")[0]
    assert rec["pid"] == started["pid"]
    assert rec["timestamp"].endswith("Z")


def test_worker_environment(tmp_path: Path, run_master) -> None:
    """Each worker gets RUNTIME_APP, RUNTIME_INSTANCE, NODE_APP_INSTANCE and the app env."""
    code = (
        "import os,time\n"
        "print(os.environ['RUNTIME_APP'], os.environ['RUNTIME_INSTANCE'],"
        " os.environ['NODE_APP_INSTANCE'], os.environ['GREETING'], flush=True)\n"
        "time.sleep(30)"
    )
    eco = write_ecosystem(
        tmp_path / "eco.json",
        [{"name": "api", "instances": 2, "env": {"GREETING": "hi"}, **py(code)}],
    )
    m = run_master(str(eco))
    m.wait_for(lambda: len(m.lines("api")) >= 2)
    assert sorted(r["message"] for r in m.lines("api")) == ["api 0 0 hi", "api 1 1 hi"]


def test_crash_loop_follows_backoff_then_errors(tmp_path: Path, run_master) -> None:
    """A crash loop's delays follow pm2's backoff; after max_restarts the app is errored, exit 1."""
    eco = write_ecosystem(
        tmp_path / "eco.json",
        [
            {
                "name": "crash",
                "exp_backoff_restart_delay": 100,
                "max_restarts": 6,
                # every crash is an unstable one, however slow the host is to start Python
                # (a crash after min_uptime is not counted: under load one once was)
                "min_uptime": 60000,
                **py("raise SystemExit(3)"),
            }
        ],
    )
    m = run_master(str(eco))
    assert m.wait_exit(20) == 1
    delays = [r["delay_ms"] for r in m.events("restart_scheduled")]
    assert delays == [100, 150, 225, 337, 505], m.events("worker_exited")
    assert len(m.events("worker_errored")) == 1
    assert m.events("auto_exit")[0]["code"] == 1
    assert all(r["code"] == 3 for r in m.events("worker_exited"))


def test_one_shot_job_exits_zero(tmp_path: Path, run_master) -> None:
    """An app that ends cleanly with autorestart off makes the master exit 0 once it is done."""
    eco = write_ecosystem(
        tmp_path / "eco.json", [{"name": "job", "autorestart": False, **py("print('done')")}]
    )
    m = run_master(str(eco))
    assert m.wait_exit(10) == 0
    assert [r["message"] for r in m.lines("job")] == ["done"]


def test_stop_exit_code_is_not_restarted(tmp_path: Path, run_master) -> None:
    """An exit code listed in stop_exit_codes ends the app without a restart."""
    eco = write_ecosystem(
        tmp_path / "eco.json", [{"name": "j", "stop_exit_codes": [7], **py("raise SystemExit(7)")}]
    )
    m = run_master(str(eco))
    assert m.wait_exit(10) == 0
    assert m.events("restart_scheduled") == []


def test_kill_timeout_kills_a_worker_that_ignores_sigterm(tmp_path: Path, run_master) -> None:
    """A worker ignoring SIGTERM is SIGKILLed after kill_timeout; the master still exits 0."""
    code = "import signal,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(60)"
    eco = write_ecosystem(
        tmp_path / "eco.json", [{"name": "stubborn", "kill_timeout": 700, **py(code)}]
    )
    m = run_master(str(eco))
    m.wait_for(lambda: m.lines("stubborn"))
    t0 = time.monotonic()
    m.signal(signal.SIGTERM)
    assert m.wait_exit(10) == 0
    elapsed = time.monotonic() - t0
    assert 0.6 <= elapsed < 5
    assert m.events("worker_exited")[0]["signal"] == "SIGKILL"


def test_grandchild_is_killed_with_its_group(tmp_path: Path, run_master) -> None:
    """A worker's own child process is stopped with the worker's process group."""
    code = (
        "import subprocess,time\n"
        "p = subprocess.Popen(['sleep', '60'])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)"
    )
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "parent", **py(code)}])
    m = run_master(str(eco))
    grandchild = int(m.wait_for(lambda: m.lines("parent"))[0]["message"])
    assert pid_alive(grandchild)
    m.signal(signal.SIGTERM)
    assert m.wait_exit(10) == 0
    deadline = time.monotonic() + 5
    while pid_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(grandchild)


def test_second_sigterm_kills_at_once(tmp_path: Path, run_master) -> None:
    """A second SIGTERM during a graceful stop kills the workers without waiting kill_timeout."""
    code = "import signal,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(60)"
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "s", "kill_timeout": 20000, **py(code)}])
    m = run_master(str(eco))
    m.wait_for(lambda: m.lines("s"))
    m.signal(signal.SIGTERM)
    m.wait_event("stop_requested")
    t0 = time.monotonic()
    m.signal(signal.SIGTERM)
    assert m.wait_exit(10) == 0
    assert time.monotonic() - t0 < 5


def test_sigquit_kills_immediately(tmp_path: Path, run_master) -> None:
    """SIGQUIT SIGKILLs every worker and exits 0."""
    code = "import signal,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(60)"
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "q", "kill_timeout": 20000, **py(code)}])
    m = run_master(str(eco))
    m.wait_for(lambda: m.lines("q"))
    m.signal(signal.SIGQUIT)
    assert m.wait_exit(10) == 0
    assert m.events("worker_exited")[0]["signal"] == "SIGKILL"


def test_workers_die_with_a_sigkilled_master(tmp_path: Path, run_master) -> None:
    """SIGKILL of the master takes its workers down too (parent-death signal)."""
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "w", "instances": 2, **py(SLEEPER)}])
    m = run_master(str(eco))
    started = m.wait_event("worker_started", count=2)
    pids = [r["pid"] for r in started]
    m.wait_for(lambda: len(m.lines("w")) >= 2)
    m.signal(signal.SIGKILL)
    m.wait_exit(10)
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(pid_alive(p) for p in pids)


def test_hup_replaces_every_instance(tmp_path: Path, run_master) -> None:
    """SIGHUP restarts each instance in turn: new pids, reload_done, old workers gone."""
    eco = write_ecosystem(
        tmp_path / "eco.json", [{"name": "w", "instances": 2, "min_uptime": 200, **py(SLEEPER)}]
    )
    m = run_master(str(eco))
    old = {r["pid"] for r in m.wait_event("worker_started", count=2)}
    m.wait_event("worker_ready", count=2)
    m.signal(signal.SIGHUP)
    m.wait_event("reload_done", timeout=15)
    new = {r["pid"] for r in m.events("worker_started")} - old
    assert len(new) == 2
    assert not any(pid_alive(p) for p in old)
    assert m.events("restart_scheduled") == []


def test_usr1_logs_a_status_snapshot(tmp_path: Path, run_master) -> None:
    """SIGUSR1 logs one status record per worker."""
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "w", "instances": 2, **py(SLEEPER)}])
    m = run_master(str(eco))
    m.wait_event("worker_started", count=2)
    m.signal(signal.SIGUSR1)
    records = m.wait_event("status", count=2)
    assert {r["instance"] for r in records} == {0, 1}
    assert all(r["pid"] for r in records)


def test_platform_sigterm_to_every_process_restarts_nothing(tmp_path: Path, run_master) -> None:
    """SIGTERM to the master and its workers at once (Heroku) ends with exit 0 and no restart."""
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "w", "instances": 3, **py(SLEEPER)}])
    m = run_master(str(eco))
    pids = [r["pid"] for r in m.wait_event("worker_started", count=3)]
    m.wait_for(lambda: len(m.lines("w")) >= 3)
    for pid in [*pids, m.pid]:
        os.kill(pid, signal.SIGTERM)
    assert m.wait_exit(10) == 0
    assert len(m.events("worker_started")) == 3  # nothing was started again


def test_everything_written_before_exit_is_logged_in_order(tmp_path: Path, run_master) -> None:
    """100,000 lines written just before the worker exits are all logged, in order, first."""
    code = "import sys\nsys.stdout.write(''.join(f'line {i}\\n' for i in range(100000)))"
    eco = write_ecosystem(
        tmp_path / "eco.json", [{"name": "burst", "autorestart": False, **py(code)}]
    )
    m = run_master(str(eco))
    assert m.wait_exit(30) == 0
    messages = [r["message"] for r in m.lines("burst")]
    assert messages == [f"line {i}" for i in range(100000)]
    exit_index = next(i for i, r in enumerate(m.records) if r.get("event") == "worker_exited")
    last_line = max(
        i for i, r in enumerate(m.records) if r.get("app") == "burst" and "event" not in r
    )
    assert last_line < exit_index


def test_memory_limit_restarts_a_leaking_worker(tmp_path: Path, run_master) -> None:
    """A worker growing past max_memory_restart is restarted and the figure is logged."""
    code = (
        "import time\nblocks = []\nprint('up', flush=True)\n"
        "while True:\n    blocks.append(bytearray(4 << 20)); time.sleep(0.02)"
    )
    eco = write_ecosystem(
        tmp_path / "eco.json", [{"name": "leak", "max_memory_restart": "80M", **py(code)}]
    )
    m = run_master(str(eco))
    rec = m.wait_event("memory_limit", timeout=15)[0]
    assert rec["rss_bytes"] >= 80 << 20
    assert rec["rss_bytes"] < 400 << 20
    m.wait_event("worker_started", count=2, timeout=10)


def test_orphans_are_reaped_by_the_subreaper(tmp_path: Path, run_master) -> None:
    """A grandchild orphaned by its parent is adopted and reaped by the master (no zombie)."""
    code = (
        "import os,time,sys\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(0.3); os._exit(0)\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "time.sleep(1.5)\n"
        "zombies = 0\n"
        "for p in os.listdir('/proc'):\n"
        "    if p.isdigit():\n"
        "        try: s = open(f'/proc/{p}/stat').read()\n"
        "        except OSError: continue\n"
        "        if s.rsplit(')', 1)[1].split()[0] == 'Z' and int(s.rsplit(')', 1)[1].split()[1]) == os.getppid(): zombies += 1\n"
        "print('zombies', zombies, flush=True)\n"
    )
    eco = write_ecosystem(
        tmp_path / "eco.json", [{"name": "orph", "autorestart": False, **py(code)}]
    )
    m = run_master(str(eco))
    assert m.wait_exit(15) == 0
    assert [r["message"] for r in m.lines("orph")] == ["zombies 0"]


@pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root")
def test_pid1_in_a_namespace_reaps_and_stops(tmp_path: Path) -> None:
    """As PID 1 of a PID namespace the master reaps orphans and `kill -TERM 1` ends it with 0."""
    code = (
        "import os,time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(0.2); os._exit(0)\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "time.sleep(1.2)\n"
        "z = [p for p in os.listdir('/proc') if p.isdigit() and open(f'/proc/{p}/stat').read().rsplit(')',1)[1].split()[0]=='Z']\n"
        "print('zombies', len(z), 'ppid', os.getppid(), flush=True)\n"
        "time.sleep(60)\n"
    )
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "ns", **py(code)}])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            sys.executable,
            "-m",
            "runtime",
            str(eco),
            "--log-format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 15
        line = b""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if b"zombies" in line or not line:
                break
        assert b'"zombies 0 ppid 1"' in line
        # `docker stop`: TERM to PID 1 of the namespace, sent from inside it.
        subprocess.run(
            [
                "nsenter",
                "--target",
                str(_ns_child(proc.pid)),
                "--pid",
                "--mount",
                "kill",
                "-TERM",
                "1",
            ],
            check=True,
            timeout=10,
        )
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _ns_child(unshare_pid: int) -> int:
    """The pid (in our namespace) of the process unshare forked as the namespace's PID 1."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{unshare_pid}/task/{unshare_pid}/children") as f:
                kids = f.read().split()
        except FileNotFoundError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.02)
    raise AssertionError("unshare has no child")


def test_bad_config_is_one_line_and_exit_78(tmp_path: Path) -> None:
    """A bad value is one line on stderr naming file, app and key, exit 78, no traceback."""
    eco = write_ecosystem(
        tmp_path / "eco.json", [{"name": "web", "script": "x.py", "instances": "lots"}]
    )
    (tmp_path / "x.py").write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", str(eco)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=20,
    )
    assert proc.returncode == 78
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "apps[0] (web).instances" in proc.stderr


def test_usage_error_exits_2(tmp_path: Path) -> None:
    """An unknown option is a usage error: exit 2, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "--bogus"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=20,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_sigterm_right_after_the_workers_fork_is_not_lost(tmp_path: Path, run_master) -> None:
    """A SIGTERM that lands while the master is still starting is held and handled: exit 0."""
    marker = tmp_path / "forked"
    code = f"import time,pathlib\npathlib.Path({str(marker)!r}).write_text('x')\ntime.sleep(60)"
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "w", **py(code)}])
    m = run_master(str(eco))
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    m.signal(signal.SIGTERM)
    assert m.wait_exit(20) == 0
    assert m.events("stop_requested")
    pid = m.events("worker_started")[0]["pid"]
    assert not pid_alive(pid)


def test_lines_printed_while_the_master_starts_are_whole_and_in_order(
    tmp_path: Path, run_master
) -> None:
    """Output from the first moments (relayed before the loop runs) is never lost, split or merged."""
    code = (
        "import sys,time\n"
        "sys.stdout.write(''.join(f'early {i}\\n' for i in range(2000)))\n"
        "sys.stdout.write('par'); sys.stdout.flush()\n"
        "time.sleep(0.8)\n"
        "print('tial', flush=True)\n"
    )
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "e", "autorestart": False, **py(code)}])
    m = run_master(str(eco))
    assert m.wait_exit(20) == 0
    messages = [r["message"] for r in m.lines("e")]
    assert messages == [f"early {i}" for i in range(2000)] + ["partial"]
    kinds = [r.get("event") for r in m.records if r.get("event")]
    assert kinds[:2] == ["runtime_started", "worker_started"]


def test_a_clean_exit_is_restarted_after_the_platform_grace(tmp_path: Path, run_master) -> None:
    """A worker that exits 0 by itself restarts after the 500 ms grace, announced only then."""
    eco = write_ecosystem(
        tmp_path / "eco.json", [{"name": "once", **py("print('ran', flush=True)")}]
    )
    m = run_master(str(eco))
    first, second = m.wait_event("worker_started", count=2)[:2]
    exited = m.events("worker_exited", pid=first["pid"])[0]
    scheduled = m.events("restart_scheduled", pid=first["pid"])[0]
    assert scheduled["after_grace"] is True
    assert scheduled["timestamp"] >= exited["timestamp"]
    gap_ms = _ms(second["timestamp"]) - _ms(exited["timestamp"])
    assert gap_ms >= 450


def _ms(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000


def test_a_notify_socket_path_too_long_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """A control path whose notify sibling is too long for AF_UNIX: one line, exit 1, no socket left."""
    base = Path("/tmp") / f"rt-{os.getpid()}"
    base.mkdir(exist_ok=True)
    name = "c" * (106 - len(str(base)) - 1 - len(".sock")) + ".sock"
    control = base / name  # 106 bytes binds; "<stem>.notify" is 108, over the 107 of sun_path
    assert len(str(control)) == 106
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "w", **py(SLEEPER)}])
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "runtime", str(eco), "--control", str(control)],
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"runtime: notify socket {str(control)[:-5]}.notify: AF_UNIX path too long (set --control PATH)"
        ]
        assert not control.exists()
        assert "worker_started" not in proc.stdout
    finally:
        for leftover in base.iterdir():
            leftover.unlink()
        base.rmdir()
